"""The servicer context type every Chorus servicer takes."""

from __future__ import annotations

from typing import Any, TypeAlias

from grpc import aio

Context: TypeAlias = aio.ServicerContext[Any, Any]
"""A call's servicer context, whatever its messages (servicers are typed by their stubs)."""
