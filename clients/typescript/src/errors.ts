import { ConnectError } from "@connectrpc/connect";

/**
 * gRPC status codes, with the numbers the wire carries (`Status[3] === "INVALID_ARGUMENT"`).
 */
export enum Status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/**
 * How a Chorus call failed: the gRPC status code and the server's message (for bad input,
 * `INVALID_ARGUMENT` with a message that starts with the field's name: `text: is empty`).
 *
 * Every method of {@link ChorusClient} rejects, or ends its iteration, with a
 * `ChorusError`; a call cancelled through its `AbortSignal` ends with `CANCELLED`, and one
 * past its deadline with `DEADLINE_EXCEEDED`.
 */
export class ChorusError extends Error {
  /** The gRPC status code. */
  readonly code: Status;
  /** The status message as the server sent it (no code in front). */
  readonly details: string;
  /** Response headers and trailers that came with the error. */
  readonly metadata: Headers;

  /**
   * @param code - the gRPC status code
   * @param details - the status message
   * @param options - the headers and trailers of the call, and the error behind this one
   */
  constructor(
    code: Status,
    details: string,
    options: { metadata?: Headers; cause?: unknown } = {},
  ) {
    super(`${Status[code] ?? `code ${code}`}: ${details}`, { cause: options.cause });
    this.name = "ChorusError";
    this.code = code;
    this.details = details;
    this.metadata = options.metadata ?? new Headers();
  }

  /** The status code's name, such as `"INVALID_ARGUMENT"`. */
  get codeName(): string {
    return Status[this.code] ?? `CODE_${this.code}`;
  }

  /**
   * `reason` as a `ChorusError`: a `ChorusError` as it is, a Connect error with its code,
   * anything else as `UNKNOWN` with the error as its cause.
   *
   * @param reason - what a call threw
   */
  static from(reason: unknown): ChorusError {
    if (reason instanceof ChorusError) {
      return reason;
    }
    const error = ConnectError.from(reason);
    // Connect's codes are gRPC's, number for number.
    const code = error.code as number as Status;
    return new ChorusError(code, error.rawMessage, { metadata: error.metadata, cause: reason });
  }
}
