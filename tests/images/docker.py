"""The Docker command line, as the image tests drive it, and finding one that can build.

The Dockerfile needs BuildKit (its RUN --mount caches). A docker CLI from 23.0 on builds
through the buildx plugin alone; an older one (Debian bookworm's docker.io, 20.10) uses the
engine's own BuildKit when DOCKER_BUILDKIT=1, as `make images` sets. A machine may have
both (a newer CLI without buildx ahead on PATH), so each `docker` on PATH is tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BUILDX_ONLY_FROM = 23
"""The docker CLI major version from which BuildKit builds need the buildx plugin."""

COMMAND_TIMEOUT_S = 600.0
"""Longest one docker command may take before the test fails instead of hanging."""


@dataclass(frozen=True)
class Docker:
    """One docker CLI, which talks to the engine."""

    command: str

    def attempt(
        self, *args: str, stdin: str | None = None, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``, whatever its exit status."""
        return subprocess.run(
            [self.command, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            check=False,
        )

    def output(self, *args: str, stdin: str | None = None) -> str:
        """What ``docker ARGS`` prints, stripped; fails the test, with its error, when it
        fails."""
        result = self.attempt(*args, stdin=stdin)
        if result.returncode != 0:
            pytest.fail(f"docker {' '.join(args[:3])} ... failed: {result.stderr[-4000:]}")
        return result.stdout.strip()


def _client_major(command: str) -> int | None:
    try:
        result = subprocess.run(
            [command, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = result.stdout.strip().split(".")[0]
    return int(version) if version.isdigit() else None


def _builds_with_buildkit(command: str) -> bool:
    major = _client_major(command)
    if major is None:
        return False
    if major < BUILDX_ONLY_FROM:
        return True
    buildx = subprocess.run(
        [command, "buildx", "version"], capture_output=True, timeout=60, check=False
    )
    return buildx.returncode == 0


def candidates() -> list[str]:
    """The docker CLIs to try: $DOCKER (as `make` passes it), then each on PATH."""
    found = [os.environ.get("DOCKER", "docker")]
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder) / "docker"
        if os.access(path, os.X_OK) and path.is_file():
            found.append(str(path))
    resolved = [shutil.which(command) or command for command in found]
    return list(dict.fromkeys(os.path.realpath(command) for command in resolved))


def engine_answers(command: str) -> bool:
    """Whether a Docker engine answers ``command``."""
    try:
        result = subprocess.run(
            [command, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def find_docker() -> Docker:
    """A docker CLI that reaches an engine and builds with BuildKit.

    Skips the test when no engine answers; fails it when one does but no CLI here can
    build the Dockerfile.
    """
    commands = [command for command in candidates() if shutil.which(command)]
    answering = [command for command in commands if engine_answers(command)]
    if not answering:
        pytest.skip(f"no Docker engine answers (tried {', '.join(commands) or 'no docker CLI'})")
    for command in answering:
        if _builds_with_buildkit(command):
            return Docker(command)
    pytest.fail(
        f"no docker CLI of {', '.join(answering)} builds with BuildKit: install the buildx "
        "plugin, or use a docker CLI older than 23.0 (DOCKER=...)"
    )
