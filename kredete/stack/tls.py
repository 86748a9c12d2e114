"""A certificate authority of the local stack and the server certificates it signs (TLS on loopback).

The CA lives in `.local/tls/` (`ca.crt` is what clients verify against: `KREDETE_S3_CA_FILE` defaults to it);
each server gets `public.crt` / `private.key` for 127.0.0.1 and localhost in a directory of its own, re-issued
when missing, about to expire, or signed by another CA (after `.local/tls/` was deleted).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.paths import local_ca_file

_CA_DAYS = 3650
_SERVER_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=30)


_CA_LOCK = threading.Lock()

def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kredete local stack"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ensure_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The local CA, created on first use."""
    with _CA_LOCK:  # OpenSearch and MinIO start in parallel threads: one CA for both
        return _load_or_create_ca()


def _load_or_create_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt_path = local_ca_file()
    key_path = crt_path.with_name("ca.key")
    if crt_path.exists() and key_path.exists():
        crt = x509.load_pem_x509_certificate(crt_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if crt.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC):
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return crt, key
    crt_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    crt = (x509.CertificateBuilder().subject_name(_name("kredete local CA")).issuer_name(_name("kredete local CA"))
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=_CA_DAYS))
           .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
           .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                        content_commitment=False, key_encipherment=False, data_encipherment=False,
                                        key_agreement=False, encipher_only=False, decipher_only=False),
                          critical=True)
           .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    crt_path.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    return crt, key


def ensure_server_cert(directory: Path, common_name: str) -> None:
    """`public.crt` + `private.key` in `directory` (and the CA in `directory/CAs/`, where MinIO looks for the
    CAs it trusts as a client: replication targets and remote tiers are the other local MinIO servers)."""
    ca, ca_key = ensure_ca()
    crt_path, key_path = directory / "public.crt", directory / "private.key"
    if crt_path.exists() and key_path.exists():
        crt = x509.load_pem_x509_certificate(crt_path.read_bytes())
        if crt.issuer == ca.subject and crt.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC):
            try:
                ca.public_key().verify(crt.signature, crt.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
                _trust(directory, ca)
                return
            except Exception:  # noqa: S110 - signed by an earlier CA of the same name: re-issue below
                pass
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    crt = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.subject)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)
    crt_path.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    _trust(directory, ca)


def _trust(directory: Path, ca: x509.Certificate) -> None:
    cas = directory / "CAs"
    cas.mkdir(exist_ok=True)
    pem = ca.public_bytes(serialization.Encoding.PEM)
    target = cas / "kredete-local-ca.crt"
    if not target.exists() or target.read_bytes() != pem:
        target.write_bytes(pem)
