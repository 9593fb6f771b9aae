"""tools/generate_protos.py: the one command that generates the protobuf code, for `make
proto` and for the images alike, so what they hold cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.generate_protos import OUTPUTS, PROTOS, generate, proto_files, protoc_command

REPOSITORY = Path(__file__).resolve().parents[2]
GEN = REPOSITORY / "gen"
MAKE_ONLY = {".generated"}
"""What the Makefile adds to gen/ itself: the stamp of its rule."""


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (bytecode caches left out) by relative path: its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_script_makes_what_make_put_in_gen(tmp_path: Path) -> None:
    """Generated afresh, the code is gen/'s, byte for byte and file for file (`make`
    regenerates gen/ when a .proto or the script changes)."""
    made = generate(tmp_path / "gen")
    generated = tree(tmp_path / "gen")
    assert sorted(generated) == sorted(
        path.relative_to(tmp_path / "gen").as_posix() for path in made
    )
    expected = {name: data for name, data in tree(GEN).items() if name not in MAKE_ONLY}
    assert sorted(generated) == sorted(expected), "gen/ is stale or was edited: run `make proto`"
    changed = [name for name in generated if generated[name] != expected[name]]
    assert changed == [], "gen/ is stale or was edited: run `make proto`"


def test_every_proto_gets_messages_services_and_stubs(tmp_path: Path) -> None:
    """Each .proto gives its _pb2 and _pb2_grpc modules and a .pyi for each, and every
    folder of the generated tree is a package."""
    generate(tmp_path)
    for proto in proto_files():
        stem = proto.relative_to(PROTOS).with_suffix("").as_posix()
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert (tmp_path / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    folders = [path for path in tmp_path.rglob("*") if path.is_dir()]
    assert folders
    for folder in folders:
        assert (folder / "__init__.py").read_bytes() == b""


def test_protoc_gets_one_include_path_and_every_output(tmp_path: Path) -> None:
    """protoc's flags: protos/ as the include path, each output into the one folder."""
    command = protoc_command(tmp_path)
    assert command[1:3] == ["-m", "grpc_tools.protoc"]
    flags = [word for word in command if word.startswith("-")]
    assert flags == ["-m", f"-I{PROTOS}", *(f"{flag}={tmp_path}" for flag in OUTPUTS)]
    assert set(OUTPUTS) == {"--python_out", "--grpc_python_out", "--mypy_out", "--mypy_grpc_out"}


def test_a_folder_with_files_is_refused(tmp_path: Path) -> None:
    """Nothing stale is mixed in: generating into a folder that holds anything fails, and
    nothing in it is touched."""
    stale = tmp_path / "chorus" / "old_pb2.py"
    stale.parent.mkdir()
    stale.write_text("# stale")
    with pytest.raises(SystemExit, match="not empty"):
        generate(tmp_path)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == [stale]


def test_make_proto_runs_the_script() -> None:
    """The Makefile's gen/ rule clears gen/ and runs the script, and remakes gen/ when the
    script changes; it names no protoc flags of its own."""
    makefile = (REPOSITORY / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP_GEN\): (.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule is not None, "the Makefile has no $(STAMP_GEN) rule"
    assert "tools/generate_protos.py" in rule.group(1).split()
    assert rule.group(2).splitlines() == [
        "\trm -rf $(GEN)",
        "\t$(PY) tools/generate_protos.py $(GEN)",
        "\ttouch $@",
    ]
    assert "grpc_tools" not in makefile
    assert not [flag for flag in OUTPUTS if flag in makefile]
