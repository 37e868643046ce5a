"""Self-signed TLS for trials (SPEC §4): generated once into ``<data_dir>/tls/`` and reused.

A production deployment names its own ``server.tls_cert``/``server.tls_key``; this only spares
a trial user the openssl incantations.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from objectjobs.errors import ConfigurationError

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALIDITY = dt.timedelta(days=365)
# regenerate a little before expiry so a long-running trial does not break overnight
RENEW_BEFORE = dt.timedelta(days=7)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def self_signed_paths(data_dir: Path) -> tuple[Path, Path]:
    directory = data_dir / "tls"
    return directory / CERT_NAME, directory / KEY_NAME


def _san_entries(names: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _usable(cert_path: Path, key_path: Path, names: Sequence[str]) -> bool:
    """The stored certificate is reused if it loads, is not about to expire and covers
    every name we serve under."""
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return False
    present = set(san)
    return all(entry in present for entry in _san_entries(names))


def ensure_self_signed(data_dir: Path, host: str) -> tuple[Path, Path]:
    """Return ``(cert, key)`` paths of a self-signed certificate for localhost, 127.0.0.1,
    ::1 and ``host`` (unless it is a wildcard address), creating it when missing or stale."""
    names = list(DEFAULT_NAMES)
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    cert_path, key_path = self_signed_paths(data_dir)
    if _usable(cert_path, key_path, names):
        return cert_path, key_path

    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "objectjobs self-signed")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_entries(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # the key is written 0600 from the start, never readable by others even briefly
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def check_pair(cert: Path, key: Path) -> None:
    """Fail at start-up, in one line, when the certificate and key do not load together."""
    for path in (cert, key):
        if not path.is_file():
            raise ConfigurationError(f"TLS file not found: {path}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"cannot load TLS certificate {cert} with key {key}: {exc}"
        ) from exc
