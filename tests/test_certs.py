"""Certificate logic: names, chains (verified by cryptography's RFC 5280 verifier and by a real OpenSSL
handshake), CA bundle merging across rotations, and renewal decisions."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from wfboost.tls.certs import (
    CLOCK_SKEW,
    CertificateError,
    CertKeyPair,
    cert_names,
    check_pair,
    create_ca,
    create_serving_cert,
    is_ca,
    is_expired,
    is_signed_by,
    load_certificate,
    merge_ca_bundle,
    needs_renewal,
    parse_pem_bundle,
    service_names,
)

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
SVC = "wfboost.wfboost.svc"


def verify(ca: CertKeyPair, leaf: CertKeyPair, name: x509.GeneralName, at: datetime.datetime = NOW) -> None:
    verifier = (
        PolicyBuilder().store(Store([ca.certificate])).time(at).build_server_verifier(name)  # type: ignore[arg-type]
    )
    verifier.verify(leaf.certificate, [])


def handshake(ca_bundle: bytes, leaf: CertKeyPair, hostname: str, tmp_path: Path) -> x509.Certificate:
    """A full TLS handshake through OpenSSL, in memory: what a client that trusts `ca_bundle` accepts."""
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_ctx = ssl.create_default_context(cadata=ca_bundle.decode())
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    return x509.load_der_x509_certificate(client.getpeercert(binary_form=True) or b"")


def test_service_names_cover_every_form_of_the_service() -> None:
    names = service_names("wfboost", "ns", extra_dns=["localhost", "wfboost"], extra_ips=["127.0.0.1", "::1"])
    svc = "wfboost.ns.svc"
    assert names.dns == ("wfboost", "wfboost.ns", svc, f"{svc}.cluster.local", "localhost")
    assert names.ips == ("127.0.0.1", "::1")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        service_names("wfboost", "ns", extra_ips=["not-an-ip"])


def test_ca_is_a_ca_that_can_only_sign_leaves() -> None:
    ca = create_ca(now=NOW)
    cert = ca.certificate
    assert is_ca(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert is_signed_by(cert, cert)  # self-signed
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=3650)
    check_pair(ca)


def test_serving_certificate_names_and_chain() -> None:
    ca = create_ca(now=NOW)
    names = service_names("wfboost", "wfboost", extra_dns=["localhost"], extra_ips=["127.0.0.1"])
    leaf = create_serving_cert(ca, names, now=NOW)
    cert = leaf.certificate
    assert cert_names(cert).matches(names)
    assert set(cert_names(cert).dns) == {
        "wfboost",
        "wfboost.wfboost",
        SVC,
        "wfboost.wfboost.svc.cluster.local",
        "localhost",
    }
    assert not is_ca(cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert is_signed_by(cert, ca.certificate)
    for dns in names.dns:
        verify(ca, leaf, x509.DNSName(dns))
    verify(ca, leaf, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def test_chain_rejects_other_names_other_cas_and_expired_leaves() -> None:
    ca, other_ca = create_ca(now=NOW), create_ca(now=NOW)
    leaf = create_serving_cert(ca, service_names("wfboost", "wfboost"), validity=10 * DAY, now=NOW)
    with pytest.raises(VerificationError):
        verify(ca, leaf, x509.DNSName("wfboost.other.svc"))
    with pytest.raises(VerificationError):
        verify(other_ca, leaf, x509.DNSName(SVC))
    with pytest.raises(VerificationError):
        verify(ca, leaf, x509.DNSName(SVC), at=NOW + 11 * DAY)
    assert not is_signed_by(leaf.certificate, other_ca.certificate)


def test_openssl_accepts_the_chain_with_a_two_ca_bundle(tmp_path: Path) -> None:
    old_ca, new_ca = create_ca(), create_ca()
    names = service_names("wfboost", "wfboost", extra_ips=["127.0.0.1"])
    bundle = merge_ca_bundle(old_ca.cert_pem, new_ca.cert_pem, datetime.datetime.now(datetime.UTC))
    for ca in (old_ca, new_ca):
        leaf = create_serving_cert(ca, names)
        presented = handshake(bundle, leaf, SVC, tmp_path)
        assert presented.serial_number == leaf.certificate.serial_number
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(old_ca.cert_pem, create_serving_cert(new_ca, names), SVC, tmp_path)


def test_serving_certificate_never_outlives_its_ca() -> None:
    ca = create_ca(validity=40 * DAY, now=NOW)
    leaf = create_serving_cert(ca, service_names("a", "b"), validity=365 * DAY, now=NOW)
    assert leaf.not_after == ca.not_after


def test_check_pair_rejects_mismatched_and_broken_material() -> None:
    a = create_serving_cert(create_ca(), service_names("a", "b"))
    b = create_serving_cert(create_ca(), service_names("a", "b"))
    with pytest.raises(CertificateError, match="does not match"):
        check_pair(CertKeyPair(a.cert_pem, b.key_pem))
    with pytest.raises(CertificateError):
        check_pair(CertKeyPair(a.cert_pem[: len(a.cert_pem) // 2], a.key_pem))
    with pytest.raises(CertificateError):
        check_pair(CertKeyPair(a.cert_pem, a.key_pem[:40]))
    with pytest.raises(CertificateError):
        check_pair(CertKeyPair(b"", b""))


def test_parse_pem_bundle() -> None:
    one, two = create_ca(), create_ca()
    assert parse_pem_bundle(b"") == []
    assert parse_pem_bundle(b"\n  \n") == []
    assert [c.serial_number for c in parse_pem_bundle(one.cert_pem + b"\n" + two.cert_pem)] == [
        one.certificate.serial_number,
        two.certificate.serial_number,
    ]
    with pytest.raises(CertificateError):
        parse_pem_bundle(b"garbage")
    with pytest.raises(CertificateError):
        parse_pem_bundle(one.cert_pem + two.cert_pem[:100])
    assert load_certificate(one.cert_pem + two.cert_pem).serial_number == one.certificate.serial_number


def serials(bundle: bytes) -> list[int]:
    return [c.serial_number for c in parse_pem_bundle(bundle)]


def test_merge_keeps_unexpired_old_cas_newest_first_and_drops_expired() -> None:
    expired = create_ca(validity=10 * DAY, now=NOW - 20 * DAY)
    oldest = create_ca(validity=100 * DAY, now=NOW - 50 * DAY)
    older = create_ca(validity=100 * DAY, now=NOW - 5 * DAY)
    new = create_ca(now=NOW)
    existing = oldest.cert_pem + expired.cert_pem + older.cert_pem
    merged = merge_ca_bundle(existing, new.cert_pem, NOW)
    assert serials(merged) == [s.certificate.serial_number for s in (new, older, oldest)]
    # Idempotent: merging again changes nothing, and the new CA already present is not duplicated.
    assert merge_ca_bundle(merged, new.cert_pem, NOW) == merged
    # Once the older CAs expire they leave the bundle.
    assert serials(merge_ca_bundle(merged, new.cert_pem, NOW + 200 * DAY)) == [new.certificate.serial_number]


def test_merge_from_nothing_and_rejects_garbage() -> None:
    new = create_ca(now=NOW)
    assert merge_ca_bundle(b"", new.cert_pem, NOW) == new.cert_pem
    with pytest.raises(CertificateError):
        merge_ca_bundle(b"not pem", new.cert_pem, NOW)
    with pytest.raises(CertificateError):
        merge_ca_bundle(b"", b"", NOW)


def test_renewal_decisions() -> None:
    ca = create_ca(validity=100 * DAY, now=NOW)
    cert = ca.certificate
    window = 30 * DAY
    assert not needs_renewal(cert, NOW, window)
    assert not needs_renewal(cert, NOW + 69 * DAY, window)
    assert needs_renewal(cert, NOW + 70 * DAY, window)  # exactly at the window's edge
    assert needs_renewal(cert, NOW + 101 * DAY, window)
    assert needs_renewal(cert, NOW - 1 * DAY, window)  # not valid yet: a clock went backwards
    assert not is_expired(cert, NOW + 99 * DAY)
    assert is_expired(cert, NOW + 100 * DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        needs_renewal(cert, datetime.datetime(2030, 1, 1), window)
