"""Fixtures of the deploy tests: each kustomize tree rendered once per session."""

from __future__ import annotations

import functools

import pytest

from tests.deploy.rendering import TREES, KubectlMissing, Rendered, render


@functools.cache
def _rendered(tree: str) -> Rendered:
    return Rendered(tree, render(tree))


def rendered_tree(tree: str) -> Rendered:
    """``tree`` rendered (once per session); skips the test when kubectl is missing."""
    try:
        return _rendered(tree)
    except KubectlMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(params=TREES)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each kustomize tree in turn: base, overlays/cpu, overlays/gpu."""
    tree: str = request.param
    return rendered_tree(tree)


@pytest.fixture
def cpu() -> Rendered:
    """The cpu overlay."""
    return rendered_tree("overlays/cpu")


@pytest.fixture
def gpu() -> Rendered:
    """The gpu overlay."""
    return rendered_tree("overlays/gpu")
