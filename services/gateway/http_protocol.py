"""uvicorn's HTTP protocol with a deadline for each request's headers.

uvicorn times out only idle keep-alive connections, after a response: a client that
connects and sends nothing, or trickles its headers a byte at a time (slowloris), holds
its connection, and a file descriptor, for as long as it likes. Here a request's headers
must all have come within the deadline of the connection opening or the request's first
byte, else the connection is closed (as nginx's ``client_header_timeout`` does). The
body has its own deadline between pieces (services.gateway.request_bodies).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadersInTime(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers are late
    (see the module). ``header_timeout_s`` is set by ``with_header_timeout``."""

    header_timeout_s: float = 10.0
    _headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection; its first request's headers are due from now."""
        super().connection_made(transport)
        self._expect_headers()

    def on_message_begin(self) -> None:
        """A request starts: its headers are due (unless already, since the connection
        opened)."""
        super().on_message_begin()
        self._expect_headers()

    def on_headers_complete(self) -> None:
        """The headers came in time: the request goes on as uvicorn runs it."""
        self._headers_arrived()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended, however: nothing is due any more."""
        self._headers_arrived()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_arrived(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(header_timeout_s: float) -> type[HeadersInTime]:
    """The protocol class, for uvicorn's ``http`` setting, with this deadline."""
    return type("HeadersInTime", (HeadersInTime,), {"header_timeout_s": header_timeout_s})
