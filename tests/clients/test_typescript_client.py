"""The TypeScript client (clients/typescript) against the real suite.

Installs the client's npm packages (only when package-lock.json changed since the last
install), generates its code from protos/, builds it, starts the suite as `make run` does
(services in their own processes, on free ports; the orchestrator requiring an API key, as
at the edge), and runs the client's own tests (`node --test`) against it. Then packs the
client and installs the tarball into an empty project, as a user would.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image as PilImage
from skimage import data

from devtools.launcher import REPO_ROOT, free_port
from devtools.suite import SERVICES, running_suite, suite_processes

CLIENT = REPO_ROOT / "clients" / "typescript"
NODE = shutil.which("node")
NPM = shutil.which("npm")
API_KEY = "typescript-client-test-key"
"""The key the orchestrator requires in these tests (the inner services require none)."""

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed to build and test the TypeScript client",
)

# npm without its notices: they are noise in a failure's output.
NPM_ENV = {
    **os.environ,
    "npm_config_audit": "false",
    "npm_config_fund": "false",
    "npm_config_update_notifier": "false",
}


def run(command: list[str], cwd: Path, timeout_s: float = 300, **env: str) -> str:
    """Run ``command`` in ``cwd``; its stdout, or a failed assertion with all it printed."""
    completed = subprocess.run(
        command,
        cwd=cwd,
        env={**NPM_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{' '.join(command)} exited with {completed.returncode}:\n"
        f"{completed.stdout}\n{completed.stderr}"
    )
    return completed.stdout


def npm(*args: str, cwd: Path = CLIENT) -> str:
    assert NPM is not None
    return run([NPM, *args], cwd)


def install_packages() -> None:
    """`npm ci`, unless node_modules already holds what package.json and the lock say
    (a stamp in node_modules: their digest at the last install)."""
    digest = hashlib.sha256(
        (CLIENT / "package.json").read_bytes() + (CLIENT / "package-lock.json").read_bytes()
    ).hexdigest()
    stamp = CLIENT / "node_modules" / ".chorus-installed"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    npm("ci", "--prefer-offline")
    stamp.write_text(digest)


@pytest.fixture(scope="module")
def built_client() -> Path:
    """The client installed, generated from protos/ and built into dist/."""
    install_packages()
    npm("run", "generate")
    npm("run", "build")
    return CLIENT


@pytest.fixture(scope="module")
def suite_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the suite's services write their logs (<service>.log)."""
    return tmp_path_factory.mktemp("suite")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite(suite_logs: Path) -> AsyncIterator[dict[str, str]]:
    """The suite's services, each in its own process on a free port; their addresses."""
    folder = suite_logs
    ports = {name: free_port() for name in SERVICES}
    env = {
        "CHORUS_WORKERS": "1",
        # The speech engine that makes audio in milliseconds.
        "CHORUS_ENGINE": "espeak",
        # Prosody's budget beyond any request's deadline, on a busy machine.
        "CHORUS_TIME_BUDGET_S": "3600",
    }
    processes = dict(suite_processes(ports, "", folder, env))
    # The orchestrator, the edge, requires an API key, as in production (so the client's
    # key is put to the test); the inner services, which only it calls, require none.
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    edge_env = {**env, "CHORUS_API_KEYS": f"typescript:{digest}"}
    processes["orchestrator"] = suite_processes(ports, "", folder, edge_env)["orchestrator"]
    async with running_suite(processes, healthy_within_s=120):
        yield {name: process.address for name, process in processes.items()}


LOG_RECORD = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ")
"""The start of a record in a service's log (see services/common/logging_setup.py)."""


def portrait_jpeg() -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(data.astronaut()).save(buffer, format="JPEG")
    return buffer.getvalue()


def logged_errors(folder: Path) -> dict[str, list[str]]:
    """The ERROR records of each service log in ``folder`` that has any, each with the
    lines that continue it (a traceback), so that a failure says where it came from."""
    found = {}
    for log in sorted(folder.glob("*.log")):
        errors: list[str] = []
        in_error = False
        for line in log.read_text().splitlines():
            if LOG_RECORD.match(line):
                in_error = " ERROR " in line
                if in_error:
                    errors.append(line)
            elif in_error:
                errors[-1] += "\n" + line
        if errors:
            found[log.name] = errors
    return found


def closing_counts(output: str) -> dict[str, int]:
    """The closing counts of node's spec reporter (`pass 19`, `fail 0`, ...)."""
    return {
        name: int(count)
        for name, count in re.findall(
            r"^\S+ (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.MULTILINE
        )
    }


@pytest.mark.timeout(900)
def test_the_packed_tarball_installs_and_imports(built_client: Path, tmp_path: Path) -> None:
    # `npm pack` generates and builds first (prepack): the tarball holds the generated code.
    packed = json.loads(npm("pack", "--json", "--pack-destination", str(tmp_path)))
    tarball = tmp_path / packed[0]["filename"]
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {
        "package.json",
        "README.md",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/gen/chorus/orchestrator/v1/orchestrator_pb.js",
        "dist/gen/chorus/tts/v1/tts_pb.d.ts",
    } <= files
    assert all(path.startswith("dist/") for path in files - {"package.json", "README.md"})

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True}))
    npm("install", "--prefer-offline", str(tarball), cwd=app)
    assert NODE is not None
    required = run(
        [
            NODE,
            "-e",
            "const c = require('chorus-client');"
            "console.log(typeof c.ChorusClient, c.Status.INVALID_ARGUMENT,"
            " typeof c.SpeakRequestSchema)",
        ],
        app,
    )
    assert required.split() == ["function", "3", "object"]
    # The README's usage compiles, strict, against the installed package's declarations.
    shutil.copy(built_client / "examples" / "usage.ts", app / "usage.ts")
    run(
        [
            str(built_client / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--exactOptionalPropertyTypes",
            "--target",
            "ES2022",
            "--module",
            "node16",
            "--moduleResolution",
            "node16",
            "--typeRoots",
            str(built_client / "node_modules" / "@types"),
            "--types",
            "node",
            "usage.ts",
        ],
        app,
    )
    imported = run(
        [
            NODE,
            "--input-type=module",
            "-e",
            "import { ChorusClient, ChorusError } from 'chorus-client';"
            "const client = new ChorusClient({ address: '127.0.0.1:1' });"
            "try { await client.listVoices({}, { deadlineMs: 5000 }); }"
            "catch (error) { console.log(error instanceof ChorusError, error.codeName); }"
            "client.close();",
        ],
        app,
    )
    assert imported.split() == ["true", "UNAVAILABLE"]


@pytest.mark.timeout(900)
@pytest.mark.asyncio(loop_scope="module")
async def test_the_client_passes_its_tests_against_the_running_suite(
    built_client: Path, suite: dict[str, str], suite_logs: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(portrait_jpeg())
    assert NODE is not None
    completed = await asyncio.to_thread(
        subprocess.run,
        [NODE, "--test", "--test-reporter=spec", "test/"],
        cwd=built_client,
        env={
            **os.environ,
            "CHORUS_ORCHESTRATOR_ADDRESS": suite["orchestrator"],
            "CHORUS_TTS_ADDRESS": suite["tts"],
            "CHORUS_API_KEY": API_KEY,
            "CHORUS_TEST_PHOTO": str(photo),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    print(output)  # the node tests' own report, for `pytest -s`
    assert completed.returncode == 0, output
    counts = closing_counts(completed.stdout)
    # Every test ran: none skipped for want of an address, a key or the photo.
    assert counts.get("pass", 0) > 0, output
    assert counts.get("pass") == counts.get("tests"), output
    # Its cancels (an abort, a loop left early, a deadline) and errors are the clients'
    # doing: no service logs an error for them.
    assert await asyncio.to_thread(logged_errors, suite_logs) == {}
