"""The byte layout of a synthesis stored in the result cache: its chunks, in order.

The cache holds what was sent, in the encoding it was sent in (PCM, Ogg Opus or MP3;
the encoding is part of the key), so a hit streams exactly the bytes of the miss, chunk
boundaries included, and never encodes again: a hit costs microseconds where encoding
costs about 10 ms per second of audio, and compressed entries are 8 to 17 times smaller.

Layout: uint32 count, then per chunk its uint32 byte length and uint32 PCM sample count
(an encoded chunk's size says nothing of the samples it covers), then the chunks back to
back (all little-endian). LAYOUT goes into the cache key, so entries of an older layout
(in a shared Redis) are never read as this one.

A synthesis asked for with word timings is stored with its words, under a key of its own
(``pack_timed``): a hit then sends the same words before the same chunks.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from services.common.audio_codecs import EncodedChunk
from services.tts.synthesis import SpokenWord

LAYOUT = 2
"""The version of this layout; 1 stored lengths only."""

_COUNT = struct.Struct("<I")


def pack_chunks(chunks: Sequence[EncodedChunk]) -> bytes:
    """Serialise chunks for the cache."""
    header = struct.pack(
        f"<{2 * len(chunks)}I",
        *(value for chunk in chunks for value in (len(chunk.data), chunk.samples)),
    )
    return b"".join((_COUNT.pack(len(chunks)), header, *(chunk.data for chunk in chunks)))


def unpack_chunks(blob: bytes) -> list[EncodedChunk]:
    """Inverse of pack_chunks; raises ValueError on a blob that is not one."""
    if len(blob) < _COUNT.size:
        raise ValueError("cached synthesis too short")
    (count,) = _COUNT.unpack_from(blob)
    header = _COUNT.size + 8 * count
    if len(blob) < header:
        raise ValueError("cached synthesis header truncated")
    fields = struct.unpack_from(f"<{2 * count}I", blob, _COUNT.size)
    lengths, samples = fields[0::2], fields[1::2]
    if header + sum(lengths) != len(blob):
        raise ValueError("cached synthesis length mismatch")
    chunks, offset = [], header
    for length, count_samples in zip(lengths, samples, strict=True):
        chunks.append(EncodedChunk(blob[offset : offset + length], count_samples))
        offset += length
    return chunks


_WORD_COUNT = struct.Struct("<I")
_WORD = struct.Struct("<IIQQ")


def pack_timed(chunks: Sequence[EncodedChunk], words: Sequence[SpokenWord]) -> bytes:
    """Serialise a synthesis with its word timings: uint32 word count, then each word's
    char_start, char_end (uint32) and start_sample, end_sample (uint64), then the chunks
    as ``pack_chunks`` lays them out. (Stored under its own key: see the servicer.)"""
    return b"".join(
        (
            _WORD_COUNT.pack(len(words)),
            *(
                _WORD.pack(word.char_start, word.char_end, word.start_sample, word.end_sample)
                for word in words
            ),
            pack_chunks(chunks),
        )
    )


def unpack_timed(blob: bytes) -> tuple[list[EncodedChunk], list[SpokenWord]]:
    """Inverse of pack_timed; raises ValueError on a blob that is not one."""
    if len(blob) < _WORD_COUNT.size:
        raise ValueError("cached timed synthesis too short")
    (count,) = _WORD_COUNT.unpack_from(blob)
    end = _WORD_COUNT.size + count * _WORD.size
    if len(blob) < end:
        raise ValueError("cached timed synthesis truncated in its words")
    words = [
        SpokenWord(*_WORD.unpack_from(blob, _WORD_COUNT.size + index * _WORD.size))
        for index in range(count)
    ]
    return unpack_chunks(blob[end:]), words
