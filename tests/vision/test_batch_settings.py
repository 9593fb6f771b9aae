"""The batching settings: the names deployments already set keep working, and what is not
set comes from the device's measured defaults."""

from __future__ import annotations

from services.common.settings import load_settings
from services.vision.settings import BATCH_DEFAULTS, BatchDefaults, VisionSettings


def test_unset_limits_are_the_devices_own() -> None:
    settings = load_settings(VisionSettings, [], {})
    assert settings.batch_limits("cuda") == BATCH_DEFAULTS["cuda"]
    assert settings.batch_limits("cpu") == BATCH_DEFAULTS["cpu"]
    assert settings.batch_in_flight == 1
    # A GPU batches more, and waits a little for company; the CPU gains nothing by it.
    assert BATCH_DEFAULTS["cuda"].max_batch > BATCH_DEFAULTS["cpu"].max_batch
    assert BATCH_DEFAULTS["cpu"].window_ms == 0.0


def test_the_existing_variables_still_set_the_limits() -> None:
    environ = {
        "CHORUS_BATCH_MAX": "8",
        "CHORUS_BATCH_WAIT_MS": "2",
        "CHORUS_BATCH_IN_FLIGHT": "2",
    }
    settings = load_settings(VisionSettings, [], environ)
    assert settings.batch_limits("cuda") == BatchDefaults(max_batch=8, window_ms=2.0)
    assert settings.batch_limits("cpu") == BatchDefaults(max_batch=8, window_ms=2.0)
    assert settings.batch_in_flight == 2


def test_one_limit_set_leaves_the_other_to_the_device() -> None:
    settings = load_settings(VisionSettings, ["--batch-wait-ms", "0"], {})
    assert settings.batch_limits("cuda") == BatchDefaults(
        max_batch=BATCH_DEFAULTS["cuda"].max_batch, window_ms=0.0
    )
