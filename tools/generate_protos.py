"""Generate the Python code of every .proto under protos/: the one way gen/ is made.

    python tools/generate_protos.py OUT

runs the running Python's grpc_tools.protoc (grpcio-tools, the lock's dev extra) on every
``protos/**/*.proto``, with ``protos/`` as the include path, writing into OUT the messages
(``*_pb2.py``), the gRPC stubs (``*_pb2_grpc.py``) and mypy-protobuf's type stubs for both
(``*.pyi``), then makes every folder under OUT a package (an empty ``__init__.py``).
`make proto` runs it into gen/, and so does the images' protos stage (deploy/docker/
Dockerfile), so both hold the same files. OUT must be absent or empty: nothing stale is
mixed in, and nothing is ever deleted here. Generated code is never edited by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PROTOS = Path(__file__).resolve().parents[1] / "protos"
"""The include path and the folder searched for .proto files."""

OUTPUTS = ("--python_out", "--grpc_python_out", "--mypy_out", "--mypy_grpc_out")
"""protoc's output flags, each given OUT: messages, gRPC stubs, and the .pyi of both."""


def proto_files(protos: Path = PROTOS) -> list[Path]:
    """Every .proto file under ``protos``, in a stable order."""
    return sorted(protos.rglob("*.proto"))


def protoc_command(out: Path, protos: Path = PROTOS) -> list[str]:
    """The grpc_tools.protoc command line that writes ``protos``' code into ``out``."""
    return [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{protos}",
        *(f"{flag}={out}" for flag in OUTPUTS),
        *(str(path) for path in proto_files(protos)),
    ]  # fmt: skip


def generate(out: Path, protos: Path = PROTOS) -> list[Path]:
    """Write the code of ``protos``' files into ``out`` (absent or empty); the files made."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: generate into a new folder (make proto does)")
    if not proto_files(protos):
        raise SystemExit(f"no .proto files under {protos}")
    out.mkdir(parents=True, exist_ok=True)
    # mypy-protobuf's protoc plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) are scripts
    # installed beside this Python, in its venv's bin folder.
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    result = subprocess.run(protoc_command(out, protos), env={**os.environ, "PATH": path})
    if result.returncode != 0:
        raise SystemExit(f"grpc_tools.protoc failed with exit status {result.returncode}")
    for folder in [path for path in out.rglob("*") if path.is_dir()]:
        (folder / "__init__.py").touch()
    return sorted(path for path in out.rglob("*") if path.is_file())


def main(argv: list[str]) -> None:
    """Generate into the one folder ``argv`` names."""
    if len(argv) != 1:
        raise SystemExit(__doc__)
    made = generate(Path(argv[0]))
    print(f"{len(made)} files generated in {argv[0]} from {len(proto_files())} .proto files")


if __name__ == "__main__":
    main(sys.argv[1:])
