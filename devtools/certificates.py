"""Throwaway certificates for TLS tests and benchmarks, made with the ``openssl`` command.

A CA, server certificates (for ``localhost`` and ``127.0.0.1`` unless told other hosts),
and client certificates, each an EC P-256 key and a PEM certificate in files laid out as a
Kubernetes TLS Secret mounts them (``tls.crt``, ``tls.key``, ``ca.crt``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""

_serials = itertools.count(1000)

LOCALHOST = ("localhost", "127.0.0.1")
"""The hosts a server certificate names unless told others."""


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _config(folder: Path) -> Path:
    config = folder / "openssl.cnf"
    if not config.exists():
        config.write_text(_CONFIG)
    return config


def _extensions(folder: Path, name: str, kind: str, hosts: Sequence[str]) -> Path:
    """The extension file of one certificate: the config's sections, and for a server its
    subjectAltName."""
    extensions = folder / f"{name}.ext"
    text = _CONFIG
    if kind == "server":
        names = [
            f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}" for host in hosts
        ]
        text = text.replace("[server]\n", f"[server]\nsubjectAltName = {','.join(names)}\n")
    extensions.write_text(text)
    return extensions


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files; ``serial`` is the certificate's serial."""

    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class CertAuthority:
    """A certificate authority that issues server and client certificates."""

    cert: Path
    key: Path
    folder: Path

    @classmethod
    def create(cls, folder: Path, name: str = "ca") -> CertAuthority:
        """A new self-signed CA in ``folder`` (``<name>.crt``, ``<name>.key``)."""
        if shutil.which("openssl") is None:
            raise RuntimeError("the openssl command is needed to make certificates")
        folder.mkdir(parents=True, exist_ok=True)
        key, cert = folder / f"{name}.key", folder / f"{name}.crt"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl(
            "req", "-new", "-x509", "-key", key, "-out", cert, "-days", "2",
            "-subj", f"/CN=Chorus test {name}", "-config", _config(folder), "-extensions", "ca",
        )  # fmt: skip
        return cls(cert, key, folder)

    def issue(self, name: str, kind: str = "server", hosts: Sequence[str] = LOCALHOST) -> Pair:
        """A ``kind`` ("server" or "client") certificate named ``name``, with a serial of
        its own, in ``<name>.crt`` and ``<name>.key`` next to the CA; a server certificate
        names ``hosts`` (DNS names or IP addresses) in its subjectAltName."""
        key, cert = self.folder / f"{name}.key", self.folder / f"{name}.crt"
        request = self.folder / f"{name}.csr"
        serial = next(_serials)
        config = _config(self.folder)
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl(
            "req", "-new", "-key", key, "-out", request, "-subj", f"/CN={name}", "-config", config
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.cert, "-CAkey", self.key,
            "-set_serial", str(serial), "-days", "2", "-out", cert,
            "-extfile", _extensions(self.folder, name, kind, hosts), "-extensions", kind,
        )  # fmt: skip
        return Pair(cert, key, serial)


def install(pair: Pair, ca: CertAuthority, folder: Path) -> None:
    """Put ``pair`` and ``ca`` in ``folder`` as tls.crt, tls.key and ca.crt, each file
    replaced at once (a new file renamed over the old), as a rotation does."""
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((pair.key, "tls.key"), (pair.cert, "tls.crt"), (ca.cert, "ca.crt")):
        staged = folder / f".{name}.new"
        staged.write_bytes(source.read_bytes())
        os.replace(staged, folder / name)
