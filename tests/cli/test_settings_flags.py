"""How the command line's flags combine with the environment and the file (SPEC §5.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectjobs.cli.common import build_settings
from objectjobs.errors import ConfigurationError


def test_flags_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "objectjobs.toml"
    config.write_text(
        'data_dir = "/from/file"\n[server]\nhost = "127.0.0.2"\nport = 1111\n'
        "tls_self_signed = true\n"
    )
    monkeypatch.setenv("OBJECTJOBS_SERVER__PORT", "2222")
    settings = build_settings(config)
    assert (settings.server.host, settings.server.port) == ("127.0.0.2", 2222)
    assert settings.server.tls_self_signed  # nested keys not overridden survive

    settings = build_settings(config, tmp_path / "d", host="127.0.0.3", port=3333)
    assert (settings.server.host, settings.server.port) == ("127.0.0.3", 3333)
    assert settings.server.tls_self_signed
    assert settings.data_dir == tmp_path / "d"

    # only one flag: the other nested key still comes from env/file
    settings = build_settings(config, port=4444)
    assert (settings.server.host, settings.server.port) == ("127.0.0.2", 4444)
    assert settings.data_dir == Path("/from/file")


def test_defaults_without_any_configuration() -> None:
    settings = build_settings(None)
    assert settings.data_dir == Path("objectjobs-data")
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.database_url.startswith("sqlite:///")
    assert settings.storage_root == (Path("objectjobs-data") / "buckets").resolve()


def test_flag_values_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"server\.port"):
        build_settings(None, port=70000)
