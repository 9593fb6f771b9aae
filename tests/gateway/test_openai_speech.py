"""POST /v1/audio/speech through the official OpenAI client, unchanged, and through plain
HTTP for what the client never sends: the audio of every format decodes, and every bad
request is a 4xx in OpenAI's error shape naming its field."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio

from tests.gateway.harness import API_KEY, Gateway
from tests.support.compressed_audio import decode_mp3, decode_ogg_opus

pytestmark = pytest.mark.asyncio(loop_scope="package")

TEXT = "Hello there! The gateway speaks as OpenAI's API does."
RATE = 24000


@pytest_asyncio.fixture(loop_scope="package")
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client pointed at the gateway (no retries: each test sees its answer)."""
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0
    ) as opened:
        yield opened


async def speech(client: openai.AsyncOpenAI, **fields: Any) -> tuple[bytes, Mapping[str, str]]:
    """The streamed audio of one request, as the SDK's streaming response gives it."""
    request = {"model": "tts-1", "voice": "alloy", "input": TEXT, **fields}
    chunks = []
    async with client.audio.speech.with_streaming_response.create(**request) as response:
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
        headers = response.headers
    return b"".join(chunks), headers


def wav_parts(data: bytes) -> tuple[tuple[Any, ...], bytes]:
    """The streamed WAV's header fields and its samples' bytes."""
    return struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44]), data[44:]


async def test_wav_streams_a_header_then_24_khz_16_bit_pcm(
    client: openai.AsyncOpenAI,
) -> None:
    data, headers = await speech(client, response_format="wav")
    assert headers["content-type"] == "audio/wav"
    header, pcm = wav_parts(data)
    riff, _size, wave, fmt, fmt_size, pcm_format, channels, rate, byte_rate, align, bits = header[
        :11
    ]
    assert (riff, wave, fmt, fmt_size, pcm_format) == (b"RIFF", b"WAVE", b"fmt ", 16, 1)
    assert (channels, rate, byte_rate, align, bits) == (1, RATE, 2 * RATE, 2, 16)
    assert header[11] == b"data"
    assert len(pcm) % 2 == 0
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.size > RATE  # over a second of speech
    assert np.abs(samples).max() > 1000


async def test_pcm_is_raw_24_khz_16_bit_samples(client: openai.AsyncOpenAI) -> None:
    data, headers = await speech(client, response_format="pcm")
    assert headers["content-type"] == "audio/pcm"
    assert len(data) % 2 == 0
    assert np.abs(np.frombuffer(data, dtype="<i2")).max() > 1000


async def test_mp3_is_frames_that_decode(client: openai.AsyncOpenAI) -> None:
    data, headers = await speech(client)  # mp3 is OpenAI's default
    assert headers["content-type"] == "audio/mpeg"
    # An MPEG audio frame header: 11 bits of frame sync.
    assert data[0] == 0xFF
    assert data[1] & 0xE0 == 0xE0
    samples, rate = decode_mp3(data)
    assert rate == RATE
    assert samples.size > RATE
    assert np.abs(samples).max() > 0.03


async def test_opus_is_an_ogg_stream_that_decodes(client: openai.AsyncOpenAI) -> None:
    data, headers = await speech(client, response_format="opus")
    assert headers["content-type"] == "audio/ogg"
    assert data.startswith(b"OggS")
    assert b"OpusHead" in data[:64]
    samples = decode_ogg_opus(data)
    assert samples.size > 48000
    assert np.abs(samples).max() > 0.03


async def test_a_suite_voice_and_a_preset_pass_through(client: openai.AsyncOpenAI) -> None:
    plain, _ = await speech(client, response_format="pcm", voice="en-us")
    calm, _ = await speech(
        client, response_format="pcm", voice={"id": "en-us"}, extra_body={"preset": "calm"}
    )
    # Calm slows speech down (tempo 0.92): the same text lasts longer.
    assert len(calm) > len(plain)


async def test_speed_is_the_speaking_rate(client: openai.AsyncOpenAI) -> None:
    normal, _ = await speech(client, response_format="pcm", speed=1.0)
    fast, _ = await speech(client, response_format="pcm", speed=2.0)
    slow, _ = await speech(client, response_format="pcm", speed=0.5)
    # Twice as fast is about half as long (espeak's pauses shrink a little less).
    assert len(fast) < 0.65 * len(normal)
    assert len(slow) > 1.5 * len(normal)


async def test_each_response_names_its_trace(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    _, headers = await speech(client, response_format="pcm")
    trace_id = headers["x-trace-id"]
    in_trace = [s for s in gateway.finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    server = [s for s in in_trace if s.name == "POST /v1/audio/speech"]
    rpc = [s for s in in_trace if s.name == "/chorus.orchestrator.v1.Orchestrator/Speak"]
    assert len(server) == 1
    assert len(rpc) == 1
    assert rpc[0].parent is not None
    assert rpc[0].parent.span_id == server[0].context.span_id


async def test_time_to_first_audio_is_measured(
    client: openai.AsyncOpenAI, gateway: Gateway
) -> None:
    await speech(client, response_format="pcm")
    metrics = gateway.metrics_text()
    assert 'chorus_gateway_time_to_first_audio_seconds_count{http_route="/v1/audio/speech"}' in (
        metrics
    )
    assert "http_server_duration_milliseconds" in metrics


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "aac"}, "response_format"),
        ({"response_format": "flac"}, "response_format"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 5}, "speed"),
        ({"speed": 0.1}, "speed"),
        # In OpenAI's range, outside the engine's (0.5 to 2.5): the orchestrator's refusal
        # of its speaking_rate, renamed.
        ({"speed": 0.3}, "speed"),
        ({"speed": 3.5}, "speed"),
        ({"model": "whisper-1"}, "model"),
        ({"input": ""}, "input"),
        ({"input": "x" * 6000}, "input"),
        ({"voice": "nobody"}, "voice"),
        ({"instructions": "Speak like a pirate."}, "instructions"),
        ({"stream_format": "sse"}, "stream_format"),
        ({"extra_body": {"preset": "party"}}, "preset"),
        ({"extra_body": {"volume": 11}}, "volume"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    client: openai.AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await speech(client, **fields)
    error = raised.value
    assert error.status_code == 400
    assert error.param == param
    assert error.type == "invalid_request_error"
    assert error.code == "invalid_argument"
    assert isinstance(error.body, dict)
    assert str(error.body["message"]).startswith(f"{param}: ")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"voice": "alloy", "input": TEXT}, "model"),
        ({"model": "tts-1", "input": TEXT}, "voice"),
        ({"model": "tts-1", "voice": "alloy"}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": 42}, "input"),
        ({"model": "tts-1", "voice": ["alloy"], "input": TEXT}, "voice"),
        ({"model": "tts-1", "voice": {"name": "alloy"}, "input": TEXT}, "voice.name"),
        ({"model": "tts-1", "voice": {"id": 7}, "input": TEXT}, "voice.id"),
        ({"model": "tts-1", "voice": "alloy", "input": TEXT, "speed": "fast"}, "speed"),
        (["not", "an", "object"], "body"),
    ],
)
async def test_malformed_json_fields_are_400_naming_them(
    http: httpx.AsyncClient, body: object, param: str
) -> None:
    response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_a_lone_surrogate_is_400_naming_its_field(http: httpx.AsyncClient) -> None:
    # Valid JSON whose string has no UTF-8 form, which no gRPC message can carry.
    response = await http.post(
        "/v1/audio/speech",
        content=b'{"model": "tts-1", "voice": "alloy", "input": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{nope", "is not valid JSON"),
        (b'{"input": "caf\xe9"}', "is not valid JSON"),  # Latin-1, not UTF-8
        # Python's parser recurses into each level, and refuses integers of over 4300
        # digits: both must be the sender's 400, not the server's 500.
        (b"[" * 50_000, "is nested too deeply"),
        (b'{"input": "hi", "speed": ' + b"9" * 5000 + b"}", "is not valid JSON"),
    ],
    ids=["malformed", "latin-1", "deep", "long-integer"],
)
async def test_a_body_that_is_not_json_is_400(
    http: httpx.AsyncClient, body: bytes, problem: str
) -> None:
    response = await http.post(
        "/v1/audio/speech", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "body"
    assert error["message"].startswith(f"body: {problem}")
    assert "Traceback" not in response.text


async def test_a_body_that_is_not_declared_json_is_415(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/audio/speech", content=b"hello")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413(http: httpx.AsyncClient, chunked: bool) -> None:
    body = b'{"input": "' + b"x" * (70 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await http.post(
        "/v1/audio/speech",
        content=chunks() if chunked else body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "body"


async def test_other_paths_and_methods_answer_in_the_error_shape(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await http.get("/v1/audio/speech")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
