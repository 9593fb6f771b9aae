import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { SecureClientSessionOptions } from "node:http2";

/** PEM text or bytes: a CA bundle, a certificate chain or a private key. */
export type Pem = string | Uint8Array;

/** TLS for a connection: the server's certificate is checked, as by gRPC's SSL credentials. */
export interface TlsOptions {
  /** CA certificates (PEM) the server's certificate must chain to; default: the system's. */
  readonly ca?: Pem | undefined;
  /** A client certificate chain (PEM), for servers that require mutual TLS. */
  readonly cert?: Pem | undefined;
  /** The client certificate's private key (PEM). */
  readonly key?: Pem | undefined;
  /** The name the server's certificate is checked for, instead of the address's host. */
  readonly serverName?: string | undefined;
}

/** How to reach one Chorus server. */
export interface ConnectionOptions {
  /** `host:port` of the server. */
  readonly address: string;
  /** TLS: `true` for the system's CAs, or the CA (and client certificate) to use; default plaintext. */
  readonly tls?: boolean | TlsOptions | undefined;
  /** Sent as `authorization: Bearer <key>` metadata on every call. */
  readonly apiKey?: string | undefined;
}

/** A transport to one server and the HTTP/2 connection under it. */
export interface Connection {
  readonly transport: Transport;
  /** Closes the connection, ending the calls still open on it. */
  close(): void;
}

/**
 * Opens (lazily, on the first call) an HTTP/2 connection speaking gRPC to `options.address`.
 *
 * @param options - the address, TLS and API key
 */
export function connect(options: ConnectionOptions): Connection {
  const tls = options.tls === true ? {} : options.tls || undefined;
  const baseUrl = `${tls ? "https" : "http"}://${options.address}`;
  const sessionManager = new Http2SessionManager(baseUrl, {}, tls ? secureOptions(tls) : {});
  const interceptors: Interceptor[] = [];
  if (options.apiKey !== undefined) {
    interceptors.push(bearer(options.apiKey));
  }
  const transport = createGrpcTransport({ baseUrl, sessionManager, interceptors });
  return {
    transport,
    close: () => sessionManager.abort(),
  };
}

function secureOptions(tls: TlsOptions): SecureClientSessionOptions {
  const options: SecureClientSessionOptions = {};
  if (tls.ca !== undefined) options.ca = pemText(tls.ca);
  if (tls.cert !== undefined) options.cert = pemText(tls.cert);
  if (tls.key !== undefined) options.key = pemText(tls.key);
  if (tls.serverName !== undefined) options.servername = tls.serverName;
  return options;
}

function pemText(pem: Pem): string {
  return typeof pem === "string" ? pem : Buffer.from(pem).toString("utf8");
}

function bearer(apiKey: string): Interceptor {
  const value = `Bearer ${apiKey}`;
  return (next) => (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}
