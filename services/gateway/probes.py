"""Kubernetes' probes over HTTP: ``/healthz`` (the process answers) and ``/readyz`` (the
orchestrator can serve: its overall gRPC health, SERVING only while tts is reachable)."""

from __future__ import annotations

from grpc import aio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.gateway.errors import ApiError
from services.gateway.orchestrator_client import OrchestratorClient

READINESS_TIMEOUT_S = 1.0
"""Far below a probe's own timeout, so that a hung orchestrator reads as not ready."""


class Probes:
    """The two probe endpoints."""

    def __init__(self, orchestrator: OrchestratorClient) -> None:
        self._orchestrator = orchestrator

    async def live(self, _request: Request) -> Response:
        """``GET /healthz``: 200 while the process serves HTTP; nothing else is asked, so
        an orchestrator that is down never gets the gateway restarted."""
        return JSONResponse({"status": "ok"})

    async def ready(self, _request: Request) -> Response:
        """``GET /readyz``: 200 when the orchestrator's health is SERVING, else 503."""
        try:
            status = await self._orchestrator.serving(READINESS_TIMEOUT_S)
        except aio.AioRpcError as error:
            raise ApiError(
                503,
                f"orchestrator unreachable: {error.code().name}",
                param=None,
                code="unavailable",
            ) from None
        if status != "SERVING":
            raise ApiError(503, f"orchestrator is {status}", param=None, code="unavailable")
        return JSONResponse({"status": "ready"})
