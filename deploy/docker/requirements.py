"""Print the pinned requirements of pyproject.toml, one per line, for ``pip install -r``.

    python requirements.py PYPROJECT [EXTRA ...]

prints the project's dependencies followed by those of each named extra (``tts``,
``vision``, ``dev``), so an image installs exactly the pins ``make`` installs, in a layer
that is rebuilt only when pyproject.toml changes (the services' code comes later).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Sequence

SUPERSEDES = {"onnxruntime-gpu": "onnxruntime"}
"""Packages that provide the same module as another and so take its pin's place: pip
would install both side by side, and whichever it unpacked last would win."""


def requirements(pyproject: str, extras: Sequence[str]) -> list[str]:
    """The dependencies of ``pyproject`` plus those of ``extras``; unknown extras raise.

    A pin of a package in SUPERSEDES removes the pin of the package it supersedes.
    """
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; known: {sorted(optional)}")
    pins = list(project["dependencies"])
    for extra in extras:
        pins.extend(pin for pin in optional[extra] if pin not in pins)
    superseded = {SUPERSEDES[_project(pin)] for pin in pins if _project(pin) in SUPERSEDES}
    return [pin for pin in pins if _project(pin) not in superseded]


def _project(pin: str) -> str:
    """The project name of a ``name[extras]==version`` pin."""
    return pin.split("==")[0].split("[")[0].strip().lower()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
