"""tools/mediapipe_models.py: the packaged MediaPipe models, extracted and hash-checked."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tools import mediapipe_models
from tools.mediapipe_models import MODELS, extract, missing

REPOSITORY = Path(__file__).resolve().parents[2]
EXTRACTED = REPOSITORY / ".models" / "mediapipe"


def fake_wheel(path: Path, tampered: str | None = None) -> Path:
    """A zip holding MODELS' members; ``tampered``'s bytes are not the ones hashed."""
    with zipfile.ZipFile(path, "w") as archive:
        for member in MODELS:
            archive.writestr(member, b"changed" if member == tampered else b"")
    return path


def test_make_extracted_every_file_with_its_hash() -> None:
    """`make test` extracts the files before running the tests."""
    assert missing(EXTRACTED) == []
    for member, digest in MODELS.items():
        data = (EXTRACTED / Path(member).name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest


def test_a_changed_file_counts_as_missing(tmp_path: Path) -> None:
    for member in MODELS:
        (tmp_path / Path(member).name).write_bytes((EXTRACTED / Path(member).name).read_bytes())
    assert missing(tmp_path) == []
    victim = next(iter(MODELS))
    (tmp_path / Path(victim).name).write_bytes(b"not the model")
    assert missing(tmp_path) == [victim]


def test_extract_refuses_a_member_whose_hash_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = next(iter(MODELS))
    wheel = fake_wheel(tmp_path / "mediapipe-0.0-py3-none-any.whl", tampered=member)
    monkeypatch.setitem(
        mediapipe_models.MODELS, member, hashlib.sha256(b"what was pinned").hexdigest()
    )
    with pytest.raises(SystemExit, match=Path(member).name):
        extract(wheel, tmp_path / "out", [member])
    assert not (tmp_path / "out" / Path(member).name).exists()
