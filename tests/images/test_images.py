"""The five images, built from the one Dockerfile and run hardened on a Docker network with
TLS on every hop, serve Speak and ComposeMessage to a caller with an API key, and the
gateway serves OpenAI's speech API over them.

`make test-images` runs this (never `make test`); it skips without a Docker engine.
"""

from __future__ import annotations

import io

import grpc
import httpx
import numpy as np
import openai
import pytest
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from chorus.orchestrator.v1 import orchestrator_pb2_grpc
from grpc import aio
from PIL import Image as PilImage

from services.common.pcm import SampleFormat, decode
from services.common.wav import read_wav
from tests.images.conftest import BUILD_TIMEOUT_S
from tests.images.stack import IMAGES, INNER, PORTS, Stack
from tests.orchestrator.test_e2e import portrait_jpeg
from tests.support.compressed_audio import decode_mp3

IMAGE_USER = "10001"
"""The uid the Chorus images run as (their USER); the manifests' runAsUser."""

# The first test builds the images (its fixtures do): the timeout covers a cold build.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 1800)

TEXT = "Hello from the containers. Every hop is encrypted."


def loud(samples: np.ndarray) -> bool:
    """Whether ``samples`` hold sound, not silence: an RMS of -40 dBFS or more."""
    return samples.size > 0 and float(np.sqrt(np.mean(np.square(samples)))) >= 0.01


def test_every_container_runs_as_non_root_on_a_read_only_root(stack: Stack) -> None:
    """Each container's user is not root (the Chorus images' uid 10001, from their USER,
    never given at `docker run`), its root filesystem read-only, its capabilities dropped."""
    assert set(IMAGES) <= set(stack.containers), stack.containers
    for name, container in stack.containers.items():
        user, read_only, dropped = stack.docker.output(
            "inspect",
            "--format",
            "{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.CapDrop}}",
            container,
        ).split("|")
        uid = stack.docker.output("exec", container, "id", "-u")
        assert read_only == "true", name
        assert "ALL" in dropped, name
        assert uid != "0", name
        if name in IMAGES:
            assert user == f"{IMAGE_USER}:{IMAGE_USER}", name
            assert uid == IMAGE_USER, name
        written = stack.docker.attempt("exec", container, "touch", "/app/written")
        assert written.returncode != 0, f"{name}: the root filesystem took a write"


async def test_speak_over_tls_with_the_api_key(stack: Stack) -> None:
    """Speech streams back from tts through prosody; a call without the key is refused."""
    async with aio.secure_channel(stack.address(), stack.credentials()) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        responses = [
            response
            async for response in stub.Speak(pb.SpeakRequest(text=TEXT, preset="calm"), timeout=120)
        ]
    assert responses[0].HasField("format")
    assert responses[-1].HasField("summary")
    audio = decode(b"".join(r.audio for r in responses if r.HasField("audio")), SampleFormat.S16LE)
    seconds = audio.size / responses[0].format.sample_rate_hz
    assert seconds == pytest.approx(responses[-1].summary.audio_seconds, abs=0.05)
    assert seconds > 1.0
    assert loud(audio)

    # The same TLS without the key: UNAUTHENTICATED at the edge.
    tls_only = grpc.ssl_channel_credentials(stack.ca_file.read_bytes())
    async with aio.secure_channel(stack.address(), tls_only) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        with pytest.raises(aio.AioRpcError) as refused:
            async for _ in stub.Speak(pb.SpeakRequest(text=TEXT), timeout=60):
                pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_compose_message_cuts_the_photo_out(stack: Stack) -> None:
    """ComposeMessage with a real photo: speech, and a cut-out whose alpha keeps the
    person and clears part of the background; the results reach Redis."""
    result = None
    async with aio.secure_channel(stack.address(), stack.credentials()) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        request = pb.ComposeMessageRequest(text=TEXT, preset="calm", photo=portrait_jpeg())
        async for response in stub.ComposeMessage(request, timeout=180):
            if response.HasField("result"):
                result = response.result
    assert result is not None
    assert not result.partial, result.missing
    speech = read_wav(result.audio_wav)
    assert speech.samples.size / speech.sample_rate > 1.0
    assert loud(speech.samples)
    cutout = PilImage.open(io.BytesIO(result.cutout_png))
    assert cutout.mode == "RGBA"
    alpha = np.asarray(cutout)[..., 3]
    kept = float(np.mean(alpha > 127))
    assert 0.05 < kept < 0.95, f"{kept:.0%} of the photo kept"
    assert result.detections

    # tts, prosody and vision cached what they made in Redis, over TLS with the password.
    keys = stack.redis_cli("--scan", "--pattern", "chorus:*").split()
    namespaces = {key.split(":")[1] for key in keys}
    assert namespaces == {"tts", "prosody", "vision"}, keys


MUTUAL_TLS_PROBE = """
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from services.common.tls import channel_credentials

ca, cert, key = "/certs/client/ca.crt", "/certs/client/tls.crt", "/certs/client/tls.key"
clients = {
    "mutual-tls": lambda target: grpc.secure_channel(target, channel_credentials(ca, cert, key)),
    "tls-without-certificate": lambda t: grpc.secure_channel(t, channel_credentials(ca)),
    "plaintext": grpc.insecure_channel,
}
for target in TARGETS:
    for client, connect in clients.items():
        with connect(target) as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                outcome = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.RpcError as error:
                outcome = error.code().name
        print(target, client, outcome)
"""
"""Run in the orchestrator's container (its Python, its client certificate): asks each
inner service's health as the orchestrator does, then without a client certificate,
then in plaintext."""


def test_inner_services_answer_only_mutual_tls(stack: Stack) -> None:
    """tts, prosody and vision answer the orchestrator's client certificate, and refuse a
    TLS client without one and a plaintext one."""
    targets = [f"{name}:{PORTS[name]}" for name in INNER]
    script = f"TARGETS = {targets!r}\n{MUTUAL_TLS_PROBE}"
    printed = stack.docker.output("exec", stack.containers["orchestrator"], "python", "-c", script)
    outcomes = {tuple(line.split()[:2]): line.split()[2] for line in printed.splitlines()}
    for target in targets:
        assert outcomes[target, "mutual-tls"] == "SERVING", printed
        assert outcomes[target, "tls-without-certificate"] == "UNAVAILABLE", printed
        assert outcomes[target, "plaintext"] == "UNAVAILABLE", printed


SPEECH = {"model": "tts-1", "voice": "alloy", "input": TEXT}
"""An OpenAI speech request's body, as the SDK sends it."""


def test_gateway_is_ready(stack: Stack) -> None:
    """/readyz: 200 once the stack is up, the orchestrator's health asked over TLS."""
    ready = httpx.get(f"{stack.gateway_url()}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


def test_openai_speech_through_the_gateway(stack: Stack) -> None:
    """The official client, pointed at the published gateway port with the stack's key,
    streams MP3 frames of real speech: host to gateway, gateway to the orchestrator over
    TLS, the orchestrator to tts over mutual TLS."""
    client = openai.OpenAI(
        base_url=f"{stack.gateway_url()}/v1", api_key=stack.api_key, max_retries=0, timeout=180
    )
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="mp3"
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["x-trace-id"]
        chunks = list(response.iter_bytes())
    data = b"".join(chunks)
    assert data, "no audio"
    # An MPEG audio frame header: 11 bits of frame sync, then Layer III.
    assert data[0] == 0xFF, data[:4].hex()
    assert data[1] & 0xE0 == 0xE0, data[:4].hex()
    assert data[1] & 0x06 == 0x02, data[:4].hex()
    samples, rate = decode_mp3(data)
    assert rate == 24000
    assert samples.size / rate > 1.0
    assert loud(samples)


def test_gateway_refuses_a_request_without_the_key(stack: Stack) -> None:
    """No key: 401 with OpenAI's error body (the orchestrator's UNAUTHENTICATED, mapped);
    a wrong key through the SDK: its AuthenticationError."""
    refused = httpx.post(f"{stack.gateway_url()}/v1/audio/speech", json=SPEECH, timeout=60)
    assert refused.status_code == 401, refused.text
    error = refused.json()["error"]
    assert error["type"] == "authentication_error", error
    assert error["code"] == "unauthenticated", error
    assert error["message"], error
    assert set(error) == {"message", "type", "param", "code"}, error

    client = openai.OpenAI(
        base_url=f"{stack.gateway_url()}/v1", api_key="not-the-key", max_retries=0, timeout=60
    )
    with pytest.raises(openai.AuthenticationError) as wrong:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert wrong.value.status_code == 401
    assert wrong.value.code == "unauthenticated"
