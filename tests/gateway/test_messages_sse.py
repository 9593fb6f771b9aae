"""POST /v1/messages: a real portrait and text in, ComposeMessage's progress and result out
as server-sent events; every malformed form refused naming its part."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from devtools.builders.photos import astronaut
from services.common.wav import read_wav
from tests.gateway.harness import AUTHORIZATION, running_gateway
from tests.orchestrator.real_suite import Suite

pytestmark = pytest.mark.asyncio(loop_scope="package")

PATH = "/v1/messages"
TEXT = "See you soon. It will be lovely."


def portrait_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def parse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """The stream's events as (name, data), each one ``event:`` and one ``data:`` line."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(lines) == {"event", "data"}, block[:200]
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def compose(
    http: httpx.AsyncClient, *repeated: tuple[str, Any], **parts: Any
) -> httpx.Response:
    """A multipart request of ``parts``: text as plain parts, (name, bytes, type) as files."""
    multipart = [
        (name, (None, value) if isinstance(value, str) else value)
        for name, value in [*repeated, *parts.items()]
    ]
    return await http.post(PATH, files=multipart)


async def test_compose_streams_progress_then_the_result(http: httpx.AsyncClient) -> None:
    response = await compose(
        http, text=TEXT, preset="calm", photo=("me.jpg", portrait_jpeg(), "image/jpeg")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "result"
    assert set(names[:-1]) == {"progress"}
    progress = [data for name, data in events if name == "progress"]
    assert {(p["stage"], p["state"]) for p in progress} == {
        (stage, state)
        for stage in ("speech", "prosody", "vision")
        for state in ("started", "finished")
    }
    assert all(p["error"] == "" for p in progress)

    result = events[-1][1]
    assert read_wav(base64.b64decode(result["audio_wav"])).samples.size > 22050
    cutout = Image.open(io.BytesIO(base64.b64decode(result["cutout_png"])))
    assert cutout.format == "PNG"
    assert cutout.mode == "RGBA"
    assert result["detections"]
    assert set(result["detections"][0]) == {"box", "score", "label"}
    assert set(result["detections"][0]["box"]) == {"x_min", "y_min", "x_max", "y_max"}
    confidence = result["prosody_confidence"]
    assert confidence["measured"] is True
    assert {part["name"] for part in confidence["parts"]} >= {"pitch", "duration"}
    assert result["partial"] is False
    assert result["missing"] == []
    assert set(result["timings"]) == {"speech", "prosody", "vision"}
    # The orchestrator's trace is the one the response named.
    assert result["trace_id"] == response.headers["x-trace-id"]


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        ({"photo": ("me.jpg", b"not a picture", "image/jpeg")}, "photo"),
        ({"preset": "party"}, "preset"),
    ],
    ids=["photo-vision-cannot-read", "preset-prosody-does-not-know"],
)
async def test_a_refusal_after_the_first_event_is_an_error_event(
    http: httpx.AsyncClient, parts: dict[str, Any], param: str
) -> None:
    request = {"text": TEXT, "photo": ("me.jpg", portrait_jpeg(), "image/jpeg"), **parts}
    response = await compose(http, **request)
    # The stream began (its first progress went out) before the part was judged.
    assert response.status_code == 200
    events = parse_events(response.text)
    assert events[0][0] == "progress"
    assert events[-1][0] == "error"
    error = events[-1][1]["error"]
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")
    assert "result" not in [name for name, _ in events]


@pytest.mark.parametrize(
    ("parts", "param", "status"),
    [
        ({"photo": ("me.jpg", b"jpeg", "image/jpeg")}, "text", 400),
        ({"text": TEXT}, "photo", 400),
        ({"text": TEXT, "photo": "a photo as text"}, "photo", 400),
        ({"text": ("t.txt", b"text as a file", "text/plain")}, "text", 400),
        ({"text": TEXT, "mood": "happy"}, "mood", 400),
        ({"text": "   ", "photo": ("me.jpg", b"jpeg", "image/jpeg")}, "text", 400),
        ({"text": "x" * (65 * 1024)}, "text", 413),
    ],
)
async def test_bad_forms_are_refused_naming_the_part(
    http: httpx.AsyncClient, parts: dict[str, Any], param: str, status: int
) -> None:
    response = await compose(http, **parts)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")


async def test_a_part_twice_is_400_naming_it(http: httpx.AsyncClient) -> None:
    response = await compose(http, ("text", "one"), ("text", "two"))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "text"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"text": "hi"}', "application/json", 415),
        (b"text=hi", "application/x-www-form-urlencoded", 415),
        (
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi',
            "multipart/form-data; boundary=x",
            400,
        ),
        (b"hello", "multipart/form-data", 400),
        (
            b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            400,
        ),
    ],
    ids=["json", "urlencoded", "cut-short", "no-boundary", "part-without-name"],
)
async def test_bodies_that_are_not_whole_forms_are_refused(
    http: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    response = await http.post(PATH, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == "body"


async def test_a_photo_over_the_limit_is_413_naming_it(suite: Suite) -> None:
    async with (
        running_gateway(suite.orchestrator.address, max_photo_bytes=1000) as small,
        httpx.AsyncClient(base_url=small.url, headers=AUTHORIZATION) as http,
    ):
        response = await compose(http, text=TEXT, photo=("me.jpg", portrait_jpeg(), "image/jpeg"))
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "photo"
