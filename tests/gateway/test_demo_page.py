"""The demo page the gateway serves at ``/``, in a real browser: headless Chromium (Debian's
package) driven by playwright-core from npm, through tests/browser/demo_page.mjs.

The page speaks a sentence over the realtime WebSocket (audio reaches it and words light
up), composes a message with a real photo over server-sent events (the cut-out is shown),
and shows an error body with its field; the script says which step failed. It runs
against the package's real suite and gateway (tests/gateway/conftest.py), with the API
key the suite's orchestrator requires.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from tests.gateway.harness import API_KEY, Gateway

pytestmark = pytest.mark.asyncio(loop_scope="package")

BROWSER_TESTS = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = Path("/usr/bin/chromium")
NPM_CI_TIMEOUT_S = 300
SCRIPT_TIMEOUT_S = 420
"""Limits on waits that normally take seconds: only there so a hang fails the test."""


def browser_tools() -> tuple[str, str] | None:
    """The node and npm executables, or None (the test skips saying what is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def missing_tools_reason() -> str:
    """Why the test cannot run here, and how to make it run; empty when it can."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (install Debian's Chromium: apt-get install -y chromium)")
    if browser_tools() is None:
        missing.append("node and npm (apt-get install -y nodejs npm)")
    return "needs " + " and ".join(missing) if missing else ""


def node_modules_current(folder: Path) -> bool:
    """Whether ``folder``'s node_modules holds every package of its lock at its version."""
    lock = json.loads((folder / "package-lock.json").read_text())
    for location, entry in lock["packages"].items():
        if not location:
            continue
        installed = folder / location / "package.json"
        if not installed.exists():
            return False
        if json.loads(installed.read_text()).get("version") != entry.get("version"):
            return False
    return True


async def run(argv: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run ``argv`` without blocking the event loop the suite and gateway serve on;
    returns its status and its output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode(errors="replace") + f"\n(killed after {timeout_s:g} s)"
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def install_playwright(npm: str) -> None:
    """``npm ci`` in tests/browser, unless node_modules already matches the lock."""
    if node_modules_current(BROWSER_TESTS):
        return
    status, output = await run(
        [npm, "ci", "--no-audit", "--no-fund"], BROWSER_TESTS, NPM_CI_TIMEOUT_S
    )
    assert status == 0, f"npm ci in {BROWSER_TESTS} failed:\n{output}"


def write_portrait(path: Path) -> Path:
    """scikit-image's astronaut, a real portrait photo, as a JPEG."""
    Image.fromarray(data.astronaut()).save(path, format="JPEG", quality=90)
    return path


MISSING = missing_tools_reason()


@pytest.mark.skipif(bool(MISSING), reason=MISSING)
@pytest.mark.timeout(NPM_CI_TIMEOUT_S + SCRIPT_TIMEOUT_S + 120)
async def test_demo_page_speaks_highlights_and_composes_in_chromium(
    gateway: Gateway, tmp_path: Path
) -> None:
    tools = browser_tools()
    assert tools is not None
    node, npm = tools
    await install_playwright(npm)
    photo = write_portrait(tmp_path / "portrait.jpg")
    screenshot = tmp_path / "demo_page.png"

    status, output = await run(
        [
            node,
            "demo_page.mjs",
            "--url",
            f"{gateway.url}/",
            "--photo",
            str(photo),
            "--screenshot",
            str(screenshot),
            "--api-key",
            API_KEY,
        ],
        BROWSER_TESTS,
        SCRIPT_TIMEOUT_S,
    )

    print(output)
    print(f"screenshot: {screenshot}")
    assert status == 0, f"the demo page failed in Chromium (exit {status}):\n{output}"
    assert screenshot.stat().st_size > 0
