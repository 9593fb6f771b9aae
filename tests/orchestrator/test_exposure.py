"""What an outside caller can learn from the orchestrator: its own API, and errors that name
what failed but never where inner services run; with API keys, nothing without a key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from chorus.orchestrator.v1 import orchestrator_pb2 as pb
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.api_keys import key_digest
from services.orchestrator.server import SERVICE_NAME
from tests.orchestrator.real_suite import Suite, real_suite

KEY = "edge-key-for-tests-0123456789abcdef"


@pytest.fixture
async def suite() -> AsyncIterator[Suite]:
    async with real_suite(orchestrator={"api_keys": f"web:{key_digest(KEY)}"}) as suite:
        yield suite


async def speak(suite: Suite, text: str, key: str | None = KEY) -> list[pb.SpeakResponse]:
    metadata = (("authorization", f"Bearer {key}"),) if key is not None else ()
    return [
        response
        async for response in suite.stub.Speak(
            pb.SpeakRequest(text=text), metadata=metadata, timeout=30
        )
    ]


async def reflect(
    channel: aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = [response async for response in stub.ServerReflectionInfo(iter([request]))]
    assert len(responses) == 1
    return responses[0]


async def test_speak_takes_a_key_and_refuses_a_call_without_one(suite: Suite) -> None:
    responses = await speak(suite, "The key opens the door.")
    assert responses[-1].HasField("summary")
    for key in (None, "a-key-nobody-gave-out"):
        with pytest.raises(aio.AioRpcError) as raised:
            await speak(suite, "No key, no speech.", key=key)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "a-key-nobody-gave-out" not in (raised.value.details() or "")
    # Probes carry no key.
    health = await suite.health.Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_tts_down_is_unavailable_without_its_address(suite: Suite) -> None:
    await suite.tts.stop()
    with pytest.raises(aio.AioRpcError) as raised:
        await speak(suite, "Nobody is there to speak.")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    details = raised.value.details() or ""
    assert details.startswith("tts unavailable"), details
    for inner in (suite.tts, suite.prosody, suite.vision):
        host, _, port = inner.address.rpartition(":")
        assert port not in details, details
        assert host not in details, details
    for leak in ("ipv4", "ipv6", "Traceback", "connect", "File "):
        assert leak not in details, details
    trailing = " ".join(f"{k}={v!r}" for k, v in (raised.value.trailing_metadata() or ()))
    assert str(suite.tts.settings.port) not in trailing


async def test_reflection_describes_only_the_orchestrators_own_api(suite: Suite) -> None:
    async with aio.insecure_channel(suite.orchestrator.address) as channel:
        listed = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {service.name for service in listed.list_services_response.service}
        assert names == {
            SERVICE_NAME,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }

        # The inner APIs stay hidden, though their files are served for their messages.
        for inner in ("chorus.tts.v1.TextToSpeech", "chorus.prosody.v1.Prosody"):
            hidden = await reflect(
                channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=inner)
            )
            assert hidden.HasField("error_response"), inner
        own = await reflect(
            channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
        )
        files = own.file_descriptor_response.file_descriptor_proto
        assert len(files) > 1  # the orchestrator's file and the files it imports
        services = []
        for serialized in files:
            proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            services += [f"{proto.package}.{service.name}" for service in proto.service]
        assert services == [SERVICE_NAME]


async def test_reflection_can_be_turned_off() -> None:
    async with real_suite(orchestrator={"reflection": False}) as suite:
        channel = aio.insecure_channel(suite.orchestrator.address)
        try:
            # Nothing written: a client still writing when the server answers may see
            # gRPC's own race ("Internal error from Core") in place of the status.
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                timeout=30
            )
            assert await call.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await channel.close()
