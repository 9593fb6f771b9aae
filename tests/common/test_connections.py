"""How long the servers' connections live: a stream outlives its connection's age (new
calls move to a new connection; a conversation goes on), and a client that vanishes
without closing its connection (no FIN: its host gone, a network cut) is found out by an
unanswered keepalive ping, which ends its calls and frees their slots.

A real tts server (espeak); the vanished client sits behind a TCP relay on loopback that,
at the test's word, stops passing bytes either way while keeping both sockets open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from chorus.tts.v1 import tts_pb2, tts_pb2_grpc
from grpc import aio

from services.tts.server import TtsService
from services.tts.settings import TtsSettings
from tests.support.service_harness import ServerUnderTest, server_starter
from tests.support.waiting import WAIT_S, wait_until

TtsServer = ServerUnderTest[TtsService]


@contextlib.asynccontextmanager
async def tts_server(**settings: Any) -> AsyncIterator[TtsServer]:
    configured = dataclasses.replace(
        TtsSettings(host="127.0.0.1", port=0), engine="espeak", **settings
    )
    async with server_starter(ServerUnderTest) as start:
        yield await start(lambda telemetry: TtsService(configured, telemetry), configured, True)


class Conversation:
    """A SynthesizeStream fed by the test, one message at a time."""

    def __init__(self, channel: aio.Channel) -> None:
        self._requests: asyncio.Queue[tts_pb2.SynthesizeStreamRequest | None] = asyncio.Queue()
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        self.call = stub.SynthesizeStream(self._written(), timeout=120)
        self.say(config=tts_pb2.SynthesisConfig())

    async def _written(self) -> AsyncIterator[tts_pb2.SynthesizeStreamRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def say(self, **content: object) -> None:
        self._requests.put_nowait(tts_pb2.SynthesizeStreamRequest(**content))  # type: ignore[arg-type]

    def close(self) -> None:
        self._requests.put_nowait(None)

    async def until_audio(self) -> None:
        async for response in self.call:
            if response.HasField("chunk"):
                return
        raise AssertionError("the stream ended before any audio")


async def test_a_conversation_outlives_its_connections_age() -> None:
    # The connection is aged out almost at once, with a shutdown grace as short: the
    # stream on it must not be cut with it.
    async with tts_server(max_connection_age_s=0.2, grace_s=0.2) as tts:
        conversation = Conversation(tts.channel)
        conversation.say(text="The first turn. ")
        await conversation.until_audio()
        await asyncio.sleep(1.0)  # well past the age and the shutdown grace
        conversation.say(text="A later turn. ")
        conversation.say(end=tts_pb2.End())
        conversation.close()
        responses = [response async for response in conversation.call]
    assert any(response.HasField("chunk") for response in responses)
    assert responses[-1].HasField("summary")


class Relay:
    """Passes bytes between a client and ``target_port`` until ``cut`` is called; then
    drops whatever either side sends, leaving both sockets open."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._cut = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def cut(self) -> None:
        self._cut.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._target_port
        )
        self._writers += [writer, upstream_writer]
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pass(source, sink))
            self._tasks.add(task)

    async def _pass(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if self._cut.is_set():
                continue  # the network is gone: what is sent is lost
            sink.write(data)
            await sink.drain()


async def test_a_client_that_vanishes_frees_its_slot() -> None:
    async with tts_server(keepalive_s=0.5, keepalive_timeout_s=0.5) as tts:
        relay = Relay(tts.running.port)
        port = await relay.start()
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            conversation = Conversation(channel)
            conversation.say(text="Hello there. ")
            await conversation.until_audio()
            admission = tts.service.admission
            assert admission.in_flight == 1
            relay.cut()
            # The server's pings go unanswered: it ends the connection, the call with it.
            await wait_until(lambda: admission.in_flight == 0, "the vanished client's slot")
        finally:
            await relay.close()
            await asyncio.wait_for(channel.close(), WAIT_S)
