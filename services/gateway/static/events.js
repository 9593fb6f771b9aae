// Server-sent events read from a fetch() response body. EventSource cannot POST, so the
// text/event-stream format is parsed here: lines of `field: value` (ended by \n, \r\n or
// \r), an event per blank line, `data` lines joined by newlines, comments (`:`) ignored.

/**
 * The events of `body` as they arrive: `{event, data}`, `event` "message" when unnamed.
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const lines = new LineSplitter();
  let name = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      for (const line of done ? lines.finish() : lines.push(value)) {
        if (line === '') {
          if (data.length) yield { event: name || 'message', data: data.join('\n') };
          name = '';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? '' : line.slice(colon + 1);
          if (text.startsWith(' ')) text = text.slice(1);
          if (field === 'event') name = text;
          else if (field === 'data') data.push(text);
        }
      }
      // An event not ended by a blank line when the stream ends is dropped, as the
      // format says.
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Text in pieces to whole lines, each piece scanned once (a result line is megabytes). */
class LineSplitter {
  constructor() {
    this.pending = '';
    this.scanned = 0; // how much of `pending` is known to hold no line end
  }

  /** The lines that `text` completes. */
  push(text) {
    this.pending += text;
    const lines = [];
    let start = 0;
    for (let i = this.scanned; i < this.pending.length; i += 1) {
      const char = this.pending[i];
      if (char !== '\n' && char !== '\r') continue;
      // A \r last in the piece may be the first half of \r\n: wait for the next piece.
      if (char === '\r' && i + 1 === this.pending.length) break;
      lines.push(this.pending.slice(start, i));
      if (char === '\r' && this.pending[i + 1] === '\n') i += 1;
      start = i + 1;
    }
    this.pending = this.pending.slice(start);
    this.scanned = this.pending.endsWith('\r') ? this.pending.length - 1 : this.pending.length;
    return lines;
  }

  /** The last line, when the stream ended right after a \r. */
  finish() {
    return this.pending.endsWith('\r') ? [this.pending.slice(0, -1)] : [];
  }
}
