"""A client's JSON object, read field by field with errors that name the field.

The HTTP body of OpenAI's speech API and every WebSocket message are JSON objects; both
are read through JsonObject, so a value of the wrong type, a missing field or one the API
does not have is a 400 (or a WebSocket error) naming it, never a KeyError or a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from services.gateway.errors import invalid

_MISSING: Any = object()


class JsonObject:
    """One JSON object from a client; ``where`` names it in errors about it as a whole,
    and prefixes its fields' names when it is nested (``voice`` for ``voice.id``)."""

    def __init__(self, value: Any, where: str, *, nested: bool = False) -> None:
        if not isinstance(value, dict):
            raise invalid(where, f"must be a JSON object, not {_kind(value)}")
        self._fields: dict[str, Any] = value
        self._prefix = f"{where}." if nested else ""

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> JsonObject:
        """The object ``text`` holds; 400 naming ``where`` when it is not JSON."""
        try:
            value = json.loads(text)
        except RecursionError:
            raise invalid(where, "is nested too deeply") from None
        except ValueError as error:
            # Malformed JSON, bytes that are not UTF-8, or an integer longer than Python
            # converts (4300 digits): all the sender's.
            raise invalid(where, f"is not valid JSON: {error}") from None
        return cls(value, where)

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def refuse_others(self, known: Collection[str]) -> None:
        """400 naming the first field not in ``known``."""
        for name in self._fields:
            if name not in known:
                raise invalid(self._prefix + name, "is not a field of this request")

    def string(self, name: str, default: str | None = None) -> str:
        """Field ``name``, a string; ``default`` when absent or null (required when None)."""
        value = self._get(name, default)
        if not isinstance(value, str):
            raise invalid(self._prefix + name, f"must be a string, not {_kind(value)}")
        if not _is_unicode(value):
            raise invalid(self._prefix + name, "is not valid Unicode (a lone surrogate escape)")
        return value

    def integer(self, name: str, default: int) -> int:
        """Field ``name``, an integer (``4.0`` is not one); ``default`` when absent or null."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(self._prefix + name, f"must be an integer, not {_kind(value)}")
        return value

    def number(self, name: str, default: float) -> float:
        """Field ``name``, a number; ``default`` when absent or null."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(self._prefix + name, f"must be a number, not {_kind(value)}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        """Field ``name``, true or false; ``default`` when absent or null."""
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise invalid(self._prefix + name, f"must be true or false, not {_kind(value)}")
        return value

    def raw(self, name: str) -> Any:
        """Field ``name`` as parsed, or None when absent."""
        return self._fields.get(name)

    def _get(self, name: str, default: Any) -> Any:
        value = self._fields.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is None:
                raise invalid(self._prefix + name, "is required")
            return default
        return value


def _is_unicode(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form (JSON's escapes can spell lone surrogates, which
    have none, and which no gRPC message can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    """What a JSON value is, for error messages (never the value: it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
