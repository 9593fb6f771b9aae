import pytest

from services.common.audio_codecs import EncodedChunk
from services.tts.cached_audio import pack_chunks, unpack_chunks


def test_round_trip_keeps_chunk_boundaries_and_sample_counts() -> None:
    chunks = [
        EncodedChunk(b"abc", 3),
        EncodedChunk(b"", 0),
        EncodedChunk(b"\x00" * 1000, 500),
        EncodedChunk(b"z", 0),
    ]
    assert unpack_chunks(pack_chunks(chunks)) == chunks


def test_empty_synthesis_round_trips() -> None:
    assert unpack_chunks(pack_chunks([])) == []


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x05\x00\x00\x00", pack_chunks([EncodedChunk(b"abc", 960)])[:-1]],
)
def test_corrupt_blob_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="cached synthesis"):
        unpack_chunks(blob)
