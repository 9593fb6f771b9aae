"""Fixtures of the image tests: a Docker engine, the images built, and the stack running.

The images come from their `make images` targets, from the base the BASE_IMAGE variable
names, or when it is empty from the stand-in base that tools/stand_in_base.py bootstraps
from Debian packages (built once, then reused); BuildKit's cache makes a rebuild of
unchanged images quick. Their sizes are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from devtools.launcher import REPO_ROOT
from tests.deploy.test_dockerfiles import make_builds
from tests.images.docker import Docker, find_docker
from tests.images.stack import IMAGES, Stack, build_redis_image, start_stack
from tools import stand_in_base

BUILD_TIMEOUT_S = 3 * 3600.0
"""Bounds `make images` from cold (the tts and vision images hold torch with CUDA)."""

SIZES = pytest.StashKey[dict[str, int]]()


def _base_image(docker: Docker) -> str:
    """BASE_IMAGE as `make test-images` passes it, else the stand-in base (built if missing)."""
    base = os.environ.get("BASE_IMAGE", "")
    if base:
        return base
    if stand_in_base.main(["--docker", docker.command]) != 0:
        pytest.fail("the stand-in base could not be built: see tools/stand_in_base.py")
    return stand_in_base.TAG


@pytest.fixture(scope="session")
def docker() -> Docker:
    """A docker CLI that reaches an engine (the tests skip without one)."""
    return find_docker()


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """The base every image of the test is built from."""
    return _base_image(docker)


@pytest.fixture(scope="session")
def images(
    docker: Docker, base_image: str, tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> dict[str, str]:  # fmt: skip
    """The five Chorus images' tags (the four services' and the gateway's), built by their
    `make images` targets (only these: `make images` may build more) from ``base_image``."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not on PATH")
    log = tmp_path_factory.mktemp("build") / "make-images.log"
    # The variables are given explicitly; make's own from a calling make are left out.
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    with log.open("w") as output:
        built = subprocess.run(
            [make, "--no-print-directory", *(f"image-{name}" for name in IMAGES),
             f"DOCKER={docker.command}", f"BASE_IMAGE={base_image}"],
            cwd=REPO_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
    if built.returncode != 0:
        pytest.fail(f"make images failed ({log}):\n{log.read_text()[-6000:]}")
    tags = {build.args["SERVICE"]: build.tag for build in make_builds()}
    tags = {name: tags[name] for name in IMAGES}
    request.config.stash[SIZES] = {
        tag: int(docker.output("image", "inspect", "--format", "{{.Size}}", tag))
        for tag in tags.values()
    }
    return tags


@pytest.fixture(scope="module")
def stack(
    docker: Docker, base_image: str, images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:  # fmt: skip
    """Redis, the four services and the gateway running, healthy and ready; removed after
    the module's tests."""
    redis_image = build_redis_image(docker, base_image)
    running = start_stack(docker, images, redis_image, tmp_path_factory.mktemp("certificates"))
    try:
        yield running
    finally:
        running.remove()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Each image's size, as `docker image inspect` gives it."""
    sizes = config.stash.get(SIZES, {})
    if sizes:
        terminalreporter.section("image sizes")
        for tag, size in sizes.items():
            terminalreporter.write_line(f"{tag}: {size / 1e9:.2f} GB ({size} bytes)")
