"""uv.lock is the one source of installed packages: it agrees with pyproject.toml, and the
venv the tests run in holds exactly what it lists for the Makefile's extras."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.uv import REPOSITORY, run_uv

MAKEFILE_EXTRAS = re.compile(r"^EXTRAS := (.+)$", re.MULTILINE)


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_agrees_with_pyproject() -> None:
    check = run_uv("lock", "--check")
    assert check.returncode == 0, check.stderr


def test_the_lock_check_fails_when_pyproject_changes(tmp_path: Path) -> None:
    """The check above can fail: a pin moved in pyproject.toml and not in the lock."""
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPOSITORY / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"numpy==2.4.6"', '"numpy==2.4.5"'))
    check = run_uv("lock", "--check", cwd=tmp_path)
    assert check.returncode != 0, check.stderr


def test_every_direct_dependency_is_pinned() -> None:
    """Pins in pyproject.toml say what we chose; the lock holds the rest of the tree."""
    with open(REPOSITORY / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    unpinned = [pin for pin in declared if len(Requirement(pin).specifier) != 1 or "==" not in pin]
    assert unpinned == []


def test_the_venv_holds_exactly_the_lock() -> None:
    """What `pip freeze` would list is what uv.lock resolves for the Makefile's extras."""
    extras = MAKEFILE_EXTRAS.search((REPOSITORY / "Makefile").read_text())
    assert extras is not None, "the Makefile names its extras in EXTRAS"
    export = run_uv(
        "export",
        "--frozen",
        *extras.group(1).split(),
        "--no-hashes",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
    )
    assert export.returncode == 0, export.stderr
    locked = set()
    for line in export.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                (version,) = requirement.specifier
                locked.add((canonical(requirement.name), version.version))
    installed = {
        (canonical(dist.metadata["Name"]), dist.version)
        for dist in importlib.metadata.distributions(path=sys.path)
        if Path(str(dist.locate_file(""))).resolve().is_relative_to(Path(sys.prefix).resolve())
    }
    assert installed - locked == set(), "installed but not in the lock"
    assert locked - installed == set(), "in the lock but not installed"


@pytest.mark.parametrize("name", ["torch", "transformers", "setuptools", "numpy"])
def test_packages_no_pyproject_pin_names_are_locked_too(name: str) -> None:
    """Transitive packages (setuptools, transformers) have exact versions in the lock."""
    with open(REPOSITORY / "uv.lock", "rb") as file:
        lock = tomllib.load(file)
    versions = {package["version"] for package in lock["package"] if package["name"] == name}
    assert len(versions) >= 1
    assert importlib.metadata.version(name) in versions
