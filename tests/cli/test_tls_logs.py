"""The self-signed certificate store and the logging set-up."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from objectjobs.errors import ConfigurationError
from objectjobs.logs import REDACTED, setup_logging
from objectjobs.settings import load_settings
from objectjobs.tls import check_pair, ensure_self_signed


def _names(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }


def test_self_signed_is_created_once_and_reused(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, "127.0.0.1")
    assert cert == tmp_path / "tls" / "cert.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert {"localhost", "127.0.0.1", "::1"} <= _names(cert)
    check_pair(cert, key)
    first = cert.read_bytes()

    again, _ = ensure_self_signed(tmp_path, "127.0.0.1")
    assert again.read_bytes() == first


def test_self_signed_is_renewed_for_a_new_host(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, "127.0.0.1")
    first = cert.read_bytes()
    cert, key = ensure_self_signed(tmp_path, "objectjobs.example")
    assert cert.read_bytes() != first
    assert "objectjobs.example" in _names(cert)
    check_pair(cert, key)
    # a wildcard listen address is not a name to certify
    cert, _ = ensure_self_signed(tmp_path / "any", "0.0.0.0")
    assert "0.0.0.0" not in _names(cert)
    assert ipaddress.ip_address("127.0.0.1") in {
        n
        for n in x509.load_pem_x509_certificate(cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.IPAddress)
    }


def test_corrupt_certificate_is_replaced(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, "127.0.0.1")
    cert.write_text("garbage")
    cert, key = ensure_self_signed(tmp_path, "127.0.0.1")
    check_pair(cert, key)
    not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    assert not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)


def test_mismatched_pair_is_refused(tmp_path: Path) -> None:
    cert_a, _ = ensure_self_signed(tmp_path / "a", "127.0.0.1")
    _, key_b = ensure_self_signed(tmp_path / "b", "127.0.0.1")
    with pytest.raises(ConfigurationError, match="cannot load TLS certificate"):
        check_pair(cert_a, key_b)
    with pytest.raises(ConfigurationError, match="TLS file not found"):
        check_pair(tmp_path / "none.pem", key_b)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_redact_secrets(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    for name in [n for n in os.environ if n.startswith("OBJECTJOBS_")]:
        del os.environ[name]
    settings = load_settings(
        None,
        data_dir=tmp_path,
        auth={"admin_password": "hunter2-admin", "secret_key": "signing-key-123"},
        storage={"kind": "s3", "endpoint_url": "http://127.0.0.1:1", "secret_key": "s3-secret-xyz"},
        log={"json": True, "level": "debug"},
    )
    setup_logging(settings)
    log = logging.getLogger("objectjobs.test")
    log.info("connecting with %s and %s", "s3-secret-xyz", "hunter2-admin", extra={"job": 7})
    try:
        raise RuntimeError("key signing-key-123 refused")
    except RuntimeError:
        log.exception("failed")
    err = capfd.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    mine = [r for r in records if r["logger"] == "objectjobs.test"]
    assert mine[0]["message"] == f"connecting with {REDACTED} and {REDACTED}"
    assert mine[0]["job"] == 7
    assert mine[0]["level"] == "INFO"
    assert mine[0]["time"].endswith("Z")
    assert mine[1]["message"] == "failed"
    assert REDACTED in mine[1]["exception"]
    for secret in ("s3-secret-xyz", "hunter2-admin", "signing-key-123"):
        assert secret not in err


def test_plain_logs_and_level(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    settings = load_settings(None, data_dir=tmp_path, log={"level": "WARNING"})
    setup_logging(settings)
    setup_logging(settings)  # twice: still one handler, one line per record
    logging.getLogger("objectjobs.test").info("hidden")
    logging.getLogger("objectjobs.test").warning("shown")
    err = capfd.readouterr().err
    assert "hidden" not in err
    assert err.count("WARNING objectjobs.test: shown") == 1

    bad = load_settings(None, data_dir=tmp_path, log={"level": "LOUD"})
    with pytest.raises(ConfigurationError, match=r"log\.level"):
        setup_logging(bad)
