// The README's usage, as a module that compiles (strict) against the installed package:
// tests/clients/test_typescript_client.py type-checks it in a project that installed the
// `npm pack` tarball.
import { readFileSync, writeFileSync } from "node:fs";
import { ChorusClient, ChorusError, Status, TextStream, interrupt } from "chorus-client";

/** Speaks, streams text with a barge-in, lists voices and composes a message. */
export async function main(): Promise<void> {
  const client = new ChorusClient({
    address: "localhost:50051",
    ttsAddress: "localhost:50052",
    apiKey: process.env.CHORUS_API_KEY,
    deadlineMs: 30_000,
  });
  try {
    const audio: Uint8Array[] = [];
    for await (const response of client.speak({ text: "Congratulations!", wordTimings: true })) {
      switch (response.content.case) {
        case "format":
          console.log(`${response.content.value.sampleRateHz} Hz`);
          break;
        case "audio":
          audio.push(response.content.value);
          break;
        case "word":
          console.log(response.content.value.word, response.content.value.startSample);
          break;
        case "summary":
          console.log(`${response.content.value.audioSeconds} s`);
          break;
      }
    }
    writeFileSync("speech.pcm", Buffer.concat(audio));

    const text = new TextStream();
    const responses = client.speakStream(text, { config: { sampleRateHz: 16000 } });
    text.write("Hello there, ");
    text.write("how are you?");
    text.interrupt();
    text.write("Never mind.");
    text.end();
    for await (const response of responses) {
      if (response.content.case === "interrupted") {
        console.log("cut at", response.content.value.sampleOffset);
      }
    }
    for await (const response of client.synthesizeStream(["Hello ", "there.", interrupt, "Bye."])) {
      console.log(response.content.case);
    }

    const controller = new AbortController();
    try {
      for await (const response of client.speak({ text: "  " }, { signal: controller.signal })) {
        console.log(response.content.case);
      }
    } catch (error) {
      if (error instanceof ChorusError && error.code === Status.INVALID_ARGUMENT) {
        console.log(error.details);
      }
    }

    console.log((await client.listVoices({ language: "en" })).voices.map((v) => v.name));
    const photo = readFileSync("me.jpg");
    for await (const response of client.composeMessage({ text: "See you", preset: "calm", photo })) {
      if (response.content.case === "result") {
        writeFileSync("message.wav", response.content.value.audioWav);
        writeFileSync("cutout.png", response.content.value.cutoutPng);
      }
    }
  } finally {
    client.close();
  }
}
