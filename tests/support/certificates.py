"""Throwaway certificates for TLS tests, made with the ``openssl`` command line.

A CA, server certificates for ``localhost`` and ``127.0.0.1``, and client certificates,
each an EC P-256 key and a PEM certificate in files laid out as a Kubernetes TLS Secret
mounts them (``tls.crt``, ``tls.key``, ``ca.crt``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

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
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""

_serials = itertools.count(1000)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _config(folder: Path) -> Path:
    config = folder / "openssl.cnf"
    if not config.exists():
        config.write_text(_CONFIG)
    return config


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
            pytest.skip("the openssl command is needed to make test certificates")
        folder.mkdir(parents=True, exist_ok=True)
        key, cert = folder / f"{name}.key", folder / f"{name}.crt"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl(
            "req", "-new", "-x509", "-key", key, "-out", cert, "-days", "2",
            "-subj", f"/CN=Chorus test {name}", "-config", _config(folder), "-extensions", "ca",
        )  # fmt: skip
        return cls(cert, key, folder)

    def issue(self, name: str, kind: str = "server") -> Pair:
        """A ``kind`` ("server" or "client") certificate named ``name``, with a serial of
        its own, in ``<name>.crt`` and ``<name>.key`` next to the CA."""
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
            "-extfile", config, "-extensions", kind,
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
