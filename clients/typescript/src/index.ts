/**
 * chorus-client: a TypeScript client of the Chorus gRPC media services, generated from
 * the project's protos (protobuf-es messages, Connect's gRPC transport over HTTP/2).
 *
 * @packageDocumentation
 */

export {
  ChorusClient,
  type ChorusClientOptions,
  type ComposeMessageRequestInit,
  type ListVoicesRequestInit,
  type Responses,
  type SpeakRequestInit,
  type SpeakStreamConfigInit,
  type SynthesisConfigInit,
  type SynthesizeBatchRequestInit,
  type SynthesizeRequestInit,
  type TextStreamOptions,
} from "./client.js";
export type { CallDefaults, CallOptions } from "./calls.js";
export type { ConnectionOptions, Pem, TlsOptions } from "./connection.js";
export { ChorusError, Status } from "./errors.js";
export { flush, interrupt, type StreamControl, type StreamInput, TextStream } from "./inputs.js";

// The generated messages, enums and service descriptors, as the API defines them.
export * from "./gen/chorus/audio/v1/audio_pb.js";
export * from "./gen/chorus/orchestrator/v1/orchestrator_pb.js";
export * from "./gen/chorus/prosody/v1/prosody_pb.js";
export * from "./gen/chorus/tts/v1/tts_pb.js";
export * from "./gen/chorus/vision/v1/vision_pb.js";
