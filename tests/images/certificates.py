"""Certificates for the containers: one CA, a server certificate per container for its
host name on the Docker network, and the orchestrator's client certificate.

tests/support/certificates.py makes the CA and the client certificate; its server
certificates name only localhost, so the server ones here are issued by the same CA with
the container's own name in subjectAltName, which is what gRPC and redis-py check.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.certificates import CertAuthority, Pair, install

_SERVER_EXTENSIONS = """\
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {names}
authorityKeyIdentifier = keyid
"""


def server_pair(ca: CertAuthority, host: str, serial: int) -> Pair:
    """A server certificate for ``host`` (and localhost and 127.0.0.1, which the tests
    dial the published port by), signed by ``ca``."""
    folder = ca.folder
    key, cert, request = (folder / f"{host}-server.{suffix}" for suffix in ("key", "crt", "csr"))
    extensions = folder / f"{host}-server.ext"
    extensions.write_text(_SERVER_EXTENSIONS.format(names=f"DNS:{host},DNS:localhost,IP:127.0.0.1"))
    commands = [
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key],
        ["req", "-new", "-key", key, "-out", request, "-subj", f"/CN={host}"],
        [
            "x509", "-req", "-in", request, "-CA", ca.cert, "-CAkey", ca.key,
            "-set_serial", str(serial), "-days", "2", "-out", cert, "-extfile", extensions,
        ],
    ]  # fmt: skip
    for command in commands:
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return Pair(cert, key, serial)


def certificate_folders(root: Path, hosts: list[str]) -> dict[str, Path]:
    """A folder per host, mounted read-only at /certs in its container: ``server/`` with
    its tls.crt, tls.key and ca.crt, and for the orchestrator ``client/`` with the client
    certificate it shows the inner services (mutual TLS)."""
    ca = CertAuthority.create(root / "ca")
    folders = {}
    for serial, host in enumerate(hosts, start=1):
        folders[host] = root / host
        install(server_pair(ca, host, serial), ca, folders[host] / "server")
    install(ca.issue("orchestrator-client", "client"), ca, folders["orchestrator"] / "client")
    for path in root.rglob("*"):
        # The containers run as uid 10001 (Redis as its own user), not as the owner of
        # these throwaway files: every one must be readable by all.
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folders
