import dataclasses

import pytest

from services.common.settings import ServerSettings, load_settings


@dataclasses.dataclass(frozen=True)
class ExampleSettings(ServerSettings):
    """Example."""

    port: int = 1234
    engine: str = "espeak"
    warm: bool = True
    ratio: float = 0.5


def test_defaults_when_nothing_is_set() -> None:
    settings = load_settings(ExampleSettings, [], {})
    assert settings == ExampleSettings()
    assert settings.port == 1234


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    environ = {"CHORUS_PORT": "9000", "CHORUS_ENGINE": "coqui", "CHORUS_WARM": "false"}
    settings = load_settings(ExampleSettings, ["--port", "9100", "--ratio", "2.5"], environ)
    assert settings.port == 9100
    assert settings.engine == "coqui"
    assert settings.warm is False
    assert settings.ratio == 2.5


def test_unparseable_environment_value_stops_start_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(ExampleSettings, [], {"CHORUS_PORT": "not-a-port"})
    assert "CHORUS_PORT" in capsys.readouterr().err


def test_unknown_flag_stops_start_up() -> None:
    with pytest.raises(SystemExit):
        load_settings(ExampleSettings, ["--no-such-flag", "1"], {})
