"""Who each RPC is for, so that admission control can hold every caller to its share.

The server side sets CALLER for each RPC (CallerInterceptor); a client channel made with
forward_caller_interceptors() names that caller to the services it calls on the RPC's behalf
(the orchestrator to tts, prosody and vision), so they share their slots among end callers
rather than among orchestrator replicas.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from services.common.interceptors import wrap_handler

if TYPE_CHECKING:
    from services.common.interceptors import Continuation, Handler, StreamBehavior, UnaryBehavior

CALLER: ContextVar[str] = ContextVar("chorus_caller", default="")
"""Who the current RPC is for (an end caller named by the orchestrator, or a peer's
address); empty outside an RPC."""

API_KEY: ContextVar[str] = ContextVar("chorus_api_key", default="")
"""The name of the API key the current RPC was made with (services.common.api_keys); empty
where no keys are required. Where set, it is the RPC's caller."""

CALLER_METADATA = "chorus-caller"
"""Metadata naming the end caller a call is made for: the orchestrator sends it to the
inner services, so that they share their slots among end callers, not among orchestrator
replicas."""


def caller_key(metadata: Iterable[tuple[str, Any]], peer: str, trust_metadata: bool) -> str:
    """Whom an RPC is for: the caller its metadata names (where that is trusted, on
    services only the orchestrator reaches), else the peer's address without its port (a
    client's many connections are one caller)."""
    if trust_metadata:
        for key, value in metadata:
            if key == CALLER_METADATA and isinstance(value, str) and value:
                return value[:128]
    address, _, _port = peer.rpartition(":")
    return address or peer


class CallerInterceptor(aio.ServerInterceptor):
    """Sets admission.CALLER for the duration of each RPC of the guarded services: the name
    of the RPC's API key where it was made with one (ApiKeyInterceptor, outside this one,
    has set API_KEY), else as caller_key says."""

    def __init__(self, guarded_services: Iterable[str], trust_metadata: bool) -> None:
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)
        self._trust_metadata = trust_metadata

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        trust = self._trust_metadata

        def caller(context: aio.ServicerContext[Any, Any]) -> str:
            return API_KEY.get() or caller_key(
                context.invocation_metadata() or (), context.peer(), trust
            )

        def unary(_method: str, behavior: UnaryBehavior) -> UnaryBehavior:
            async def identified(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
                CALLER.set(caller(context))
                return await behavior(request, context)

            return identified

        def stream(_method: str, behavior: StreamBehavior) -> StreamBehavior:
            async def identified(
                request: Any, context: aio.ServicerContext[Any, Any]
            ) -> AsyncGenerator[Any, None]:
                CALLER.set(caller(context))
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response

            return identified

        return wrap_handler(handler, handler_call_details.method, unary, stream)


def forward_caller_interceptors() -> list[aio.ClientInterceptor]:
    """For an upstream channel: they add the current RPC's caller to every call made on its
    behalf. (One per kind of call: a channel files an interceptor under the first kind it
    implements, so one object for both would never see the streaming calls.)"""
    return [_ForwardUnary(), _ForwardStream(), _ForwardBidirectional()]


class _ForwardUnary(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Any],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_caller(client_call_details), request)


class _ForwardStream(aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Any],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_caller(client_call_details), request)


class _ForwardBidirectional(aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_caller(client_call_details), request_iterator)


def _with_caller(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
    caller = CALLER.get()
    if not caller:
        return details
    metadata = aio.Metadata(*(details.metadata or ()))
    metadata[CALLER_METADATA] = caller
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )
