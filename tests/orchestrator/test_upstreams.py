import json

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from services.common.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from services.common.telemetry import configure_telemetry
from services.orchestrator.upstreams import Upstream, channel_target, service_config


def test_one_address_is_used_as_given_and_several_become_replicas() -> None:
    assert channel_target("tts:50052") == "tts:50052"
    assert channel_target("dns:///tts-headless:50052") == "dns:///tts-headless:50052"
    assert channel_target("10.0.0.1:1, 10.0.0.2:1") == "ipv4:10.0.0.1:1,10.0.0.2:1"
    with pytest.raises(ValueError, match="no address"):
        channel_target(" , ")


def test_service_config_balances_checks_health_and_retries_only_unavailable() -> None:
    config = json.loads(service_config("chorus.tts.v1.TextToSpeech"))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "chorus.tts.v1.TextToSpeech"}
    [method] = config["methodConfig"]
    assert method["name"] == [{"service": "chorus.tts.v1.TextToSpeech"}]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def rpc_error(code: grpc.StatusCode, details: str) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "details", "expected", "message"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "preset: unknown preset", InvalidArgument, "preset: "),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", DeadlineExceeded, "waiting for tts"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "full", ResourceExhausted, "tts is at capacity"),
        (grpc.StatusCode.UNAVAILABLE, "connection refused", Unavailable, "tts unavailable"),
        (grpc.StatusCode.INTERNAL, "boom", Unavailable, "tts unavailable: INTERNAL"),
    ],
)
async def test_errors_name_the_service(
    code: grpc.StatusCode, details: str, expected: type, message: str
) -> None:
    telemetry = configure_telemetry("test", environ={})
    upstream = Upstream(
        "tts", "127.0.0.1:1", "chorus.tts.v1.TextToSpeech", telemetry.tracer_provider
    )
    try:
        error = upstream.error(rpc_error(code, details))
        assert isinstance(error, expected)
        assert message in error.message
    finally:
        await upstream.close()
