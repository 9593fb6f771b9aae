"""The byte layout of a synthesis stored in the result cache: its chunks, in order.

Layout: uint32 count, then count uint32 lengths, then the chunks back to back (all
little-endian). Chunk boundaries are kept so a cache hit streams exactly what a miss did.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_COUNT = struct.Struct("<I")


def pack_chunks(chunks: Sequence[bytes]) -> bytes:
    """Serialise encoded chunks for the cache."""
    lengths = struct.pack(f"<{len(chunks)}I", *(len(chunk) for chunk in chunks))
    return b"".join((_COUNT.pack(len(chunks)), lengths, *chunks))


def unpack_chunks(blob: bytes) -> list[bytes]:
    """Inverse of pack_chunks; raises ValueError on a blob that is not one."""
    if len(blob) < _COUNT.size:
        raise ValueError("cached synthesis too short")
    (count,) = _COUNT.unpack_from(blob)
    header = _COUNT.size + 4 * count
    if len(blob) < header:
        raise ValueError("cached synthesis header truncated")
    lengths = struct.unpack_from(f"<{count}I", blob, _COUNT.size)
    if header + sum(lengths) != len(blob):
        raise ValueError("cached synthesis length mismatch")
    chunks, offset = [], header
    for length in lengths:
        chunks.append(blob[offset : offset + length])
        offset += length
    return chunks
