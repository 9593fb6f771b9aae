"""TLS for the gRPC servers and the orchestrator's channels, from PEM files.

The files are those a Kubernetes Secret of type ``kubernetes.io/tls`` (or cert-manager)
mounts: ``tls.crt`` (certificate chain), ``tls.key`` (its private key), ``ca.crt`` (the CA).

A server re-reads its files without a restart: gRPC asks ``ReloadingServerCertificates``
for a configuration at every TLS handshake, and it answers with a new one only when the
files changed (cert-manager rotated them), so new connections get the new certificate while
connections already open keep theirs until they end (``max_connection_age_s``).

Channel credentials, on the other hand, are read once, when a channel is made: a client
that follows rotation makes a new channel when ``files_stamp`` of its files changes (the
orchestrator's ``Upstream``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

FilesStamp = tuple[tuple[int, int, int], ...]
"""What changes when any of some files is replaced or rewritten (see ``files_stamp``)."""


def files_stamp(paths: Sequence[str]) -> FilesStamp:
    """Modification time, size and inode of each of ``paths``: a rotation changes it.

    ``os.stat`` follows the ..data symlink a Secret volume swaps when it is updated.
    Raises OSError when a file cannot be read (a rotation half done).
    """
    stats = [os.stat(path) for path in paths]
    return tuple((stat.st_mtime_ns, stat.st_size, stat.st_ino) for stat in stats)


@dataclass(frozen=True)
class ServerTlsFiles:
    """Where a server's TLS files are; see ServerSettings' ``tls_*`` fields."""

    cert_file: str
    key_file: str
    ca_file: str = ""
    require_client_cert: bool = False

    def __post_init__(self) -> None:
        if not self.cert_file or not self.key_file:
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        if self.require_client_cert and not self.ca_file:
            raise ValueError("tls_require_client_cert needs tls_ca_file, the clients' CA")

    @property
    def paths(self) -> Sequence[str]:
        return [self.cert_file, self.key_file, *([self.ca_file] if self.ca_file else [])]


def server_tls_files(
    cert_file: str, key_file: str, ca_file: str, require_client_cert: bool
) -> ServerTlsFiles | None:
    """The server's TLS files from its settings, or None for plaintext (no file set).

    Raises ValueError when the settings are half there (a certificate without its key, or
    client certificates required without the CA to check them against).
    """
    if not (cert_file or key_file or ca_file or require_client_cert):
        return None
    return ServerTlsFiles(cert_file, key_file, ca_file, require_client_cert)


class ReloadingServerCertificates:
    """The server certificate configuration, re-read when its files change.

    ``fetch`` is gRPC's certificate configuration fetcher: called for every handshake,
    it costs a ``stat`` of each file while they are unchanged. A file that cannot be read
    (a rotation half done) keeps the configuration in use, and is tried again at the next
    handshake.
    """

    def __init__(self, files: ServerTlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._contents = self._read()
        self.reloads = 0

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration the files hold now (at start-up)."""
        return self._configuration(self._contents)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since the last one, else None."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return None
                contents = self._read()
            except OSError as error:
                logger.warning("TLS files unreadable, keeping the certificate in use: %s", error)
                return None
            self._stamp = stamp
            if contents == self._contents:
                return None
            self._contents = contents
            self.reloads += 1
        logger.info("TLS files changed: new connections use the new certificate")
        return self._configuration(contents)

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that call ``fetch`` at every handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self.initial(),
            # None means "no change", as grpc documents; its type stubs leave None out.
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self.files.require_client_cert,
        )

    def _stat(self) -> FilesStamp:
        return files_stamp(self.files.paths)

    def _read(self) -> tuple[bytes, ...]:
        return tuple(Path(path).read_bytes() for path in self.files.paths)

    def _configuration(self, contents: tuple[bytes, ...]) -> grpc.ServerCertificateConfiguration:
        cert, key, *ca = contents
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )


def server_credentials(files: ServerTlsFiles) -> grpc.ServerCredentials:
    """Server credentials for ``files`` that follow their rotation (see above)."""
    return ReloadingServerCertificates(files).credentials()


def channel_credentials(
    ca_file: str, cert_file: str = "", key_file: str = ""
) -> grpc.ChannelCredentials:
    """Channel credentials that trust ``ca_file`` and, when both are given, present the
    client certificate ``cert_file`` with its key ``key_file`` (mutual TLS).

    The files are read now: a channel keeps these credentials for its whole life.
    """
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both its certificate and key files")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
