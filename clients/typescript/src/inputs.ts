import type { InputFailure } from "./calls.js";

/** A marker of a text stream: speak what is pending now, or barge in. */
export interface StreamControl {
  readonly kind: "flush" | "interrupt";
}

/**
 * What a text stream (`speakStream`, `synthesizeStream`) sends after its config: a
 * fragment of the text, in order, or a control marker ({@link flush}, {@link interrupt}).
 */
export type StreamInput = string | StreamControl;

/** Speak the text pending now even though its clause is not complete. */
export const flush: StreamControl = Object.freeze({ kind: "flush" });

/**
 * Barge-in: drop the text not yet spoken and stop the audio now; the stream goes on with
 * the text sent after it, and the responses carry an `interrupted` marker where it cut.
 */
export const interrupt: StreamControl = Object.freeze({ kind: "interrupt" });

/** One request of a text stream, as its `content` oneof (the two services' share it). */
export type StreamContent<Config> =
  | { case: "config"; value: Config }
  | { case: "text"; value: string }
  | { case: "flush"; value: Record<string, never> }
  | { case: "interrupt"; value: Record<string, never> }
  | { case: "end"; value: Record<string, never> };

/**
 * The requests of a text stream: `config`, then each input, then an End once `inputs`
 * is done (after which the client closes its side of the stream).
 *
 * @param config - how to speak
 * @param inputs - the text as it is written, and control markers
 * @param failure - where an error thrown by `inputs` is recorded (the call fails with it)
 */
export async function* streamRequests<Config>(
  config: Config,
  inputs: AsyncIterable<StreamInput> | Iterable<StreamInput>,
  failure: InputFailure,
): AsyncGenerator<{ content: StreamContent<Config> }, void, undefined> {
  yield { content: { case: "config", value: config } };
  try {
    for await (const input of inputs) {
      yield { content: content(input) };
    }
  } catch (reason) {
    failure.error = { reason };
    throw reason;
  }
  yield { content: { case: "end", value: {} } };
}

function content(input: StreamInput): StreamContent<never> {
  if (typeof input === "string") {
    return { case: "text", value: input };
  }
  if (input?.kind === "flush" || input?.kind === "interrupt") {
    return { case: input.kind, value: {} };
  }
  throw new TypeError(`not a text stream input (a string, flush or interrupt): ${String(input)}`);
}

/**
 * A text stream written as it goes: push text fragments and markers with its methods while
 * the call reads them (it is the `inputs` of `speakStream` or `synthesizeStream`, for one
 * call); `end()` says no more text comes.
 *
 * @example
 * ```ts
 * const text = new TextStream();
 * const responses = client.speakStream(text);
 * text.write("Hello there, ");
 * text.write("how are you?");
 * text.end();
 * for await (const response of responses) { ... }
 * ```
 */
export class TextStream implements AsyncIterable<StreamInput> {
  private readonly pending: StreamInput[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private iterated = false;

  /**
   * Sends more of the text, in order; clauses are spoken as soon as they are complete.
   *
   * @param text - the next fragment
   */
  write(text: string): void {
    this.push(text);
  }

  /** Speaks the text pending now even though its clause is not complete. */
  flush(): void {
    this.push(flush);
  }

  /** Barge-in: drops the text not yet spoken and stops the audio now. */
  interrupt(): void {
    this.push(interrupt);
  }

  /** No more text: what is pending is spoken, then the stream ends. */
  end(): void {
    this.ended = true;
    this.signal();
  }

  /** The inputs in the order they were pushed, until `end()`; iterated once. */
  async *[Symbol.asyncIterator](): AsyncGenerator<StreamInput, void, undefined> {
    if (this.iterated) {
      throw new Error("a TextStream feeds one call only");
    }
    this.iterated = true;
    for (;;) {
      const next = this.pending.shift();
      if (next !== undefined) {
        yield next;
      } else if (this.ended) {
        return;
      } else {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    }
  }

  private push(input: StreamInput): void {
    if (this.ended) {
      throw new Error("the TextStream has ended");
    }
    this.pending.push(input);
    this.signal();
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
