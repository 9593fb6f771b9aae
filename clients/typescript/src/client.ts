import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import {
  type CallDefaults,
  type CallOptions,
  type InputFailure,
  streamingCall,
  unaryCall,
} from "./calls.js";
import { connect, type Connection, type ConnectionOptions } from "./connection.js";
import { type StreamInput, streamRequests } from "./inputs.js";
import {
  type ComposeMessageRequestSchema,
  type ComposeMessageResponse,
  Orchestrator,
  type SpeakRequestSchema,
  type SpeakResponse,
  type SpeakStreamConfigSchema,
  type SynthesizeBatchRequestSchema,
  type SynthesizeBatchResponse,
} from "./gen/chorus/orchestrator/v1/orchestrator_pb.js";
import {
  type ListVoicesRequestSchema,
  type ListVoicesResponse,
  type SynthesisConfigSchema,
  type SynthesizeRequestSchema,
  type SynthesizeResponse,
  TextToSpeech,
} from "./gen/chorus/tts/v1/tts_pb.js";

/** A `SpeakRequest` as plain fields (`{ text: "Hello", wordTimings: true }`). */
export type SpeakRequestInit = MessageInitShape<typeof SpeakRequestSchema>;
/** A `SpeakStreamConfig` as plain fields. */
export type SpeakStreamConfigInit = MessageInitShape<typeof SpeakStreamConfigSchema>;
/** A `ComposeMessageRequest` as plain fields (the photo as bytes). */
export type ComposeMessageRequestInit = MessageInitShape<typeof ComposeMessageRequestSchema>;
/** A `SynthesizeBatchRequest` as plain fields. */
export type SynthesizeBatchRequestInit = MessageInitShape<typeof SynthesizeBatchRequestSchema>;
/** A tts `SynthesizeRequest` as plain fields. */
export type SynthesizeRequestInit = MessageInitShape<typeof SynthesizeRequestSchema>;
/** A tts `SynthesisConfig` as plain fields. */
export type SynthesisConfigInit = MessageInitShape<typeof SynthesisConfigSchema>;
/** A tts `ListVoicesRequest` as plain fields. */
export type ListVoicesRequestInit = MessageInitShape<typeof ListVoicesRequestSchema>;

/** Options of a text stream's call: the call's options and how to speak. */
export interface TextStreamOptions<Config> extends CallOptions {
  /** Voice, language, rate, encoding, word timings; default: the server's defaults. */
  readonly config?: Config | undefined;
}

/** How a {@link ChorusClient} reaches Chorus. */
export interface ChorusClientOptions extends ConnectionOptions, CallDefaults {
  /**
   * `host:port` of the tts service, for `synthesize`, `synthesizeStream` and `listVoices`
   * (same TLS and API key); default: `address` (a gateway that routes both services).
   */
  readonly ttsAddress?: string | undefined;
}

/** A streaming response, as the methods of {@link ChorusClient} return them. */
export type Responses<T> = AsyncGenerator<T, void, undefined>;

/**
 * A client of the Chorus orchestrator (and of the tts service, for its text streams and
 * voices). Streaming methods return async iterables: the call starts when iteration starts,
 * each response comes as the server sends it, and leaving the loop early cancels the call.
 * Failures are {@link ChorusError}s carrying the gRPC status code.
 *
 * @example
 * ```ts
 * const client = new ChorusClient({ address: "localhost:50051", ttsAddress: "localhost:50052" });
 * for await (const response of client.speak({ text: "Hello!", wordTimings: true })) {
 *   if (response.content.case === "audio") player.write(response.content.value);
 * }
 * client.close();
 * ```
 */
export class ChorusClient {
  private readonly orchestrator: Client<typeof Orchestrator>;
  private readonly tts: Client<typeof TextToSpeech>;
  private readonly connections: readonly Connection[];
  private readonly defaults: CallDefaults;

  /**
   * Makes a client; nothing connects until the first call.
   *
   * @param options - the address (and the tts service's), TLS, API key, default deadline
   */
  constructor(options: ChorusClientOptions) {
    const orchestrator = connect(options);
    const tts =
      options.ttsAddress === undefined || options.ttsAddress === options.address
        ? orchestrator
        : connect({ ...options, address: options.ttsAddress });
    this.connections = tts === orchestrator ? [orchestrator] : [orchestrator, tts];
    this.orchestrator = createClient(Orchestrator, orchestrator.transport);
    this.tts = createClient(TextToSpeech, tts.transport);
    this.defaults = options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs };
  }

  /**
   * Speaks a text (orchestrator `Speak`): the audio format first, then the audio as it is
   * made (with word timings before the audio they start in, when `wordTimings` is set),
   * then a summary.
   *
   * @param request - the text, and optionally voice, preset, encoding, sample rate
   * @param options - signal, deadline, metadata
   */
  speak(request: SpeakRequestInit, options: CallOptions = {}): Responses<SpeakResponse> {
    return streamingCall(options, this.defaults, (call) => this.orchestrator.speak(request, call));
  }

  /**
   * Speaks text as it is written (orchestrator `SpeakStream`): sends the config, then each
   * input as it comes (text fragments, {@link flush}, {@link interrupt}), then an End when
   * `inputs` is done. The responses are `speak`'s, with an `interrupted` marker after each
   * interrupt. If `inputs` throws, the call is cancelled and fails with that error.
   *
   * @param inputs - the text as it is written; a {@link TextStream} to push it
   * @param options - the config; signal, deadline, metadata
   */
  speakStream(
    inputs: AsyncIterable<StreamInput> | Iterable<StreamInput>,
    options: TextStreamOptions<SpeakStreamConfigInit> = {},
  ): Responses<SpeakResponse> {
    const failure: InputFailure = {};
    const requests = streamRequests(options.config ?? {}, inputs, failure);
    return streamingCall(
      options,
      this.defaults,
      (call) => this.orchestrator.speakStream(requests, call),
      failure,
    );
  }

  /**
   * Composes a video message's media (orchestrator `ComposeMessage`): progress events as
   * stages start and finish, then the result (WAV speech, cut-out PNG, detections).
   *
   * @param request - the text, preset, voice and the sender's photo
   * @param options - signal, deadline, metadata
   */
  composeMessage(
    request: ComposeMessageRequestInit,
    options: CallOptions = {},
  ): Responses<ComposeMessageResponse> {
    return streamingCall(options, this.defaults, (call) =>
      this.orchestrator.composeMessage(request, call),
    );
  }

  /**
   * Speaks many segments (orchestrator `SynthesizeBatch`): each segment's WAV as soon as
   * it is ready, out of order, with its index.
   *
   * @param request - the segments, voice, preset and concurrency
   * @param options - signal, deadline, metadata
   */
  synthesizeBatch(
    request: SynthesizeBatchRequestInit,
    options: CallOptions = {},
  ): Responses<SynthesizeBatchResponse> {
    return streamingCall(options, this.defaults, (call) =>
      this.orchestrator.synthesizeBatch(request, call),
    );
  }

  /**
   * Speaks a text on the tts service (`Synthesize`): the format, audio chunks (and word
   * timings) in order, then a summary.
   *
   * @param request - the text, voice, rate, encoding, chunking
   * @param options - signal, deadline, metadata
   */
  synthesize(request: SynthesizeRequestInit, options: CallOptions = {}): Responses<SynthesizeResponse> {
    return streamingCall(options, this.defaults, (call) => this.tts.synthesize(request, call));
  }

  /**
   * Speaks text as it is written on the tts service (`SynthesizeStream`), as
   * {@link ChorusClient.speakStream} does on the orchestrator; responses are
   * `synthesize`'s, with an `interrupted` marker after each interrupt.
   *
   * @param inputs - the text as it is written; a {@link TextStream} to push it
   * @param options - the config; signal, deadline, metadata
   */
  synthesizeStream(
    inputs: AsyncIterable<StreamInput> | Iterable<StreamInput>,
    options: TextStreamOptions<SynthesisConfigInit> = {},
  ): Responses<SynthesizeResponse> {
    const failure: InputFailure = {};
    const requests = streamRequests(options.config ?? {}, inputs, failure);
    return streamingCall(
      options,
      this.defaults,
      (call) => this.tts.synthesizeStream(requests, call),
      failure,
    );
  }

  /**
   * The voices of the tts service's engine (`ListVoices`).
   *
   * @param request - optionally a language: only voices that speak it
   * @param options - signal, deadline, metadata
   */
  listVoices(
    request: ListVoicesRequestInit = {},
    options: CallOptions = {},
  ): Promise<ListVoicesResponse> {
    return unaryCall(options, this.defaults, (call) => this.tts.listVoices(request, call));
  }

  /** Closes the client's connections, ending any call still open on them. */
  close(): void {
    for (const connection of this.connections) {
      connection.close();
    }
  }
}
