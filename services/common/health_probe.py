"""``python -m services.common.health_probe``: a health check a container runs on itself.

Kubernetes' built-in ``grpc`` probe speaks plaintext only. With TLS on, the manifests run
this as an ``exec`` probe instead: it dials the server's own port on loopback over TLS,
presenting the server's own certificate as its client certificate (the TLS component issues
it for both server and client authentication, so a server that requires client
certificates lets its own probe in), and exits 0 only when health says SERVING.

Without TLS files it speaks plaintext, like the built-in probe.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.tls import channel_credentials


def check(
    address: str,
    service: str,
    timeout_s: float,
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    server_name: str = "",
) -> str:
    """The health status name ``address`` reports for ``service`` ("SERVING", ...), or a
    gRPC status code's name when the check itself fails; over TLS when ``ca_file`` is set."""
    if ca_file:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        credentials = channel_credentials(ca_file, cert_file, key_file)
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return str(code.name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: Sequence[str] | None = None) -> int:
    """Check once; exit 0 on SERVING, 1 otherwise (printing what was found)."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--port", type=int, default=int(env.get("CHORUS_PORT", "0") or 0),
        help="the server's port on loopback (default: CHORUS_PORT)",
    )  # fmt: skip
    parser.add_argument("--service", default="", help='health name ("" for the whole server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--ca-file", default=env.get("CHORUS_TLS_CA_FILE", ""))
    parser.add_argument("--cert-file", default=env.get("CHORUS_TLS_CERT_FILE", ""))
    parser.add_argument("--key-file", default=env.get("CHORUS_TLS_KEY_FILE", ""))
    parser.add_argument(
        "--server-name", default="",
        help="the name the server's certificate is checked for (it does not name localhost)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.port:
        parser.error("--port (or CHORUS_PORT) is required")
    status = check(
        f"localhost:{args.port}",
        args.service,
        args.timeout,
        args.ca_file,
        args.cert_file if args.ca_file else "",
        args.key_file if args.ca_file else "",
        args.server_name,
    )
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
