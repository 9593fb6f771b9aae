"""Scraping a Prometheus endpoint as Prometheus does: GET /metrics, parse the text format."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    """One scrape's metric families: their types, and every sample."""

    types: dict[str, str]
    """Family name (without _total, _bucket, ...) to its type: counter, gauge, histogram."""
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` whose labels include ``labels``; None when there is none.

        Asserts that at most one sample matches, so a test cannot pass on the wrong one.
        """
        matching = [
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        assert len(matching) <= 1, f"{len(matching)} samples of {name} match {labels}"
        return matching[0] if matching else None


async def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    """GET ``/metrics`` from ``host:port`` (off the event loop) and parse it."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            text: str = response.read().decode()
            return text

    families = list(text_string_to_metric_families(await asyncio.to_thread(get)))
    return Scrape(
        types={family.name: family.type for family in families},
        samples=[sample for family in families for sample in family.samples],
    )
