// The client against a running suite: `node --test test/` with the orchestrator's and the
// tts service's addresses in CHORUS_ORCHESTRATOR_ADDRESS and CHORUS_TTS_ADDRESS (and the
// orchestrator's API key in CHORUS_API_KEY, when it requires one; a portrait JPEG's path
// in CHORUS_TEST_PHOTO for ComposeMessage). tests/clients/test_typescript_client.py starts
// the suite and runs this file.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import {
  AudioEncoding,
  ChorusClient,
  ChorusError,
  Stage,
  Status,
  TextStream,
  interrupt,
} from "../dist/index.js";

const orchestratorAddress = process.env.CHORUS_ORCHESTRATOR_ADDRESS;
const ttsAddress = process.env.CHORUS_TTS_ADDRESS;
const apiKey = process.env.CHORUS_API_KEY;
const photoPath = process.env.CHORUS_TEST_PHOTO;
const skip = orchestratorAddress && ttsAddress ? false : "CHORUS_ORCHESTRATOR_ADDRESS and CHORUS_TTS_ADDRESS not set";

const GREETING = "Congratulations on the new job! We are all so proud of you.";

function newClient(overrides = {}) {
  return new ChorusClient({
    address: orchestratorAddress,
    ttsAddress,
    ...(apiKey ? { apiKey } : {}),
    deadlineMs: 60_000,
    ...overrides,
  });
}

const client = skip ? undefined : newClient();
after(() => client?.close());

async function collect(responses) {
  const all = [];
  for await (const response of responses) {
    all.push(response);
  }
  return all;
}

function audioBytes(responses) {
  return Buffer.concat(
    responses.filter((r) => r.content.case === "audio").map((r) => r.content.value),
  );
}

function ascii(bytes) {
  return Buffer.from(bytes).toString("latin1");
}

async function rejection(responses) {
  try {
    await collect(responses);
  } catch (error) {
    return error;
  }
  assert.fail("the call did not fail");
}

describe("ChorusClient", { skip }, () => {
  test("speak streams the format, PCM audio and a summary", async () => {
    const responses = await collect(client.speak({ text: GREETING }));
    assert.equal(responses[0].content.case, "format");
    const format = responses[0].content.value;
    assert.equal(format.sampleRateHz, 22050);
    assert.equal(format.encoding, AudioEncoding.PCM_S16LE);
    assert.equal(format.channels, 1);
    const last = responses.at(-1);
    assert.equal(last.content.case, "summary");
    const audio = audioBytes(responses);
    assert.ok(audio.length > 22050, `only ${audio.length} bytes of audio`);
    assert.equal(audio.length % 2, 0);
    // The summary's duration is the audio's, at the format's sample rate.
    const seconds = audio.length / 2 / format.sampleRateHz;
    assert.ok(Math.abs(seconds - last.content.value.audioSeconds) < 0.01);
    assert.equal(last.content.value.traceId.length, 32);
    // Real speech, not silence.
    const samples = new Int16Array(audio.buffer, audio.byteOffset, audio.length / 2);
    assert.ok(samples.some((s) => Math.abs(s) > 1000));
  });

  test("speak at another sample rate says so in its format", async () => {
    const responses = await collect(client.speak({ text: "Hello there.", sampleRateHz: 16000 }));
    assert.equal(responses[0].content.value.sampleRateHz, 16000);
    const seconds = audioBytes(responses).length / 2 / 16000;
    assert.ok(Math.abs(seconds - responses.at(-1).content.value.audioSeconds) < 0.01);
  });

  test("speak sends word timings when asked, and only then", async () => {
    const text = "Hello there, how are you?";
    const responses = await collect(client.speak({ text, wordTimings: true }));
    const words = responses.filter((r) => r.content.case === "word").map((r) => r.content.value);
    assert.deepEqual(
      words.map((w) => w.word),
      ["Hello", "there", "how", "are", "you"],
    );
    for (const word of words) {
      assert.equal(text.slice(word.charStart, word.charEnd), word.word);
      assert.ok(word.startSample < word.endSample);
    }
    const without = await collect(client.speak({ text }));
    assert.equal(without.filter((r) => r.content.case === "word").length, 0);
  });

  test("speakStream speaks fragments as they are written; an interrupt is marked", async () => {
    const text = new TextStream();
    const responses = client.speakStream(text, { config: { wordTimings: false } });
    text.write("Hello there, ");
    const seen = [];
    let interrupted;
    for await (const response of responses) {
      seen.push(response.content.case);
      if (response.content.case === "audio" && seen.filter((c) => c === "audio").length === 1) {
        // Audio of the first clause came before the rest was written: now barge in.
        text.write("this sentence goes on and on and on for a long while, and on, ");
        text.interrupt();
        text.write("Goodbye.");
        text.end();
      }
      if (response.content.case === "interrupted") {
        interrupted = response.content.value;
      }
    }
    assert.equal(seen[0], "format");
    assert.ok(interrupted, `no interrupted marker in ${seen.join(" ")}`);
    assert.ok(interrupted.sampleOffset > 0n);
    assert.equal(seen.at(-1), "summary");
    // Audio after the interrupt: the text written after it.
    assert.ok(seen.lastIndexOf("audio") > seen.indexOf("interrupted"));
  });

  test("speakStream takes any iterable of fragments and markers", async () => {
    const responses = await collect(client.speakStream(["Hello ", "there. ", interrupt, "Bye."]));
    const kinds = responses.map((r) => r.content.case);
    assert.ok(kinds.includes("interrupted"));
    assert.equal(kinds.at(-1), "summary");
  });

  test("synthesizeStream on tts speaks fragments with word timings", async () => {
    const responses = await collect(
      client.synthesizeStream(["Hello ", "there, ", "how are ", "you?"], {
        config: { wordTimings: true, sampleRateHz: 16000 },
      }),
    );
    assert.equal(responses[0].content.value.sampleRateHz, 16000);
    const chunks = responses.filter((r) => r.content.case === "chunk").map((r) => r.content.value);
    assert.ok(chunks.length > 0 && chunks.every((c) => c.audio.length > 0));
    assert.equal(responses.filter((r) => r.content.case === "word").length, 5);
    const summary = responses.at(-1).content.value;
    assert.ok(summary.audioSeconds > 0.3);
  });

  test("synthesize on tts streams chunks and a summary", async () => {
    const responses = await collect(client.synthesize({ text: "Hello there." }));
    assert.equal(responses.at(-1).content.case, "summary");
    assert.ok(responses.some((r) => r.content.case === "chunk"));
  });

  test("listVoices lists the engine's voices", async () => {
    const listed = await client.listVoices();
    assert.ok(listed.engine);
    assert.ok(listed.voices.length > 0);
    assert.ok(listed.voices.every((v) => v.name && v.languages.length > 0));
    const english = await client.listVoices({ language: "en" });
    assert.ok(english.voices.length > 0 && english.voices.length <= listed.voices.length);
  });

  test("an invalid request rejects with ChorusError INVALID_ARGUMENT naming the field", async () => {
    const blank = await rejection(client.speak({ text: "   " }));
    assert.ok(blank instanceof ChorusError);
    assert.equal(blank.code, Status.INVALID_ARGUMENT);
    assert.equal(blank.code, 3);
    assert.equal(blank.codeName, "INVALID_ARGUMENT");
    assert.match(blank.details, /^text:/);
    const preset = await rejection(client.speak({ text: "Hi.", preset: "party" }));
    assert.equal(preset.code, Status.INVALID_ARGUMENT);
    assert.match(preset.details, /^preset:/);
  });

  test("a text stream with a bad config fails, its inputs still open", async () => {
    const text = new TextStream();
    text.write("Never ended.");
    const error = await rejection(client.speakStream(text, { config: { sampleRateHz: 12345 } }));
    assert.equal(error.code, Status.INVALID_ARGUMENT);
    assert.match(error.details, /^sample_rate_hz:/);
  });

  test("inputs that throw fail the call with their own error", async () => {
    async function* broken() {
      yield "Hello ";
      throw new RangeError("the writer broke");
    }
    const error = await rejection(client.speakStream(broken()));
    assert.ok(error instanceof RangeError);
  });

  test("an AbortSignal cancels the call", async () => {
    const controller = new AbortController();
    const long = "This is one sentence of a long speech. ".repeat(60);
    let audio = 0;
    const error = await rejection(
      (async function* () {
        for await (const response of client.speak({ text: long }, { signal: controller.signal })) {
          if (response.content.case === "audio") {
            audio += 1;
            controller.abort();
          }
          yield response;
        }
      })(),
    );
    assert.ok(error instanceof ChorusError);
    assert.equal(error.code, Status.CANCELLED);
    assert.equal(audio, 1);
    const already = await rejection(client.speak({ text: "Hi." }, { signal: controller.signal }));
    assert.equal(already.code, Status.CANCELLED);
    await assert.rejects(client.listVoices({}, { signal: controller.signal }), {
      code: Status.CANCELLED,
    });
  });

  test("leaving the loop early cancels the call", async () => {
    const long = "This is one sentence of a long speech. ".repeat(60);
    const started = Date.now();
    for await (const response of client.speak({ text: long })) {
      if (response.content.case === "audio") break;
    }
    assert.ok(Date.now() - started < 30_000);
    // The client goes on working after it.
    assert.ok((await client.listVoices()).voices.length > 0);
  });

  test("a call past its deadline fails with DEADLINE_EXCEEDED", async () => {
    const segments = Array(200).fill(GREETING);
    const error = await rejection(client.synthesizeBatch({ segments }, { deadlineMs: 200 }));
    assert.ok(error instanceof ChorusError);
    assert.equal(error.code, Status.DEADLINE_EXCEEDED);
  });

  test("synthesizeBatch returns every segment once", async () => {
    const segments = ["One.", "Two.", "Three."];
    const responses = await collect(client.synthesizeBatch({ segments }));
    assert.deepEqual(responses.map((r) => r.index).sort(), [0, 1, 2]);
    for (const response of responses) {
      assert.equal(response.error, "");
      assert.equal(ascii(response.audioWav.subarray(0, 4)), "RIFF");
    }
  });

  test("composeMessage reports progress, then the composed media", { skip: !photoPath && "CHORUS_TEST_PHOTO not set" }, async () => {
    const photo = readFileSync(photoPath);
    const responses = await collect(client.composeMessage({ text: "See you soon.", preset: "calm", photo }));
    const progress = responses.filter((r) => r.content.case === "progress").map((r) => r.content.value);
    assert.ok(progress.some((p) => p.stage === Stage.VISION && p.finished));
    const last = responses.at(-1);
    assert.equal(last.content.case, "result");
    const result = last.content.value;
    assert.equal(ascii(result.audioWav.subarray(0, 4)), "RIFF");
    assert.equal(ascii(result.cutoutPng.subarray(1, 4)), "PNG");
    assert.ok(result.detections.length > 0);
    assert.equal(result.partial, false);
  });

  test("composeMessage with no photo is INVALID_ARGUMENT naming photo", async () => {
    const error = await rejection(client.composeMessage({ text: "Hi." }));
    assert.equal(error.code, Status.INVALID_ARGUMENT);
    assert.match(error.details, /^photo:/);
  });

  test("the API key is sent as bearer metadata; none is UNAUTHENTICATED", { skip: !apiKey && "CHORUS_API_KEY not set" }, async () => {
    const keyless = newClient({ apiKey: undefined });
    try {
      const error = await rejection(keyless.speak({ text: "Hello." }));
      assert.equal(error.code, Status.UNAUTHENTICATED);
      // tts (no keys) still answers the same keyless client.
      assert.ok((await keyless.listVoices()).voices.length > 0);
    } finally {
      keyless.close();
    }
  });

  test("a server that is not there is UNAVAILABLE", async () => {
    const nobody = new ChorusClient({ address: "127.0.0.1:1", deadlineMs: 5000 });
    try {
      await assert.rejects(nobody.listVoices(), { name: "ChorusError", code: Status.UNAVAILABLE });
    } finally {
      nobody.close();
    }
  });
});
