"""The project's pinned uv (``make`` installs it into .tools/), run offline from tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
UV = REPOSITORY / ".tools" / "uv" / "bin" / "uv"


def run_uv(*arguments: str, cwd: Path = REPOSITORY) -> subprocess.CompletedProcess[str]:
    """``uv ARGUMENTS --offline`` in ``cwd``: lock checks and exports need no index."""
    assert UV.is_file(), f"{UV} is missing: `make` installs it from tools/uv-requirements.txt"
    return subprocess.run(
        [str(UV), *arguments, "--offline", "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
