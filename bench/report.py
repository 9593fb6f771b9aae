"""The JSON document every benchmark prints: what was measured, and on what machine."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping


def print_report(benchmark: str, figures: Mapping[str, object]) -> None:
    """Print ``figures`` to stdout as one JSON document, with the machine described."""
    document = {
        "benchmark": benchmark,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        **figures,
    }
    json.dump(document, sys.stdout, indent=2)
    print()
