"""An in-process least-recently-used map of bytes, bounded by the bytes it holds."""

from __future__ import annotations

from collections import OrderedDict


class ByteLRU:
    """LRU of ``str -> bytes`` whose values total at most ``max_bytes``.

    Only values count towards the bound (keys are short hashes). Not thread-safe: each
    service uses it from its one asyncio event loop.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Total bytes of the values held."""
        return self._size

    def get(self, key: str) -> bytes | None:
        """The value for ``key``, now the most recently used; None when absent."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        """Store ``value``, evicting the least recently used until it fits.

        A value larger than the whole bound is not stored (it would evict everything), and
        with ``max_bytes=0`` nothing is. Either way an older value under ``key`` is dropped,
        so a later ``get`` never returns what the caller has replaced.
        """
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old)
        if self._max_bytes == 0 or len(value) > self._max_bytes:
            return
        self._entries[key] = value
        self._size += len(value)
        while self._size > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)
