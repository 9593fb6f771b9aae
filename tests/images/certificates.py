"""Certificates for the containers: one CA, a server certificate per container for its
host name on the Docker network (and localhost, which the tests dial the published port
by), and the orchestrator's client certificate."""

from __future__ import annotations

from pathlib import Path

from tests.support.certificates import CertAuthority, install


def certificate_folders(root: Path, hosts: list[str]) -> dict[str, Path]:
    """A folder per host, mounted read-only at /certs in its container: ``server/`` with
    its tls.crt, tls.key and ca.crt, and for the orchestrator ``client/`` with the client
    certificate it shows the inner services (mutual TLS)."""
    ca = CertAuthority.create(root / "ca")
    folders = {}
    for host in hosts:
        folders[host] = root / host
        server = ca.issue(f"{host}-server", hosts=(host, "localhost", "127.0.0.1"))
        install(server, ca, folders[host] / "server")
    install(ca.issue("orchestrator-client", "client"), ca, folders["orchestrator"] / "client")
    for path in root.rglob("*"):
        # The containers run as uid 10001 (Redis as its own user), not as the owner of
        # these throwaway files: every one must be readable by all.
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folders
