"""Extract the vision service's packaged models from the pinned MediaPipe wheel.

    python tools/mediapipe_models.py DESTINATION

downloads ``tools/mediapipe-requirements.txt``'s wheel (hash-checked, without its
dependencies, which clash with Chorus's pins), unpacks only the model files listed in
MODELS into DESTINATION, flat, with the wheel's Apache-2.0 licence beside them, and checks
each file against its hash here. Files already in place with the right hash are kept, so
a second run downloads nothing.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("mediapipe-requirements.txt")
# The one build on PyPI for CPython 3.11; the model files are platform-independent.
WHEEL_PLATFORM = ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]

MODELS = {
    "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite": (
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
    ),
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": (
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
    ),
    "mediapipe-0.10.21.dist-info/LICENSE": (
        "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8"
    ),
}
"""Wheel member -> SHA-256 of its bytes. Extracted as the member's file name. (The wheel's
landscape selfie model is left out: the square one over overlapping windows cut wide
photos out better, see services/vision/engines/selfie_segmenter.py.)"""


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def missing(destination: Path) -> list[str]:
    """The members whose file in ``destination`` is absent or has another hash."""
    return [
        member
        for member, digest in MODELS.items()
        if not (destination / Path(member).name).is_file()
        or sha256(destination / Path(member).name) != digest
    ]


def download_wheel(directory: Path) -> Path:
    """The hash-checked MediaPipe wheel, downloaded into ``directory``."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", *WHEEL_PLATFORM,
            "--require-hashes", "-r", str(REQUIREMENTS), "--dest", str(directory),
        ],
        check=True,
    )  # fmt: skip
    [wheel] = directory.glob("mediapipe-*.whl")
    return wheel


def extract(wheel: Path, destination: Path, members: list[str]) -> None:
    """Unpack ``members`` of ``wheel`` into ``destination``, refusing any whose hash is off."""
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            data = archive.read(member)
            if hashlib.sha256(data).hexdigest() != MODELS[member]:
                raise SystemExit(f"{member} in {wheel.name} does not match its hash")
            target = destination / Path(member).name
            partial = target.with_suffix(target.suffix + ".partial")
            partial.write_bytes(data)
            partial.replace(target)


def main(destination: Path) -> None:
    """Make ``destination`` hold every model file of MODELS, downloading only if needed."""
    needed = missing(destination)
    if needed:
        with tempfile.TemporaryDirectory() as download:
            extract(download_wheel(Path(download)), destination, needed)
    print(f"{len(MODELS)} MediaPipe files in {destination}, hashes checked")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
