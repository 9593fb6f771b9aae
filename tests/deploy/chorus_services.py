"""The Chorus services that the Dockerfile and manifests deploy, as the tests know them."""

from __future__ import annotations

from services.common.settings import ServerSettings
from services.gateway.settings import GatewaySettings
from services.orchestrator.settings import OrchestratorSettings
from services.prosody.settings import ProsodySettings
from services.tts.settings import TtsSettings
from services.vision.settings import VisionSettings

SETTINGS: dict[str, type[ServerSettings]] = {
    "orchestrator": OrchestratorSettings,
    "tts": TtsSettings,
    "prosody": ProsodySettings,
    "vision": VisionSettings,
}
"""Each service's name (its Deployment, image and module) and the settings it reads."""

IMAGE_SETTINGS: dict[str, type[ServerSettings] | type[GatewaySettings]] = {
    **SETTINGS,
    "gateway": GatewaySettings,
}
"""Every image's service and the settings it reads: the four gRPC services and the HTTP
gateway in front of them."""

METRICS_PORT = 9464
"""The Prometheus port every deployed service is given (CHORUS_METRICS_PORT)."""


def default_port(service: str) -> int:
    """The port ``service`` listens on unless told otherwise (gRPC; HTTP for the gateway)."""
    port: int = IMAGE_SETTINGS[service]().port
    return port
