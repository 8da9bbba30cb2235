"""A deployment's certificates: one certificate authority and one certificate + key per party (mutual TLS).

Every party of a deployment (workers, the crypto provider, aggregators, clients, the coordinator ``me``) proves its
name with a certificate signed by the deployment's CA; a connection from anyone else is refused during the TLS
handshake, and a party whose certificate names someone else than the party it claims to be is refused after it.
Names are the certificates' common names. Keys are ECDSA P-256, certificates valid for ``days`` days.

Files written by :func:`make_deployment` (``python -m refimpl certs --out DIR jake john ...``)::

    DIR/ca.pem              the CA certificate (every party needs it)
    DIR/ca-key.pem          the CA's private key (keep it offline: only needed to add parties)
    DIR/<name>.pem          party <name>'s certificate
    DIR/<name>-key.pem      party <name>'s private key (give it only to that party; mode 0600)

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sorted(p.name for p in make_deployment(d, ["jake", "me"]))
    ['ca-key.pem', 'ca.pem', 'jake-key.pem', 'jake.pem', 'me-key.pem', 'me.pem']
    >>> party_name(load_certificate(d / "jake.pem"))
    'jake'
"""

from __future__ import annotations

import datetime
import os
import re
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from refimpl.errors import ConfigurationError

__all__ = ["add_party", "check_name", "client_context", "load_certificate", "make_deployment", "party_name",
           "peer_name", "server_context"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_name(name: object) -> str:
    """A party name: 1-64 characters from letters, digits, ``_ . -``.

    Raises:
        ConfigurationError: anything else (the name goes into certificates, file names and log lines).
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ConfigurationError(f"a party name is 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool, days: int) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_deployment(out: str | os.PathLike[str], names: Iterable[str], *, days: int = 365,
                    ca_name: str = "refimpl deployment CA") -> list[Path]:
    """Create ``out`` with a fresh CA and a certificate + key for every party in ``names``; return the files.

    Raises:
        ConfigurationError: a bad or repeated name, or ``out`` already holds a CA (use :func:`add_party`).
    """
    names = [check_name(n) for n in names]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"party names must be distinct, got {names}")
    if not names:
        raise ConfigurationError("name at least one party")
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "ca.pem").exists():
        raise ConfigurationError(f"{d} already holds a deployment CA (ca.pem); add parties with add_party or use an "
                                 "empty directory")
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    cert = _certificate(ca_name, issuer, key.public_key(), key, ca=True, days=days)
    files = [_write(d / "ca.pem", cert.public_bytes(serialization.Encoding.PEM)),
             _write(d / "ca-key.pem", _key_pem(key), private=True)]
    for name in names:
        files += add_party(d, name, days=days)
    return files


def add_party(out: str | os.PathLike[str], name: str, *, days: int = 365) -> list[Path]:
    """Issue a certificate + key for party ``name`` with the CA in ``out``; return the two files."""
    name = check_name(name)
    d = Path(out)
    try:
        ca_cert = load_certificate(d / "ca.pem")
        ca_key = serialization.load_pem_private_key((d / "ca-key.pem").read_bytes(), password=None)
    except FileNotFoundError as e:
        raise ConfigurationError(f"{d} holds no deployment CA ({e.filename} is missing)") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{d / 'ca-key.pem'} is not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(name, ca_cert.subject, key.public_key(), ca_key, ca=False, days=days)
    return [_write(d / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            _write(d / f"{name}-key.pem", _key_pem(key), private=True)]


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Read a PEM certificate."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def party_name(cert: x509.Certificate) -> str:
    """The party a certificate names (its common name)."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise ConfigurationError(f"a party certificate has exactly one common name, this one has {len(attrs)}")
    return str(attrs[0].value)


def _context(purpose: ssl.Purpose, tls_dir: str | os.PathLike[str], name: str) -> ssl.SSLContext:
    d = Path(tls_dir)
    name = check_name(name)
    missing = [p for p in (d / "ca.pem", d / f"{name}.pem", d / f"{name}-key.pem") if not p.exists()]
    if missing:
        raise ConfigurationError(f"no certificate for party {name!r} in {d}: missing {', '.join(map(str, missing))} "
                                 f"(make them with: python -m refimpl certs --out {d} {name} ...)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(d / "ca.pem"))
    ctx.load_cert_chain(str(d / f"{name}.pem"), str(d / f"{name}-key.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if purpose is ssl.Purpose.SERVER_AUTH:
        ctx.check_hostname = False  # parties are named by certificate, not by DNS: peer_name() checks the name
    return ctx


def server_context(tls_dir: str | os.PathLike[str], name: str) -> ssl.SSLContext:
    """TLS 1.3 context of a listening party ``name``: presents its certificate, requires one from every peer."""
    return _context(ssl.Purpose.CLIENT_AUTH, tls_dir, name)


def client_context(tls_dir: str | os.PathLike[str], name: str) -> ssl.SSLContext:
    """TLS 1.3 context of party ``name`` connecting out: presents its certificate, verifies the server's."""
    return _context(ssl.Purpose.SERVER_AUTH, tls_dir, name)


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The party name in the verified certificate of the other end of a TLS connection (None without TLS)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for pair in rdn:
            if pair[0] == "commonName":
                return str(pair[1])
    return None


def main(argv: list[str]) -> int:
    """``python -m refimpl certs --out DIR NAME [NAME ...]``: a deployment CA and a certificate per party."""
    import argparse

    p = argparse.ArgumentParser(prog="refimpl certs", description="Make a deployment CA and one certificate + key "
                                "per party (mutual TLS between parties).")
    p.add_argument("--out", required=True, help="directory to write (ca.pem, ca-key.pem, NAME.pem, NAME-key.pem)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--add", action="store_true", help="add parties to the existing CA in --out")
    p.add_argument("names", nargs="+", help="party names, e.g. jake john secure_worker crypto_provider me")
    args = p.parse_args(argv)
    try:
        if args.add:
            files = [f for n in args.names for f in add_party(args.out, n, days=args.days)]
        else:
            files = make_deployment(args.out, args.names, days=args.days)
    except ConfigurationError as e:
        print(f"refimpl certs: {e}")
        return 2
    for f in files:
        print(f)
    print("give each party its NAME.pem, NAME-key.pem and ca.pem; keep ca-key.pem offline")
    return 0
