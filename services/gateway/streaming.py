"""A gRPC response stream turned into a streamed HTTP response, and ended with it.

Two rules hold for every streamed endpoint:

- The status is committed with the first byte, so the first messages are read before
  the response starts (``read_until``): an error the orchestrator reports early (a voice
  tts refuses, no slot) is still an HTTP status.
- However the response ends (done, the client gone, the server stopping), its body
  generator is closed at once (``ClosingStreamingResponse``), and a body generator cancels
  its call when it is closed: the orchestrator frees the call's slot and stops its work.
  Starlette only stops iterating a body whose client went away; the generator would be
  closed whenever the garbage collector got to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar, cast

from grpc import aio
from starlette.responses import StreamingResponse
from starlette.types import Send

ResponseT = TypeVar("ResponseT")


class StreamBroken(Exception):
    """Raised by a body generator whose call failed after the status went out: the
    response ends without its last chunk, so the client sees an incomplete transfer
    rather than a short body that looks whole."""


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse whose body, an async generator, is closed when it ends, and
    left unfinished when the body raises StreamBroken."""

    def __init__(self, body: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body = body

    async def stream_response(self, send: Send) -> None:
        """Send the body; close its generator however sending ends."""
        async with contextlib.aclosing(self._body):
            # The server closes a connection whose response the app left unfinished.
            with contextlib.suppress(StreamBroken):
                await super().stream_response(send)


async def next_message(
    call: aio.UnaryStreamCall[Any, ResponseT] | aio.StreamStreamCall[Any, ResponseT],
) -> ResponseT | None:
    """The call's next message; None once it has ended well. Raises
    grpc.aio.AioRpcError when it failed."""
    message = await call.read()
    if message is aio.EOF:
        return None
    # grpc's stubs type what read() returns as object.
    return cast(ResponseT, message)


async def read_until(
    call: aio.UnaryStreamCall[Any, ResponseT], enough: Callable[[ResponseT], bool]
) -> list[ResponseT]:
    """The call's messages up to the first that is ``enough`` (included), or all of them
    when the call ends first. Raises grpc.aio.AioRpcError when the call fails meanwhile."""
    read: list[ResponseT] = []
    while (message := await next_message(call)) is not None:
        read.append(message)
        if enough(message):
            break
    return read


async def replayed(
    first: list[ResponseT], call: aio.UnaryStreamCall[Any, ResponseT]
) -> AsyncIterator[ResponseT]:
    """``first`` (the messages read before the response started), then the call's others.
    Raises grpc.aio.AioRpcError when the call fails."""
    for message in first:
        yield message
    while (following := await next_message(call)) is not None:
        yield following
