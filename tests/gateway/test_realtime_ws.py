"""The realtime WebSocket: a conversation over SpeakStream with word timings, base64
audio, barge-in, and every malformed message refused with an error message and a close
code that say what was wrong."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.gateway.harness import API_KEY, AUTHORIZATION, Gateway, running_gateway
from tests.orchestrator.real_suite import Suite

pytestmark = pytest.mark.asyncio(loop_scope="package")

PATH = "/v1/realtime/speech"


def connecting(gateway: Gateway, headers: dict[str, str] | None = None) -> connect:
    return connect(
        gateway.ws_url(PATH),
        additional_headers=AUTHORIZATION if headers is None else headers,
        open_timeout=30,
    )


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def messages(ws: ClientConnection) -> AsyncIterator[dict[str, Any] | bytes]:
    """Every message until the server closes, however: JSON objects, or audio as bytes."""
    while True:
        try:
            frame = await ws.recv()
        except ConnectionClosed:
            return
        yield frame if isinstance(frame, bytes) else json.loads(frame)


async def until(ws: ClientConnection, kind: str) -> list[dict[str, Any] | bytes]:
    """Messages up to and including the first of ``kind`` (``audio`` for a binary frame)."""
    read: list[dict[str, Any] | bytes] = []
    async for message in messages(ws):
        read.append(message)
        if (isinstance(message, bytes) and kind == "audio") or (
            isinstance(message, dict) and message["type"] == kind
        ):
            return read
    raise AssertionError(f"closed before a {kind}: {read[-3:]}")


def audio_of(read: list[dict[str, Any] | bytes]) -> bytes:
    return b"".join(message for message in read if isinstance(message, bytes))


def of_type(read: list[dict[str, Any] | bytes], kind: str) -> list[dict[str, Any]]:
    return [m for m in read if isinstance(m, dict) and m["type"] == kind]


async def test_text_written_in_fragments_is_spoken_with_word_timings(gateway: Gateway) -> None:
    fragments = ["Hello there, ", "how are ", "you today? ", "Fine, thanks."]
    async with connecting(gateway) as ws:
        await send(ws, type="config", word_timings=True)
        await send(ws, type="text", text=fragments[0])
        first = await until(ws, "audio")  # spoken before the rest is written
        for fragment in fragments[1:]:
            await send(ws, type="text", text=fragment)
        await send(ws, type="end")
        rest = await until(ws, "summary")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000
        assert ws.response is not None
        trace_id = ws.response.headers["x-trace-id"]
    read = first + rest
    audio_format = read[0]
    assert audio_format == {
        "type": "format",
        "sample_rate_hz": 22050,
        "encoding": "pcm_s16le",
        "channels": 1,
    }
    summary = read[-1]
    assert isinstance(summary, dict)
    assert len(audio_of(read)) // 2 == round(summary["audio_seconds"] * 22050)
    # The orchestrator's trace is the one the handshake named: one trace for both.
    assert summary["trace_id"] == trace_id
    text = "".join(fragments)
    words = of_type(read, "word")
    assert [w["word"] for w in words] == [
        "Hello", "there", "how", "are", "you", "today", "Fine", "thanks",
    ]  # fmt: skip
    for word in words:
        assert text[word["char_start"] : word["char_end"]] == word["word"]
    starts = [w["start_sample"] for w in words]
    assert starts == sorted(starts)


async def test_audio_can_come_as_base64_in_any_encoding(gateway: Gateway) -> None:
    async with connecting(gateway) as ws:
        await send(ws, type="config", encoding="ogg_opus", audio_frames="base64")
        await send(ws, type="text", text="Encoded for a browser.")
        await send(ws, type="flush")
        await send(ws, type="end")
        read = await until(ws, "summary")
    assert read[0] == {
        "type": "format",
        "sample_rate_hz": 48000,
        "encoding": "ogg_opus",
        "channels": 1,
    }
    assert not any(isinstance(message, bytes) for message in read)
    audio = b"".join(base64.b64decode(m["audio"]) for m in of_type(read, "audio"))
    assert audio.startswith(b"OggS")


async def test_an_interrupt_cuts_the_speech_and_the_conversation_goes_on(
    gateway: Gateway,
) -> None:
    async with connecting(gateway) as ws:
        await send(ws, type="config")
        await send(ws, type="text", text="This goes on " + "and on " * 80 + "for ever. ")
        await until(ws, "audio")
        await send(ws, type="interrupt")
        marker = of_type(await until(ws, "interrupted"), "interrupted")[0]
        assert marker["dropped_chars"] > 0
        assert marker["sample_offset"] > 0
        await send(ws, type="text", text="Bye.")
        await send(ws, type="end")
        summary = of_type(await until(ws, "summary"), "summary")[0]
    assert summary["audio_seconds"] > 0


async def test_a_browser_may_send_its_key_in_the_config(gateway: Gateway) -> None:
    async with connecting(gateway, headers={}) as ws:
        await send(ws, type="config", api_key=API_KEY)
        await send(ws, type="text", text="Keyed.")
        await send(ws, type="end")
        assert of_type(await until(ws, "summary"), "summary")


async def refusal(
    gateway: Gateway, *frames: str | bytes, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], int, str]:
    """The error message and close code the server answers ``frames`` with."""
    async with connecting(gateway, headers) as ws:
        for frame in frames:
            await ws.send(frame)
        read = [message async for message in messages(ws)]
        errors = of_type(read, "error")
        assert len(errors) == 1, read
        assert ws.close_code is not None
        assert ws.close_reason is not None
        return errors[0]["error"], ws.close_code, ws.close_reason


CONFIG = json.dumps({"type": "config"})


@pytest.mark.parametrize(
    ("frames", "param", "code"),
    [
        (["{nope"], "message", 4400),
        (["[" * 50_000], "message", 4400),
        (["[1, 2]"], "message", 4400),
        ([b"\x00\x01"], "message", 4400),
        (['{"type": "shout"}'], "type", 4400),
        (['{"text": "no type"}'], "type", 4400),
        (['{"type": "config", "encoding": "wav"}'], "encoding", 4400),
        (['{"type": "config", "sample_rate_hz": "fast"}'], "sample_rate_hz", 4400),
        (['{"type": "config", "sample_rate_hz": 99999999999}'], "sample_rate_hz", 4400),
        (['{"type": "config", "word_timings": "yes"}'], "word_timings", 4400),
        (['{"type": "config", "audio_frames": "hex"}'], "audio_frames", 4400),
        (['{"type": "config", "preset": "calm"}'], "preset", 4400),
        ([CONFIG, '{"type": "text", "text": 5}'], "text", 4400),
        ([CONFIG, '{"type": "flush", "now": true}'], "now", 4400),
        ([CONFIG, '{"type": "end"}', '{"type": "text", "text": "more"}'], "end", 4400),
        # What tts judges comes back in its words, with the field it names.
        (['{"type": "text", "text": "Hello."}'], "config", 4400),
        (['{"type": "config", "voice": "nobody"}'], "voice", 4400),
        ([CONFIG, CONFIG], "config", 4400),
        ([CONFIG, json.dumps({"type": "text", "text": "x" * 6000})], "text", 4400),
    ],
)
async def test_bad_messages_end_the_conversation_naming_the_field(
    gateway: Gateway, frames: list[str | bytes], param: str, code: int
) -> None:
    error, close_code, reason = await refusal(gateway, *frames)
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")
    assert error["type"] == "invalid_request_error"
    assert close_code == code
    assert reason.startswith(f"{param}: ")


async def test_a_conversation_without_a_key_is_refused_as_401(gateway: Gateway) -> None:
    error, close_code, _ = await refusal(gateway, CONFIG, headers={})
    assert error["code"] == "unauthenticated"
    assert close_code == 4401


async def test_a_speaking_rate_in_the_config_speeds_the_speech_up(gateway: Gateway) -> None:
    async def audio_seconds(**config: Any) -> float:
        async with connecting(gateway) as ws:
            await send(ws, type="config", **config)
            await send(ws, type="text", text="The same words, at two tempos.")
            await send(ws, type="end")
            summary = (await until(ws, "summary"))[-1]
        assert isinstance(summary, dict)
        return float(summary["audio_seconds"])

    assert await audio_seconds(speaking_rate=2.0) < 0.65 * await audio_seconds()
    async with connecting(gateway) as ws:
        await send(ws, type="config", speaking_rate=9)
        await send(ws, type="text", text="Too fast.")
        error = of_type(await until(ws, "error"), "error")[0]["error"]
    assert error["param"] == "speaking_rate"


async def test_a_socket_left_silent_is_closed_naming_config(suite: Suite) -> None:
    async with running_gateway(suite.orchestrator.address, realtime_config_timeout_s=0.2) as quick:
        error, close_code, reason = await refusal(quick)
    assert error["param"] == "config"
    assert error["code"] == "timeout"
    assert close_code == 4408
    assert reason.startswith("config: none within 0.2 s")
