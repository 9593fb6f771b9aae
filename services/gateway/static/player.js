// Streamed 16-bit PCM played gap-free on a Web Audio timeline, and the clock that says
// when a given sample of the stream is heard.
//
// Each piece of audio becomes an AudioBuffer scheduled right after the one before it, so
// playback starts with the first piece, long before the speech is complete. When pieces
// come too late (the playhead has passed), the next one starts a little after "now": that
// is a gap in the audio, never an overlap, and the clock below follows it.

// How far ahead of "now" the first piece (and a piece after a gap) starts: room for the
// next pieces to arrive before they are due.
const LEAD_S = 0.08;

export class PcmPlayer {
  /** @param {AudioContext} context */
  constructor(context) {
    this.context = context;
    this.sampleRate = 0;
    this.samplesQueued = 0;
    this.playhead = 0;
    this.gaps = 0;
    /** @type {{first: number, count: number, time: number}[]} one per piece, in order */
    this.segments = [];
    /** @type {Set<AudioBufferSourceNode>} */
    this.sources = new Set();
    /** @type {Uint8Array | null} an odd byte carried to the next piece */
    this.carry = null;
    this.output = context.createGain();
    this.output.connect(context.destination);
  }

  /** The stream's sample rate, from the server's `format` message. */
  setSampleRate(rate) {
    this.sampleRate = rate;
  }

  /**
   * Schedule one piece of little-endian 16-bit mono PCM; returns the context time it
   * starts at (or null for a piece too short to hold a sample).
   * @param {ArrayBuffer} data
   */
  enqueue(data) {
    let bytes = new Uint8Array(data);
    if (this.carry) {
      const joined = new Uint8Array(this.carry.length + bytes.length);
      joined.set(this.carry);
      joined.set(bytes, this.carry.length);
      bytes = joined;
      this.carry = null;
    }
    if (bytes.length % 2) {
      this.carry = bytes.slice(bytes.length - 1);
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    const count = bytes.length / 2;
    if (count === 0 || !this.sampleRate) return null;

    const buffer = this.context.createBuffer(1, count, this.sampleRate);
    const channel = buffer.getChannelData(0);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i += 1) channel[i] = view.getInt16(i * 2, true) / 32768;

    const now = this.context.currentTime;
    let start = this.playhead;
    if (this.segments.length === 0 || start < now + 0.005) {
      if (this.segments.length) this.gaps += 1;
      start = now + LEAD_S;
    }
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    source.addEventListener('ended', () => this.sources.delete(source));
    source.start(start);
    this.sources.add(source);

    this.segments.push({ first: this.samplesQueued, count, time: start });
    this.samplesQueued += count;
    this.playhead = start + buffer.duration;
    return start;
  }

  /**
   * The context time at which `sample` (counted from the stream's first) is heard, or
   * null while the piece holding it has not come yet.
   */
  timeOf(sample) {
    const segments = this.segments;
    if (!segments.length || sample >= this.samplesQueued) return null;
    let low = 0;
    let high = segments.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (segments[middle].first <= sample) low = middle;
      else high = middle - 1;
    }
    const segment = segments[low];
    return segment.time + Math.max(0, sample - segment.first) / this.sampleRate;
  }

  /** Seconds of audio received so far. */
  get secondsQueued() {
    return this.sampleRate ? this.samplesQueued / this.sampleRate : 0;
  }

  /** Whether everything scheduled has been heard. */
  get drained() {
    return this.context.currentTime >= this.playhead;
  }

  /** Silence now: every scheduled piece is stopped, and nothing new plays. */
  stop() {
    this.output.gain.setValueAtTime(0, this.context.currentTime);
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        // Already stopped.
      }
    }
    this.sources.clear();
    this.playhead = this.context.currentTime;
  }
}
