// The gateway's demo page in headless Chromium: speak a sentence over the realtime
// WebSocket (audio reaches the page and plays, words light up as they are heard), compose
// a message with a real photo over server-sent events (the cut-out is shown), see an error
// body shown with its field, and save screenshots.
//
//   node demo_page.mjs --url http://127.0.0.1:8080/ --photo portrait.jpg --screenshot page.png \
//       [--api-key KEY]
//
// The browser is Debian's Chromium (apt-get install chromium), driven by playwright-core;
// no browser is downloaded. The script waits for conditions only (with generous limits,
// for a busy machine) and exits 1 with a message saying which step failed.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Lets the AudioContext run without a user's gesture (there is none headless).
  '--autoplay-policy=no-user-gesture-required',
];
const WAIT_MS = 90_000;
const SENTENCE = 'Hello from Chorus! Every word lights up as it is spoken, and the audio starts before the sentence is finished.';
const MESSAGE = 'Congratulations on the new job! We are all so proud of you.';

class StepFailed extends Error {}

function usage() {
  return 'usage: node demo_page.mjs --url GATEWAY_URL --photo PHOTO --screenshot OUT.png [--api-key KEY]';
}

function options() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      photo: { type: 'string' },
      screenshot: { type: 'string' },
      'api-key': { type: 'string', default: '' },
    },
  });
  for (const name of ['url', 'photo', 'screenshot']) {
    if (!values[name]) throw new StepFailed(`--${name} is required\n${usage()}`);
  }
  return values;
}

/** Run `check` (a step) and turn a failure into a message naming the step. */
async function step(name, check) {
  process.stdout.write(`- ${name} ... `);
  try {
    const detail = await check();
    console.log(detail ? `ok (${detail})` : 'ok');
  } catch (error) {
    console.log('FAILED');
    throw new StepFailed(`${name}: ${error instanceof StepFailed ? error.message : error.stack || error}`);
  }
}

function expect(condition, message) {
  if (!condition) throw new StepFailed(message);
}

/** Wait until `predicate(hook)` holds in the page; on time out, say what the hook held. */
async function waitForHook(page, predicate, what) {
  try {
    await page.waitForFunction(predicate, undefined, { timeout: WAIT_MS, polling: 50 });
  } catch (error) {
    const hook = await page.evaluate(() => JSON.stringify(window.chorusDemo)).catch(() => 'unreadable');
    throw new StepFailed(`${what} did not happen within ${WAIT_MS / 1000} s (${error.message.split('\n')[0]}); chorusDemo: ${hook}`);
  }
}

/** `page.png` -> `page-NAME.png`, beside it. */
function screenshotBeside(file, name) {
  const parsed = path.parse(file);
  return path.join(parsed.dir, `${parsed.name}-${name}${parsed.ext || '.png'}`);
}

const hookOf = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.chorusDemo)));

async function main() {
  let args;
  try {
    args = options();
  } catch (error) {
    console.error(error.message);
    return 2;
  }
  const pageErrors = [];
  const consoleLines = [];
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'chorus-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(error.stack || String(error)));
    page.on('console', (message) => consoleLines.push(`[${message.type()}] ${message.text()}`));

    await step('page loads from the gateway', async () => {
      const response = await page.goto(args.url, { waitUntil: 'load', timeout: WAIT_MS });
      expect(response && response.ok(), `GET ${args.url} answered ${response && response.status()}`);
      const title = await page.title();
      expect(title.includes('Chorus'), `unexpected title ${JSON.stringify(title)}`);
      await waitForHook(page, () => window.chorusDemo !== undefined, 'the page script starting');
      return title;
    });

    await step('the gateway reports ready', async () => {
      await waitForHook(page, () => window.chorusDemo.ready === true, 'readiness');
      return (await page.textContent('#health-text')).trim();
    });

    if (args['api-key']) {
      await step('the API key goes into the settings', async () => {
        await page.click('details.settings summary');
        await page.fill('#api-key', args['api-key']);
      });
    }

    await step('an unknown voice is refused, shown with its field', async () => {
      await page.fill('#text', 'Hello there.');
      await page.fill('#voice', 'no-such-voice');
      await page.click('#speak');
      await waitForHook(page, () => window.chorusDemo.lastError !== null && !['connecting', 'speaking'].includes(window.chorusDemo.speakState), 'an error');
      const { lastError } = await hookOf(page);
      expect(lastError.param === 'voice', `error names ${JSON.stringify(lastError.param)}, not voice: ${lastError.message}`);
      expect(await page.isVisible('#error'), 'the error box is not shown');
      const shown = await page.textContent('#error');
      expect(shown.includes(lastError.message) && shown.includes('Voice'), `the error box says ${JSON.stringify(shown)}`);
      expect((await page.getAttribute('#voice', 'aria-invalid')) === 'true', 'the voice field is not marked invalid');
      await page.fill('#voice', '');
      await page.click('#error-close');
      return lastError.message;
    });

    await step('Stop interrupts a conversation in progress', async () => {
      await page.fill('#text', `${SENTENCE} ${SENTENCE} ${SENTENCE}`);
      await page.click('#speak');
      await waitForHook(page, () => window.chorusDemo.wordsHighlighted > 0, 'a first word lit');
      await page.click('#stop');
      await waitForHook(page, () => ['done', 'failed', 'stopped'].includes(window.chorusDemo.speakState), 'the speech stopping');
      const hook = await hookOf(page);
      expect(hook.speakState === 'stopped' && hook.lastError === null, `speech ended ${hook.speakState}: ${JSON.stringify(hook.lastError)}`);
      expect(hook.lastStop === 'interrupt', `Stop ended the conversation by ${hook.lastStop}, not an interrupt`);
      expect(hook.lastInterrupted !== null, 'the server sent no interrupted marker');
      expect(hook.lastSummary !== null, 'the server sent no summary after the interrupt');
      return `${hook.wordsHighlighted} of ${hook.wordsReceived} timed words heard; interrupted at sample ${hook.lastInterrupted.sample_offset}, ${hook.lastInterrupted.dropped_chars} characters dropped`;
    });

    await step('Speak streams audio into the page and lights up each word', async () => {
      await page.fill('#text', SENTENCE);
      await page.click('#speak');
      await waitForHook(page, () => window.chorusDemo.audioFramesReceived > 0, 'audio reaching the page');
      await waitForHook(page, () => window.chorusDemo.wordsHighlighted >= 3, 'words lighting up');
      await page.locator('#speak-card').screenshot({ path: screenshotBeside(args.screenshot, 'speaking') });
      await waitForHook(page, () => ['done', 'failed', 'stopped'].includes(window.chorusDemo.speakState), 'the speech ending');
      const hook = await hookOf(page);
      expect(hook.speakState === 'done', `speech ended ${hook.speakState}: ${JSON.stringify(hook.lastError)}`);
      expect(hook.audioContextState === 'running', `the AudioContext is ${hook.audioContextState}`);
      expect(hook.firstAudioBeforeSummary === true, 'audio was not scheduled before the summary came');
      expect(hook.wordsReceived > 5 && hook.wordsHighlighted === hook.wordsReceived, `${hook.wordsHighlighted} of ${hook.wordsReceived} words lit`);
      const spoken = await page.locator('#transcript .word.spoken').count();
      expect(spoken === hook.wordsReceived, `${spoken} words marked spoken in the transcript`);
      expect(hook.lastSummary && hook.lastSummary.audio_seconds > 1, `summary ${JSON.stringify(hook.lastSummary)}`);
      expect((await page.getAttribute('body', 'data-audio-frames')) === String(hook.audioFramesReceived), 'data-audio-frames disagrees with the hook');
      // The highlight advanced with the audio clock: word by word, each once it was due,
      // in order, over many animation frames (not all at once at the end).
      const lit = hook.highlights;
      expect(lit.every((word) => word.audioTime >= word.due), 'a word was lit before its audio played');
      expect(lit.every((word, i) => i === 0 || (word.due >= lit[i - 1].due && word.audioTime >= lit[i - 1].audioTime)), 'words were lit out of order');
      const frames = new Set(lit.map((word) => word.audioTime)).size;
      expect(frames >= Math.min(5, lit.length), `all ${lit.length} words were lit in ${frames} frames`);
      const audioSpan = lit.at(-1).audioTime - lit[0].audioTime;
      const pageSpan = lit.at(-1).pageTime - lit[0].pageTime;
      return `${hook.audioFramesReceived} audio frames, ${hook.audioSamplesReceived} samples, ${hook.lastSummary.audio_seconds.toFixed(2)} s of speech; ${hook.wordsHighlighted} words lit over ${frames} frames, ${audioSpan.toFixed(2)} s of audio clock (${pageSpan.toFixed(2)} s of page clock)`;
    });

    await step('Compose shows each stage and the cut-out beside the speech', async () => {
      await page.fill('#text', MESSAGE);
      await page.click('label[for="preset-calm"]');
      expect(await page.isChecked('#preset-calm'), 'the Calm preset is not selected');
      await page.setInputFiles('#photo', args.photo);
      await waitForHook(page, () => !document.getElementById('compose').disabled, 'the Compose button enabling');
      await page.click('#compose');
      await waitForHook(page, () => ['done', 'partial', 'failed'].includes(window.chorusDemo.composeState), 'the composed message');
      const hook = await hookOf(page);
      expect(hook.composeState === 'done', `compose ended ${hook.composeState}: ${JSON.stringify(hook.lastError)}`);
      for (const stage of ['speech', 'prosody', 'vision']) {
        expect(hook.stagesSeen.includes(`${stage}:finished`), `no progress for ${stage} finishing: ${hook.stagesSeen}`);
        const state = await page.getAttribute(`#stages [data-stage="${stage}"]`, 'data-state');
        expect(state === 'finished', `stage ${stage} shows ${state}`);
      }
      await waitForHook(page, () => window.chorusDemo.lastCutoutSize !== null, 'the cut-out loading');
      const cutout = await page.evaluate(() => {
        const image = document.getElementById('cutout');
        const box = image.getBoundingClientRect();
        return { width: image.naturalWidth, height: image.naturalHeight, shownWidth: box.width, complete: image.complete };
      });
      expect(cutout.complete && cutout.width > 0 && cutout.height > 0, `cut-out image ${JSON.stringify(cutout)}`);
      expect(cutout.shownWidth > 0 && (await page.isVisible('#cutout')), 'the cut-out is not visible');
      await waitForHook(page, () => document.getElementById('message-audio').readyState >= 1, 'the speech loading into the audio player');
      const duration = await page.evaluate(() => document.getElementById('message-audio').duration);
      expect(duration > 1, `the audio player holds ${duration} s`);
      return `cut-out ${cutout.width}x${cutout.height}, speech ${duration.toFixed(2)} s, events ${hook.stagesSeen.join(' ')}`;
    });

    await step('screenshots', async () => {
      await page.screenshot({ path: args.screenshot, fullPage: true });
      const phone = screenshotBeside(args.screenshot, 'phone');
      await page.setViewportSize({ width: 390, height: 844 });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow <= 0, `at phone width the page is ${overflow} px wider than the screen`);
      await page.screenshot({ path: phone, fullPage: true });
      return `${args.screenshot}, ${phone}, ${screenshotBeside(args.screenshot, 'speaking')}`;
    });

    expect(pageErrors.length === 0, `uncaught errors in the page:\n${pageErrors.join('\n')}`);
    console.log('demo page: all checks passed');
    return 0;
  } catch (error) {
    console.error(`\ndemo page test FAILED: ${error instanceof StepFailed ? error.message : error.stack || error}`);
    if (pageErrors.length) console.error(`uncaught errors in the page:\n${pageErrors.join('\n')}`);
    if (consoleLines.length) console.error(`browser console:\n${consoleLines.slice(-30).join('\n')}`);
    return 1;
  } finally {
    await context?.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
