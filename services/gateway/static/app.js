// The Chorus demo page: live speech over the realtime WebSocket with words lit as they
// are heard, and a composed message (speech + cut-out) over server-sent events.
// The formats are the gateway's, in services/gateway/README.md.

import { serverSentEvents } from './events.js';
import { PcmPlayer } from './player.js';

const REALTIME_PATH = 'v1/realtime/speech';
const MESSAGES_PATH = 'v1/messages';
const READY_PATH = 'readyz';
const MAX_PHOTO_BYTES = 10 * 1024 * 1024;
const STAGE_NAMES = { speech: 'Speech', prosody: 'Prosody', vision: 'Cut-out' };

const $ = (id) => document.getElementById(id);

const ui = {
  body: document.body,
  health: $('health'),
  healthText: $('health-text'),
  error: $('error'),
  errorTitle: $('error-title'),
  errorMessage: $('error-message'),
  errorClose: $('error-close'),
  text: $('text'),
  textCount: $('text-count'),
  voice: $('voice'),
  apiKey: $('api-key'),
  speak: $('speak'),
  stop: $('stop'),
  speakCard: $('speak-card'),
  speakState: $('speak-state'),
  speakMeter: $('speak-meter'),
  transcript: $('transcript'),
  statFirstAudio: $('stat-first-audio'),
  statAudio: $('stat-audio'),
  statWords: $('stat-words'),
  photo: $('photo'),
  dropzone: $('dropzone'),
  dropzoneText: $('dropzone-text'),
  photoPreview: $('photo-preview'),
  compose: $('compose'),
  composeCard: $('compose-card'),
  composeState: $('compose-state'),
  stages: $('stages'),
  result: $('result'),
  cutout: $('cutout'),
  cutoutCaption: $('cutout-caption'),
  messageAudio: $('message-audio'),
  composeStats: $('compose-stats'),
};

// What the browser test reads (mirrored on <body> as data-* attributes).
const hook = {
  ready: false,
  speakState: 'idle',
  audioFramesReceived: 0,
  audioSamplesReceived: 0,
  firstAudioBeforeSummary: null,
  wordsReceived: 0,
  wordsHighlighted: 0,
  // Per lit word: the AudioContext time it was due, and the times (audio clock and page
  // clock, in seconds) of the animation frame that lit it.
  highlights: [],
  lastStop: null, // how Stop ended a conversation: 'interrupt', or 'close' after its end
  lastInterrupted: null, // the server's `interrupted` message
  audioContextState: 'none',
  lastSummary: null,
  composeState: 'idle',
  stagesSeen: [],
  lastCutoutSize: null,
  lastError: null,
};
window.chorusDemo = hook;

function publish() {
  const data = ui.body.dataset;
  data.ready = String(hook.ready);
  data.speakState = hook.speakState;
  data.audioFrames = String(hook.audioFramesReceived);
  data.wordsReceived = String(hook.wordsReceived);
  data.wordsHighlighted = String(hook.wordsHighlighted);
  data.composeState = hook.composeState;
  data.cutoutWidth = String(hook.lastCutoutSize ? hook.lastCutoutSize.width : 0);
  data.error = hook.lastError ? hook.lastError.message : '';
}

// ---------------------------------------------------------------------------------------
// Shared bits: the form, the key, errors.

function selectedPreset() {
  const checked = document.querySelector('input[name="preset"]:checked');
  return checked ? checked.value : '';
}

function apiKey() {
  return ui.apiKey.value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// The element to mark when the gateway names a field (as its API names it).
const FIELD_ELEMENTS = {
  text: () => ui.text,
  input: () => ui.text,
  voice: () => ui.voice,
  photo: () => ui.photo,
  api_key: () => ui.apiKey,
  authorization: () => ui.apiKey,
};
const FIELD_LABELS = { text: 'Message', input: 'Message', voice: 'Voice', preset: 'Preset', photo: 'Photo', api_key: 'API key' };

function clearError() {
  ui.error.hidden = true;
  hook.lastError = null;
  for (const element of document.querySelectorAll('[aria-invalid="true"]')) {
    element.removeAttribute('aria-invalid');
  }
  ui.dropzone.classList.remove('invalid');
  document.querySelector('.presets').classList.remove('invalid');
  publish();
}

/**
 * Show an error body of the gateway's (`{message, type, param, code}`), or a local one.
 * @param {{message: string, param?: string|null, code?: string|null}} error
 * @param {string} title
 */
function showError(error, title, status) {
  const param = error.param || null;
  hook.lastError = { message: error.message, param, code: error.code || null, status: status || null };
  ui.errorTitle.textContent = title;
  const parts = [error.message || 'Unknown error'];
  if (param) parts.push(`Field: ${FIELD_LABELS[param] || param}`);
  if (error.code) parts.push(status ? `${status} · ${error.code}` : error.code);
  ui.errorMessage.replaceChildren(
    ...parts.map((part, index) => {
      const span = document.createElement('span');
      span.textContent = part;
      span.className = index === 0 ? 'alert-main' : 'alert-meta';
      return span;
    }),
  );
  ui.error.hidden = false;
  ui.error.scrollIntoView({ block: 'nearest' });
  let target = param && FIELD_ELEMENTS[param] ? FIELD_ELEMENTS[param]() : null;
  if (!target && (error.code === 'unauthenticated' || error.code === 'permission_denied')) {
    target = ui.apiKey;
    ui.apiKey.closest('details').open = true;
  }
  if (target) target.setAttribute('aria-invalid', 'true');
  if (param === 'photo') ui.dropzone.classList.add('invalid');
  if (param === 'preset') document.querySelector('.presets').classList.add('invalid');
  publish();
}

/** The error body of a failed HTTP response, whatever it holds. */
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page, say): described by its status below.
  }
  if (body && body.error && typeof body.error.message === 'string') return body.error;
  return { message: `The gateway answered ${response.status} ${response.statusText}`.trim(), param: null, code: null };
}

ui.errorClose.addEventListener('click', clearError);
// Enter in the key field must not reload the page.
$('settings-form').addEventListener('submit', (event) => event.preventDefault());

// ---------------------------------------------------------------------------------------
// Gateway readiness.

let healthTimer = 0;

async function checkHealth() {
  clearTimeout(healthTimer);
  let state = 'down';
  let text = 'Gateway unreachable';
  try {
    const response = await fetch(READY_PATH, { cache: 'no-store' });
    if (response.ok) {
      state = 'ready';
      text = 'Ready';
    } else {
      const error = await errorOf(response);
      state = 'degraded';
      text = `Not ready: ${error.message}`;
    }
  } catch {
    // Network error: the text above says it.
  }
  hook.ready = state === 'ready';
  ui.health.dataset.state = state;
  ui.healthText.textContent = text;
  publish();
  healthTimer = setTimeout(checkHealth, state === 'ready' ? 30000 : 5000);
}

// ---------------------------------------------------------------------------------------
// The message box.

function updateCount() {
  ui.textCount.textContent = String(Array.from(ui.text.value).length);
}
ui.text.addEventListener('input', () => {
  updateCount();
  ui.text.removeAttribute('aria-invalid');
});
ui.voice.addEventListener('input', () => ui.voice.removeAttribute('aria-invalid'));
ui.apiKey.addEventListener('input', () => ui.apiKey.removeAttribute('aria-invalid'));
updateCount();

// ---------------------------------------------------------------------------------------
// Speak live: the realtime WebSocket.

/** @type {AudioContext | null} */
let audioContext = null;
/** @type {Conversation | null} */
let conversation = null;

function setSpeakState(state, label) {
  hook.speakState = state;
  ui.speakCard.dataset.state = state;
  ui.speakState.textContent = label;
  const busy = state === 'connecting' || state === 'speaking' || state === 'stopping';
  ui.speak.disabled = busy;
  ui.stop.disabled = !busy;
  publish();
}

function realtimeUrl() {
  const url = new URL(REALTIME_PATH, document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function formatSeconds(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}

// When nothing more comes from the server for this long after the audio has played out,
// the speech is taken as complete even without the last word's timing (an engine that
// gives none).
const QUIET_END_MS = 2000;
// How long Stop waits for the server to confirm (interrupted, summary, close) before it
// closes the connection itself.
const STOP_GRACE_MS = 5000;

/**
 * One press of Speak: a WebSocket conversation, its audio on the timeline, its words in
 * the transcript.
 *
 * The text goes in one `text` message and a `flush` (so that a last clause without a
 * full stop is spoken too). The conversation stays open while the audio plays, so that
 * Stop can barge in with `interrupt`; `end` goes once every word has been timed and the
 * audio has played out, and the server answers with its summary and closes.
 */
class Conversation {
  constructor(text, voice, key, context) {
    this.text = text;
    this.codePoints = Array.from(text);
    this.lastWordEnd = lastWordEnd(this.codePoints);
    this.context = context;
    this.player = new PcmPlayer(context);
    /** @type {{word: string, charStart: number, charEnd: number, startSample: number, endSample: number, lit: boolean, element: HTMLElement | null, gapBefore: HTMLElement | null, gapAfter: HTMLElement | null}[]} */
    this.words = [];
    this.litCount = 0;
    this.allTimed = this.lastWordEnd === 0;
    this.ended = false; // `end` sent: no message may follow it
    this.interrupting = false; // `interrupt` sent, `interrupted` not come yet
    this.stopped = false;
    this.closed = false;
    this.summary = null;
    this.frame = 0;
    this.sentAt = 0;
    this.firstAudioAt = 0;
    this.lastMessageAt = performance.now();
    this.endTimer = setInterval(() => this.endWhenSpoken(), 250);
    this.stopTimer = 0;

    this.socket = new WebSocket(realtimeUrl());
    this.socket.binaryType = 'arraybuffer';
    this.socket.addEventListener('open', () => this.opened(voice, key));
    this.socket.addEventListener('message', (event) => this.received(event.data));
    this.socket.addEventListener('close', (event) => this.closedWith(event));
    this.renderTranscript();
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  opened(voice, key) {
    const config = { type: 'config', encoding: 'pcm_s16le', word_timings: true };
    if (voice) config.voice = voice;
    if (key) config.api_key = key;
    this.send(config);
    this.send({ type: 'text', text: this.text });
    this.send({ type: 'flush' });
    this.sentAt = performance.now();
    setSpeakState('speaking', 'Speaking…');
  }

  end() {
    if (this.ended || this.socket.readyState !== WebSocket.OPEN) return;
    this.ended = true;
    this.send({ type: 'end' });
  }

  /** `end` once all was said and heard (see the class). */
  endWhenSpoken() {
    if (this.ended || this.interrupting || this.stopped || !this.player.samplesQueued) return;
    if (!this.player.drained) return;
    const quiet = performance.now() - this.lastMessageAt > QUIET_END_MS;
    if (this.allTimed || quiet) this.end();
  }

  received(data) {
    this.lastMessageAt = performance.now();
    if (data instanceof ArrayBuffer) {
      this.audio(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    switch (message.type) {
      case 'format':
        if (message.encoding !== 'pcm_s16le') {
          showError({ message: `unexpected audio encoding ${message.encoding}` }, 'Cannot play this audio');
          this.stop();
          return;
        }
        this.player.setSampleRate(message.sample_rate_hz);
        break;
      case 'word':
        this.word(message);
        break;
      case 'interrupted':
        this.interrupting = false;
        hook.lastInterrupted = message;
        this.end();
        break;
      case 'summary':
        this.summary = message;
        hook.lastSummary = message;
        ui.statAudio.textContent = formatSeconds(message.audio_seconds);
        publish();
        break;
      case 'error':
        showError(message.error || { message: 'unknown error' }, 'Speech failed');
        break;
      default:
        break;
    }
  }

  audio(data) {
    if (this.stopped || this.interrupting) return;
    const start = this.player.enqueue(data);
    if (start === null) return;
    hook.audioFramesReceived += 1;
    hook.audioSamplesReceived = this.player.samplesQueued;
    if (this.firstAudioAt === 0) {
      this.firstAudioAt = performance.now();
      hook.firstAudioBeforeSummary = this.summary === null;
      ui.statFirstAudio.textContent = formatSeconds((this.firstAudioAt - this.sentAt) / 1000);
    }
    ui.statAudio.textContent = formatSeconds(this.player.secondsQueued);
    publish();
    this.tick();
  }

  word(message) {
    if (this.stopped) return;
    this.words.push({
      word: message.word,
      charStart: message.char_start,
      charEnd: message.char_end,
      startSample: message.start_sample,
      endSample: message.end_sample,
      lit: false,
      element: null,
      gapBefore: null,
      gapAfter: null,
    });
    if (message.char_end >= this.lastWordEnd) this.allTimed = true;
    hook.wordsReceived += 1;
    this.renderTranscript();
    publish();
    this.tick();
  }

  /**
   * The text with each timed word in its own span (kept across renders), and what
   * follows a word up to the next (spaces, punctuation) lit with it.
   */
  renderTranscript() {
    const nodes = [];
    const gap = (from, to, lit) => {
      const span = document.createElement('span');
      span.className = lit ? 'gap spoken' : 'gap';
      span.textContent = this.codePoints.slice(from, to).join('');
      nodes.push(span);
      return span;
    };
    let position = 0;
    let previous = null;
    for (const word of this.words) {
      if (word.charStart < position) continue;
      if (word.charStart > position) {
        const span = gap(position, word.charStart, previous ? previous.lit : word.lit);
        if (previous) previous.gapAfter = span;
        else word.gapBefore = span;
      }
      if (!word.element) {
        word.element = document.createElement('span');
        word.element.className = 'word';
        word.element.textContent = this.codePoints.slice(word.charStart, word.charEnd).join('');
      }
      nodes.push(word.element);
      position = word.charEnd;
      previous = word;
    }
    if (position < this.codePoints.length) {
      // After the last word: its punctuation once every word is timed, else text to come.
      const last = this.allTimed ? previous : null;
      const span = gap(position, this.codePoints.length, last ? last.lit : false);
      if (last) last.gapAfter = span;
      else span.classList.add('untimed');
    }
    ui.transcript.replaceChildren(...nodes);
  }

  /** Run the highlight loop (one frame at a time, until the conversation is over). */
  tick() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => this.highlight());
  }

  /** One animation frame: light each word whose first sample is being heard now. */
  highlight() {
    this.frame = 0;
    const now = this.context.currentTime;
    hook.audioContextState = this.context.state;
    if (!this.stopped) {
      for (let i = this.litCount; i < this.words.length; i += 1) {
        const word = this.words[i];
        const start = this.player.timeOf(word.startSample);
        if (start === null || now < start) break;
        word.lit = true;
        for (const element of [word.element, word.gapBefore, word.gapAfter]) element?.classList.add('spoken');
        this.litCount = i + 1;
        hook.wordsHighlighted += 1;
        hook.highlights.push({ due: start, audioTime: now, pageTime: performance.now() / 1000 });
      }
    }
    let current = null;
    if (this.litCount > 0 && !this.stopped) {
      const last = this.words[this.litCount - 1];
      const end = this.player.timeOf(Math.max(last.startSample, last.endSample - 1));
      if (end === null || now <= end) current = last;
    }
    for (const word of this.words) word.element?.classList.toggle('current', word === current);
    ui.statWords.textContent = `${this.litCount} / ${this.words.length}`;
    const first = this.player.segments.length ? this.player.segments[0].time : now;
    const total = this.player.playhead - first;
    if (!this.stopped) {
      ui.speakMeter.style.width = total > 0 ? `${Math.min(100, (Math.max(0, now - first) / total) * 100)}%` : '0%';
    }
    publish();
    if (this.closed && this.player.drained) this.finish();
    else this.tick();
  }

  /** Stop: barge in with `interrupt` while the conversation is open, else hang up. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.player.stop();
    setSpeakState('stopping', 'Stopping…');
    if (!this.ended && this.socket.readyState === WebSocket.OPEN) {
      this.interrupting = true;
      hook.lastStop = 'interrupt';
      this.send({ type: 'interrupt' });
      this.stopTimer = setTimeout(() => this.socket.close(1000), STOP_GRACE_MS);
    } else {
      hook.lastStop = 'close';
      this.socket.close(1000);
    }
    this.tick();
  }

  closedWith(event) {
    this.closed = true;
    clearInterval(this.endTimer);
    clearTimeout(this.stopTimer);
    if (event.code !== 1000) {
      if (!this.stopped && hook.lastError === null) {
        const message = event.reason || (event.code === 1006 ? 'the connection to the gateway was lost' : `the connection closed with code ${event.code}`);
        showError({ message, code: null }, 'Speech failed');
      }
      this.player.stop();
    }
    this.tick();
  }

  finish() {
    for (const word of this.words) word.element?.classList.remove('current');
    if (conversation === this) conversation = null;
    if (this.stopped) {
      setSpeakState('stopped', 'Stopped');
    } else if (hook.lastError && !this.summary) {
      setSpeakState('failed', 'Failed');
    } else {
      ui.speakMeter.style.width = '100%';
      setSpeakState('done', 'Done');
    }
  }
}

/** Code points up to the end of the text's last letter or digit (0: no word at all). */
function lastWordEnd(codePoints) {
  for (let i = codePoints.length - 1; i >= 0; i -= 1) {
    if (/[\p{L}\p{N}]/u.test(codePoints[i])) return i + 1;
  }
  return 0;
}

async function speak() {
  clearError();
  const text = ui.text.value;
  if (!text.trim()) {
    showError({ message: 'text: is empty', param: 'text' }, 'Nothing to say');
    ui.text.focus();
    return;
  }
  if (conversation) conversation.stop();
  hook.audioFramesReceived = 0;
  hook.audioSamplesReceived = 0;
  hook.wordsReceived = 0;
  hook.wordsHighlighted = 0;
  hook.highlights = [];
  hook.lastStop = null;
  hook.lastInterrupted = null;
  hook.firstAudioBeforeSummary = null;
  hook.lastSummary = null;
  ui.statFirstAudio.textContent = '—';
  ui.statAudio.textContent = '—';
  ui.statWords.textContent = '—';
  ui.speakMeter.style.width = '0%';
  setSpeakState('connecting', 'Connecting…');
  // Made (and resumed) in the click itself: browsers let audio start from a user's gesture.
  if (!audioContext) audioContext = new AudioContext({ latencyHint: 'interactive' });
  if (audioContext.state === 'suspended') {
    try {
      await audioContext.resume();
    } catch {
      // Plays once the browser lets it; the words follow the audio clock either way.
    }
  }
  hook.audioContextState = audioContext.state;
  conversation = new Conversation(text, ui.voice.value.trim(), apiKey(), audioContext);
}

ui.speak.addEventListener('click', speak);
ui.stop.addEventListener('click', () => conversation?.stop());

// ---------------------------------------------------------------------------------------
// Compose: multipart in, server-sent events out.

/** @type {File | null} */
let photo = null;
let photoUrl = '';
let cutoutUrl = '';
let audioUrl = '';

function setComposeState(state, label) {
  hook.composeState = state;
  ui.composeCard.dataset.state = state;
  ui.composeState.textContent = label;
  ui.compose.disabled = state === 'composing' || !photo;
  publish();
}

function choosePhoto(file) {
  if (!file) return;
  clearError();
  if (file.size > MAX_PHOTO_BYTES) {
    showError({ message: `photo: is ${(file.size / 1048576).toFixed(1)} MB, over the 10 MB limit`, param: 'photo' }, 'Photo too large');
    return;
  }
  photo = file;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  ui.photoPreview.src = photoUrl;
  ui.photoPreview.alt = `Chosen photo: ${file.name}`;
  ui.photoPreview.hidden = false;
  ui.dropzone.classList.add('has-photo');
  ui.dropzoneText.querySelector('strong').textContent = file.name;
  ui.dropzoneText.querySelector('span').textContent = `${(file.size / 1024).toFixed(0)} KB · drop or click to change`;
  setComposeState('idle', 'Ready to compose');
}

ui.photo.addEventListener('change', () => choosePhoto(ui.photo.files?.[0] ?? null));
for (const type of ['dragenter', 'dragover']) {
  ui.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    ui.dropzone.classList.add('dragging');
  });
}
for (const type of ['dragleave', 'drop']) {
  ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove('dragging'));
}
ui.dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  choosePhoto(event.dataTransfer?.files?.[0] ?? null);
});

function resetStages() {
  for (const item of ui.stages.children) {
    item.dataset.state = 'waiting';
    item.querySelector('.stage-detail').textContent = 'waiting';
  }
}

function showProgress(progress) {
  const item = ui.stages.querySelector(`[data-stage="${progress.stage}"]`);
  hook.stagesSeen.push(`${progress.stage}:${progress.state}`);
  if (!item) return;
  const failed = progress.state === 'finished' && progress.error;
  item.dataset.state = failed ? 'failed' : progress.state;
  const at = formatSeconds(progress.elapsed_seconds);
  item.querySelector('.stage-detail').textContent = failed
    ? `failed: ${progress.error}`
    : progress.state === 'started'
      ? `working… (${at})`
      : `done at ${at}`;
  const name = STAGE_NAMES[progress.stage] || progress.stage;
  ui.composeState.textContent = failed ? `${name} failed` : `${name} ${progress.state}`;
}

function bytesOf(base64) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function addStat(term, value) {
  const row = document.createElement('div');
  const dt = document.createElement('dt');
  const dd = document.createElement('dd');
  dt.textContent = term;
  dd.textContent = value;
  row.append(dt, dd);
  ui.composeStats.append(row);
}

function showResult(result) {
  if (cutoutUrl) URL.revokeObjectURL(cutoutUrl);
  if (audioUrl) URL.revokeObjectURL(audioUrl);
  cutoutUrl = '';
  audioUrl = '';
  ui.composeStats.replaceChildren();

  if (result.cutout_png) {
    cutoutUrl = URL.createObjectURL(new Blob([bytesOf(result.cutout_png)], { type: 'image/png' }));
    ui.cutout.hidden = false;
    ui.cutout.src = cutoutUrl;
    ui.cutoutCaption.textContent = 'You, cut out of the photo';
  } else {
    ui.cutout.hidden = true;
    ui.cutout.removeAttribute('src');
    ui.cutoutCaption.textContent = 'No cut-out: the vision stage failed';
  }
  if (result.audio_wav) {
    audioUrl = URL.createObjectURL(new Blob([bytesOf(result.audio_wav)], { type: 'audio/wav' }));
    ui.messageAudio.src = audioUrl;
  }

  const confidence = result.prosody_confidence;
  if (confidence) {
    const verdict = confidence.measured ? (confidence.score >= confidence.threshold ? 'on target' : 'below target') : 'not measured';
    addStat('Preset match', `${Math.round(confidence.score * 100)}% (${verdict})`);
  }
  if (result.prosody_fallback) addStat('Prosody', 'unadjusted speech (fallback)');
  const people = (result.detections || []).length;
  addStat('People found', String(people));
  const timings = result.timings || {};
  for (const stage of ['speech', 'prosody', 'vision']) {
    if (stage in timings) addStat(STAGE_NAMES[stage], formatSeconds(timings[stage]));
  }
  addStat('Total', formatSeconds(result.total_seconds || 0));
  if (result.partial) addStat('Missing', (result.missing || []).join(', '));
  ui.result.hidden = false;
}

ui.cutout.addEventListener('load', () => {
  hook.lastCutoutSize = { width: ui.cutout.naturalWidth, height: ui.cutout.naturalHeight };
  ui.cutout.dataset.naturalWidth = String(ui.cutout.naturalWidth);
  publish();
});

async function compose() {
  if (!photo) return;
  clearError();
  const text = ui.text.value;
  if (!text.trim()) {
    showError({ message: 'text: is empty', param: 'text' }, 'Nothing to say');
    ui.text.focus();
    return;
  }
  resetStages();
  ui.result.hidden = true;
  hook.stagesSeen = [];
  hook.lastCutoutSize = null;
  setComposeState('composing', 'Sending…');

  const form = new FormData();
  form.append('text', text);
  const preset = selectedPreset();
  if (preset) form.append('preset', preset);
  const voice = ui.voice.value.trim();
  if (voice) form.append('voice', voice);
  form.append('photo', photo, photo.name || 'photo');

  let response;
  try {
    response = await fetch(MESSAGES_PATH, { method: 'POST', body: form, headers: authHeaders() });
  } catch (error) {
    showError({ message: `the gateway cannot be reached (${error.message})` }, 'Compose failed');
    setComposeState('failed', 'Failed');
    return;
  }
  if (!response.ok || !response.body) {
    showError(await errorOf(response), 'Compose refused', response.status);
    setComposeState('failed', 'Failed');
    return;
  }
  ui.composeState.textContent = 'Working…';
  let finished = false;
  try {
    for await (const { event, data } of serverSentEvents(response.body)) {
      const payload = JSON.parse(data);
      if (event === 'progress') {
        showProgress(payload);
      } else if (event === 'result') {
        showResult(payload);
        finished = true;
        setComposeState(payload.partial ? 'partial' : 'done', payload.partial ? 'Done, in part' : 'Done');
      } else if (event === 'error') {
        showError(payload.error || payload, 'Compose failed');
        finished = true;
        setComposeState('failed', 'Failed');
      }
      publish();
    }
  } catch (error) {
    showError({ message: `the event stream broke off (${error.message})` }, 'Compose failed');
    setComposeState('failed', 'Failed');
    return;
  }
  if (!finished) {
    showError({ message: 'the event stream ended without a result' }, 'Compose failed');
    setComposeState('failed', 'Failed');
  }
}

ui.compose.addEventListener('click', compose);

setSpeakState('idle', 'Ready');
setComposeState('idle', 'Choose a photo to start');
checkHealth();
