import { Code, type CallOptions as ConnectCallOptions, ConnectError } from "@connectrpc/connect";
import { ChorusError, Status } from "./errors.js";

/** Options of one call; each overrides the client's own for this call. */
export interface CallOptions {
  /** Cancels the call: it rejects, or its iteration ends, with `ChorusError` `CANCELLED`. */
  readonly signal?: AbortSignal | undefined;
  /** Milliseconds the call may take from its start (its gRPC deadline); 0: none. */
  readonly deadlineMs?: number | undefined;
  /** More metadata to send, as header name and value. */
  readonly metadata?: Readonly<Record<string, string>> | undefined;
}

/** Where a call's request stream records that the caller's inputs threw. */
export interface InputFailure {
  error?: { readonly reason: unknown };
}

/** What every call of one client shares. */
export interface CallDefaults {
  /** The deadline of a call that sets none, in milliseconds; 0 or absent: none. */
  readonly deadlineMs?: number | undefined;
}

function connectOptions(
  options: CallOptions,
  defaults: CallDefaults,
  signal: AbortSignal | undefined,
): ConnectCallOptions {
  const deadlineMs = options.deadlineMs ?? defaults.deadlineMs ?? 0;
  const connect: ConnectCallOptions = { timeoutMs: deadlineMs > 0 ? deadlineMs : 0 };
  if (signal !== undefined) connect.signal = signal;
  if (options.metadata !== undefined) connect.headers = { ...options.metadata };
  return connect;
}

/** `reason` as the ChorusError the caller sees: CANCELLED when the caller's signal fired. */
function failure(reason: unknown, callerSignal: AbortSignal | undefined): ChorusError {
  if (callerSignal?.aborted === true) {
    return new ChorusError(Status.CANCELLED, `call cancelled: ${describe(callerSignal.reason)}`, {
      cause: callerSignal.reason,
    });
  }
  return ChorusError.from(reason);
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/**
 * Runs a unary call with `options`, its errors as ChorusError.
 *
 * @param options - the call's options
 * @param defaults - the client's options
 * @param call - makes the call with Connect's options
 */
export async function unaryCall<T>(
  options: CallOptions,
  defaults: CallDefaults,
  call: (connect: ConnectCallOptions) => Promise<T>,
): Promise<T> {
  try {
    options.signal?.throwIfAborted();
    return await call(connectOptions(options, defaults, options.signal));
  } catch (error) {
    throw failure(error, options.signal);
  }
}

/**
 * Runs a streaming call with `options`, its responses as they come and its errors as
 * ChorusError. The call starts when iteration starts; leaving the iteration early (a
 * `break`, a `return`, an exception in the loop) cancels it.
 *
 * @param options - the call's options
 * @param defaults - the client's options
 * @param start - starts the call with Connect's options
 * @param inputs - where the call's request stream records a failure of the caller's
 *   inputs: the call then fails with that error, as the caller's iterable threw it
 */
export async function* streamingCall<T>(
  options: CallOptions,
  defaults: CallDefaults,
  start: (connect: ConnectCallOptions) => AsyncIterable<T>,
  inputs?: InputFailure,
): AsyncGenerator<T, void, undefined> {
  const local = new AbortController();
  const signal =
    options.signal === undefined ? local.signal : AbortSignal.any([options.signal, local.signal]);
  let responses: AsyncIterator<T> | undefined;
  let finished = false;
  try {
    options.signal?.throwIfAborted();
    responses = start(connectOptions(options, defaults, signal))[Symbol.asyncIterator]();
    for (;;) {
      const next = await responses.next();
      if (next.done === true) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } catch (error) {
    finished = true;
    throw inputs?.error !== undefined ? inputs.error.reason : failure(error, options.signal);
  } finally {
    // Ended or not, nothing of the call may outlive it: its request stream still waiting
    // for the caller's inputs, its deadline's timer. When the caller left the loop, the
    // call is cancelled, then read to its end (the cancellation, at once). The reason is
    // a Connect error with code Canceled: any other makes an RST_STREAM with
    // INTERNAL_ERROR, where gRPC cancels with CANCEL.
    local.abort(new ConnectError("the call is over on the client's side", Code.Canceled));
    if (!finished) {
      await drain(responses);
    }
  }
}

async function drain(responses: AsyncIterator<unknown> | undefined): Promise<void> {
  try {
    while (responses !== undefined && (await responses.next()).done !== true) {
      // Responses that had arrived before the cancellation.
    }
  } catch {
    // The cancellation itself.
  }
}
