"""Certificate material for the webhook: a private CA, serving certificates, CA bundles.

Pure functions over PEM bytes (no files, no Kubernetes), so that `wfboost certs`, the tests and anything else
that needs a certificate share one implementation whose decisions can be checked without I/O.

Keys are ECDSA P-256 rather than RSA 2048: the API server (Go's crypto/tls), kubelet probes, cert-manager and
every TLS client wfboost meets accept them; key generation takes microseconds instead of the tens of
milliseconds RSA needs (which matters when tests mint dozens of certificates); signatures and handshakes are
cheaper on the admission hot path; and the PEM fits comfortably in a caBundle that may hold several CAs.

Time is an argument (`now`, timezone-aware) rather than read from the clock inside decisions, so that renewal
and expiry can be tested at any date; only minting defaults to the current time.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CLUSTER_DOMAIN = "cluster.local"

# Certificates start this far in the past so that a node or API server whose clock is slightly behind ours
# does not reject a certificate minted a moment ago as "not yet valid".
CLOCK_SKEW = datetime.timedelta(minutes=5)

_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_CERT_END = b"-----END CERTIFICATE-----"


class CertificateError(ValueError):
    """PEM material that cannot be used: unparsable, mismatched, or not what its role requires."""


@dataclass(frozen=True)
class CertKeyPair:
    """A certificate and its private key, both PEM, as they are written to files and Secrets.

    Kept as bytes (not parsed objects) because every consumer, `ssl.SSLContext.load_cert_chain`, a Secret's
    `data` and a webhook's `caBundle`, wants PEM; parsing happens on demand through the helpers below.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # never in a log line by accident

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_pem)

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class SubjectNames:
    """The subject alternative names a serving certificate must carry (Go checks SANs only, never the CN)."""

    dns: tuple[str, ...]
    ips: tuple[str, ...] = ()

    def matches(self, other: SubjectNames) -> bool:
        """Order-insensitive equality, with IPs compared as addresses so `::1` equals `0:0:…:1`."""
        return set(self.dns) == set(other.dns) and {ipaddress.ip_address(i) for i in self.ips} == {
            ipaddress.ip_address(i) for i in other.ips
        }


def service_names(
    service: str,
    namespace: str,
    *,
    extra_dns: Iterable[str] = (),
    extra_ips: Iterable[str] = (),
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> SubjectNames:
    """Every name under which a Service is reached: the API server dials `<svc>.<ns>.svc`, but clients inside
    the namespace (probes, the demo, humans with port-forwards) use the shorter or fully qualified forms."""
    svc = f"{service}.{namespace}.svc"
    dns = [service, f"{service}.{namespace}", svc, f"{svc}.{cluster_domain}"]
    for name in extra_dns:
        if name not in dns:
            dns.append(name)
    ips: list[str] = []
    for ip in extra_ips:
        text = str(ipaddress.ip_address(ip))  # raises ValueError on garbage, before anything is minted
        if text not in ips:
            ips.append(text)
    return SubjectNames(dns=tuple(dns), ips=tuple(ips))


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKeyTypes) -> bytes:
    # PKCS#8 without a passphrase: what Go's tls.X509KeyPair, OpenSSL and cert-manager all read.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return now.astimezone(datetime.UTC)


def create_ca(
    *,
    validity: datetime.timedelta = datetime.timedelta(days=3650),
    common_name: str = "wfboost-ca",
    now: datetime.datetime | None = None,
) -> CertKeyPair:
    """A self-signed CA allowed to sign leaf certificates only (path length 0).

    The CN gets a `@<unix time>` suffix, the convention Kubernetes uses for its own self-signed CAs, so that
    the old and new CA in a rotated caBundle can be told apart by a human reading `openssl x509` output.
    """
    start = _utc(now)
    key = new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}@{int(start.timestamp())}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def create_serving_cert(
    ca: CertKeyPair,
    names: SubjectNames,
    *,
    validity: datetime.timedelta = datetime.timedelta(days=365),
    now: datetime.datetime | None = None,
) -> CertKeyPair:
    """A TLS server certificate for `names`, signed by `ca`.

    The expiry is clamped to the CA's: a leaf that outlives its issuer fails verification on the day the CA
    expires, so promising more would only hide the real deadline from renewal checks.
    """
    if not names.dns and not names.ips:
        raise CertificateError("a serving certificate needs at least one DNS name or IP address")
    start = _utc(now)
    ca_cert = load_certificate(ca.cert_pem)
    ca_key = load_private_key(ca.key_pem)
    # A CA made elsewhere (cert-manager, an operator's own PKI) may well be RSA.
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"unsupported CA key type {type(ca_key).__name__}")
    if not public_keys_match(ca_cert, ca_key):
        raise CertificateError("the CA key does not belong to the CA certificate")
    key = new_private_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in names.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in names.ips]
    # Verifiers ignore the CN when SANs exist; it is only a label for humans, and X.509 caps it at 64 chars.
    subject_cn = (names.dns or names.ips)[0][:64]
    not_after = min(start + validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,  # ECDHE with ECDSA keys never encrypts to the key
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_subject_key_id(ca_cert, ca_key)),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _subject_key_id(ca_cert: x509.Certificate, ca_key: PrivateKeyTypes) -> x509.SubjectKeyIdentifier:
    # The leaf's AKI must equal the CA's SKI byte for byte (verifiers use it to pick the issuer among CAs with
    # the same name), so reuse the CA's own extension; compute it only for a CA that lacks one.
    try:
        return ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())  # type: ignore[arg-type]


# --- parsing ----------------------------------------------------------------------------------------------


def load_certificate(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM file (a leaf followed by its chain is the usual layout)."""
    certs = parse_pem_bundle(pem)
    if not certs:
        raise CertificateError("no PEM certificate found")
    return certs[0]


def parse_pem_bundle(pem: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, in file order; an empty or whitespace-only bundle is an empty list.

    Strict on purpose: a truncated block (a file caught half-written) must be an error, not a shorter list.
    """
    if _PEM_CERT_BEGIN not in pem:
        if pem.strip():
            raise CertificateError("not a PEM certificate bundle")
        return []
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"unreadable PEM certificate: {exc}") from None
    # The parser skips a block without its END line; a file cut short after its first certificate would
    # otherwise pass as a shorter, valid-looking chain.
    if not pem.count(_PEM_CERT_BEGIN) == pem.count(_PEM_CERT_END) == len(certs):
        raise CertificateError("truncated PEM certificate bundle")
    return certs


def load_private_key(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"unreadable PEM private key: {exc}") from None


def public_keys_match(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """Whether `key` is the private half of `cert`; compared as SubjectPublicKeyInfo DER, which is exact."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, fmt) == key.public_key().public_bytes(der, fmt))


def check_pair(pair: CertKeyPair) -> x509.Certificate:
    """The parsed certificate if `pair` is usable for TLS (both parse and the key matches), else an error."""
    cert = load_certificate(pair.cert_pem)
    if not public_keys_match(cert, load_private_key(pair.key_pem)):
        raise CertificateError("the private key does not match the certificate")
    return cert


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, hex: the identity `openssl x509 -fingerprint -sha256` shows, minus the colons."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_names(cert: x509.Certificate) -> SubjectNames:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SubjectNames(dns=())
    return SubjectNames(
        dns=tuple(san.get_values_for_type(x509.DNSName)),
        ips=tuple(str(i) for i in san.get_values_for_type(x509.IPAddress)),
    )


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `cert` (issuer name and signature both checked)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --- time ---------------------------------------------------------------------------------------------------


def is_expired(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return _utc(now) >= cert.not_valid_after_utc


def needs_renewal(cert: x509.Certificate, now: datetime.datetime, renew_before: datetime.timedelta) -> bool:
    """Renew inside the `renew_before` window before expiry, and also when the certificate is not valid yet
    (a clock that jumped back, or a certificate minted on a machine with a fast clock)."""
    at = _utc(now)
    return at + renew_before >= cert.not_valid_after_utc or at < cert.not_valid_before_utc


def merge_ca_bundle(existing_bundle_pem: bytes, new_ca_pem: bytes, now: datetime.datetime) -> bytes:
    """The CA bundle to publish after rotating to `new_ca_pem`.

    Holds the new CA(s) first, then every certificate of the existing bundle that has not expired yet, newest
    first, each once. Keeping the old CA is what makes rotation safe: until every replica of the webhook
    serves a certificate from the new CA (Secrets reach pods after a kubelet sync, tens of seconds later), the
    API server still meets certificates from the old one. Expired CAs are dropped because they can no longer
    verify anything and would only grow the bundle on every rotation.
    """
    at = _utc(now)
    new = parse_pem_bundle(new_ca_pem)
    if not new:
        raise CertificateError("the new CA bundle holds no certificate")
    old = [c for c in parse_pem_bundle(existing_bundle_pem) if at < c.not_valid_after_utc]
    old.sort(key=lambda c: (c.not_valid_before_utc, c.not_valid_after_utc), reverse=True)
    seen: set[bytes] = set()
    out: list[bytes] = []
    for cert in [*new, *old]:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def write_local_material(
    serving_dir: Path, ca_file: Path, service: str = "wfboost", namespace: str = "wfboost"
) -> None:
    """A fresh CA and a serving certificate for the Service's names, as files: `tls.crt` and `tls.key` in
    `serving_dir` (what the server mounts) and the CA in `ca_file` (what a caller trusts). For local runs (the demo,
    the benchmark, the tests); in a cluster `wfboost certs` or cert-manager provides them."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    ca = create_ca()
    serving = create_serving_cert(ca, service_names(service, namespace))
    (serving_dir / "tls.crt").write_bytes(serving.cert_pem)
    (serving_dir / "tls.key").write_bytes(serving.key_pem)
    ca_file.write_bytes(ca.cert_pem)
