"""The test certificates (devtools.certificates), skipping a test where openssl is missing."""

from __future__ import annotations

import shutil

import pytest

from devtools.certificates import CertAuthority, Pair, install

if shutil.which("openssl") is None:
    pytest.skip("the openssl command is needed to make test certificates", allow_module_level=True)

__all__ = ["CertAuthority", "Pair", "install"]
