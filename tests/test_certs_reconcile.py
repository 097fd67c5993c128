"""`wfboost certs` against kmock's stateful Kubernetes emulator (Secret, MutatingWebhookConfiguration) and in
directory mode; rotation is driven by an explicit clock, never by waiting."""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import datetime
import os
import stat
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from wfboost.certs.reconcile import (
    CertsConfig,
    CertsError,
    InstallResult,
    build_ca_bundle_patch,
    install_certificates,
)
from wfboost.cli import certs as certs_cli
from wfboost.kube import KubeClient, KubeConfig
from wfboost.tls.certs import (
    CertKeyPair,
    cert_names,
    check_pair,
    create_ca,
    is_signed_by,
    load_certificate,
    parse_pem_bundle,
    service_names,
)

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
NS = "wfboost"
SECRETS = "v1/secrets"
MWC = "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def webhook_configuration(name: str, *, first_bundle: bytes | None = None) -> dict[str, Any]:
    """Two webhooks, as the manifests ship them: the first may already carry a caBundle, the second has none."""
    service = {"name": "wfboost", "namespace": NS, "path": "/mutate/pods", "port": 443}
    first: dict[str, Any] = {"service": service}
    if first_bundle is not None:
        first["caBundle"] = base64.b64encode(first_bundle).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {"name": "pods.wfboost.io", "clientConfig": first, "sideEffects": "NoneOnDryRun"},
            {"name": "workflows.wfboost.io", "clientConfig": {"service": service}, "sideEffects": "NoneOnDryRun"},
        ],
    }


@pytest.fixture
async def kube(kmock: Any) -> Any:
    async with KubeClient(KubeConfig.from_url(str(kmock.url))) as client:
        yield client


def options(**overrides: Any) -> CertsConfig:
    base: dict[str, Any] = {
        "secret": "wfboost-tls",
        "webhook_configs": ("wfboost",),
        "ca_validity": 100 * DAY,
        "cert_validity": 50 * DAY,
        "renew_before": 20 * DAY,
    }
    base.update(overrides)
    return CertsConfig(**base)


def secret_material(kmock: Any) -> dict[str, bytes]:
    secret = kmock.objects[SECRETS, NS, "wfboost-tls"]
    return {key: base64.b64decode(value) for key, value in dict(secret["data"]).items()}


def bundles(kmock: Any, name: str = "wfboost") -> list[list[int]]:
    """Serials in each webhook's caBundle, in bundle order."""
    configuration = kmock.objects[MWC, None, name]
    return [
        [c.serial_number for c in parse_pem_bundle(base64.b64decode(w["clientConfig"]["caBundle"]))]
        for w in configuration["webhooks"]
    ]


def writes(kmock: Any) -> list[str]:
    return [f"{r.method.value} {r.url.path}" for r in kmock if r.method.value in ("POST", "PUT", "PATCH", "DELETE")]


def serial(pem: bytes) -> int:
    return load_certificate(pem).serial_number


async def test_creates_secret_and_sets_ca_bundle_on_every_webhook(kube: KubeClient, kmock: Any) -> None:
    unrelated_ca = create_ca(validity=365 * DAY, now=NOW)  # another CA the first webhook already trusts
    kmock.objects[MWC, None, "wfboost"] = webhook_configuration("wfboost", first_bundle=unrelated_ca.cert_pem)

    result = await install_certificates(options(), kube, now=NOW)

    assert [(s.target, s.action) for s in result.steps] == [
        ("CA", "created"),
        ("serving certificate", "issued"),
        ("MutatingWebhookConfiguration wfboost", "updated"),  # the CA trusted before a pod can present its leaf
        (f"Secret {NS}/wfboost-tls", "created"),
    ]
    secret = kmock.objects[SECRETS, NS, "wfboost-tls"]
    assert secret["type"] == "kubernetes.io/tls"
    data = secret_material(kmock)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    leaf = check_pair(CertKeyPair(data["tls.crt"], data["tls.key"]))
    ca = check_pair(CertKeyPair(data["ca.crt"], data["ca.key"]))
    assert is_signed_by(leaf, ca)
    assert cert_names(leaf).matches(service_names("wfboost", NS))

    # The new CA first; the other CA the first webhook trusted stays; the second webhook gets the new CA.
    assert bundles(kmock) == [[ca.serial_number, unrelated_ca.certificate.serial_number], [ca.serial_number]]
    untouched = kmock.objects[MWC, None, "wfboost"]["webhooks"][1]
    assert untouched["clientConfig"]["service"]["path"] == "/mutate/pods"
    assert untouched["sideEffects"] == "NoneOnDryRun"


async def test_second_run_changes_nothing(kube: KubeClient, kmock: Any) -> None:
    kmock.objects[MWC, None, "wfboost"] = webhook_configuration("wfboost")
    first = await install_certificates(options(), kube, now=NOW)
    assert first.changed
    done = len(writes(kmock))

    second = await install_certificates(options(), kube, now=NOW + 10 * DAY)
    assert not second.changed
    assert [s.action for s in second.steps] == ["reused", "reused", "unchanged", "unchanged"]
    assert writes(kmock)[done:] == []  # not a single write request
    assert second.ca == first.ca
    assert second.serving == first.serving


async def test_rotation_keeps_old_and_new_ca_until_the_old_expires(kube: KubeClient, kmock: Any) -> None:
    kmock.objects[MWC, None, "wfboost"] = webhook_configuration("wfboost")
    first = await install_certificates(options(), kube, now=NOW)
    old_ca = serial(first.ca.cert_pem)

    # Day 35: the serving certificate (50 days) is inside renew-before (20 days); the CA (100 days) is not.
    renewed = await install_certificates(options(), kube, now=NOW + 35 * DAY)
    assert [s.action for s in renewed.steps] == ["reused", "reissued", "unchanged", "updated"]
    assert serial(renewed.ca.cert_pem) == old_ca
    published = serial(secret_material(kmock)["tls.crt"])
    assert published == serial(renewed.serving.cert_pem) != serial(first.serving.cert_pem)

    # Day 85: the CA itself is about to expire: a new CA, a new serving certificate, both CAs in caBundle.
    rotated = await install_certificates(options(), kube, now=NOW + 85 * DAY)
    assert [s.action for s in rotated.steps] == ["renewed", "reissued", "updated", "updated"]
    secret_write = writes(kmock).index(f"PATCH /api/v1/namespaces/{NS}/secrets/wfboost-tls", len(writes(kmock)) - 2)
    assert writes(kmock)[secret_write - 1].startswith("PATCH /apis/admissionregistration.k8s.io/")
    new_ca = serial(rotated.ca.cert_pem)
    assert new_ca != old_ca
    assert bundles(kmock) == [[new_ca, old_ca], [new_ca, old_ca]]
    data = secret_material(kmock)
    assert serial(data["ca.crt"]) == new_ca
    assert is_signed_by(load_certificate(data["tls.crt"]), load_certificate(data["ca.crt"]))

    # Still day 85: nothing more to do, the old CA stays trusted.
    again = await install_certificates(options(), kube, now=NOW + 85 * DAY)
    assert not again.changed

    # Day 101: the old CA has expired and leaves the bundle; nothing else changes.
    pruned = await install_certificates(options(), kube, now=NOW + 101 * DAY)
    assert [s.action for s in pruned.steps] == ["reused", "reused", "updated", "unchanged"]
    assert bundles(kmock) == [[new_ca], [new_ca]]


async def test_secret_edits_are_repaired_and_other_keys_kept(kube: KubeClient, kmock: Any) -> None:
    await install_certificates(options(webhook_configs=()), kube, now=NOW)
    secret = copy.deepcopy(kmock.objects[SECRETS, NS, "wfboost-tls"].raw)
    secret["data"]["tls.key"] = base64.b64encode(create_ca().key_pem).decode()  # a key for another cert
    secret["data"]["extra"] = base64.b64encode(b"keep me").decode()
    kmock.objects[SECRETS, NS, "wfboost-tls"] = secret

    result = await install_certificates(options(webhook_configs=()), kube, now=NOW)
    assert [str(s) for s in result.steps][1].startswith("serving certificate: reissued (stored certificate unusable")
    assert result.steps[2].action == "updated"
    assert result.steps[2].detail == "tls.crt, tls.key"  # the CA was fine and is kept
    data = secret_material(kmock)
    assert data["extra"] == b"keep me"
    check_pair(CertKeyPair(data["tls.crt"], data["tls.key"]))


async def test_unreadable_ca_bundle_is_replaced(kube: KubeClient, kmock: Any) -> None:
    broken = webhook_configuration("wfboost")
    broken["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(b"not a certificate").decode()
    kmock.objects[MWC, None, "wfboost"] = broken
    result = await install_certificates(options(), kube, now=NOW)
    ca = serial(result.ca.cert_pem)
    assert bundles(kmock) == [[ca], [ca]]


async def test_several_configurations_and_a_missing_one(kube: KubeClient, kmock: Any) -> None:
    kmock.objects[MWC, None, "a"] = webhook_configuration("a")
    kmock.objects[MWC, None, "b"] = webhook_configuration("b")
    result = await install_certificates(options(webhook_configs=("a", "b")), kube, now=NOW)
    assert [s.action for s in result.steps[2:4]] == ["updated", "updated"]
    assert bundles(kmock, "a") == bundles(kmock, "b")
    with pytest.raises(CertsError, match="MutatingWebhookConfiguration absent not found"):
        await install_certificates(options(webhook_configs=("absent",)), kube, now=NOW)


def test_patch_is_built_against_the_object_as_read() -> None:
    ca = create_ca(now=NOW)
    configuration = webhook_configuration("wfboost", first_bundle=create_ca(now=NOW).cert_pem)
    configuration["metadata"]["resourceVersion"] = "812"
    configuration["webhooks"].append({"name": "third.wfboost.io"})  # no clientConfig at all
    ops, summary = build_ca_bundle_patch(configuration, ca.cert_pem, NOW)
    assert [(op["op"], op["path"]) for op in ops] == [
        ("test", "/metadata/resourceVersion"),
        ("test", "/webhooks/0/name"),
        ("replace", "/webhooks/0/clientConfig/caBundle"),
        ("test", "/webhooks/1/name"),
        ("add", "/webhooks/1/clientConfig/caBundle"),
        ("test", "/webhooks/2/name"),
        ("add", "/webhooks/2/clientConfig"),
    ]
    assert "3 of 3 webhook(s)" in summary
    patched = jsonpatch.apply_patch(configuration, ops)  # applies to exactly what was read
    assert build_ca_bundle_patch(patched, ca.cert_pem, NOW)[0] == []  # and converges
    changed = copy.deepcopy(configuration)
    changed["metadata"]["resourceVersion"] = "813"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(changed, ops)  # someone else wrote in between: refuse, re-read, retry


def test_options_are_checked() -> None:
    with pytest.raises(CertsError, match="nowhere to keep"):
        CertsConfig().validate()
    with pytest.raises(CertsError, match="longer than renew-before"):
        CertsConfig(secret="s", ca_validity=10 * DAY, renew_before=30 * DAY).validate()
    with pytest.raises(CertsError, match="extra-ip"):
        CertsConfig(secret="s", extra_ips=("localhost",)).validate()


# --- directory mode ---------------------------------------------------------------------------------------


def dir_options(directory: Path, **overrides: Any) -> CertsConfig:
    base: dict[str, Any] = {"out_dir": directory, "extra_ips": ("127.0.0.1",), "renew_before": 20 * DAY}
    base.update(overrides)
    return CertsConfig(**base)


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mode, p.read_bytes()) for p in sorted(directory.iterdir())}


async def test_directory_mode(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    first = await install_certificates(dir_options(out), now=NOW)
    assert [s.action for s in first.steps] == ["created", "issued", "written"]
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]  # no temp files
    for name, mode in (("ca.key", 0o600), ("tls.key", 0o600), ("ca.crt", 0o644), ("tls.crt", 0o644)):
        assert stat.S_IMODE((out / name).stat().st_mode) == mode, name
    leaf = check_pair(CertKeyPair((out / "tls.crt").read_bytes(), (out / "tls.key").read_bytes()))
    assert "127.0.0.1" in cert_names(leaf).ips
    assert is_signed_by(leaf, load_certificate((out / "ca.crt").read_bytes()))

    before = snapshot(out)
    second = await install_certificates(dir_options(out), now=NOW + DAY)
    assert not second.changed
    assert snapshot(out) == before  # not even rewritten with the same bytes (same inodes)

    # A new name: the serving certificate is reissued under the same CA.
    third = await install_certificates(dir_options(out, extra_dns=("wfboost.example.com",)), now=NOW + DAY)
    assert [s.action for s in third.steps] == ["reused", "reissued", "written"]
    assert third.steps[1].detail.startswith("names differ")
    assert third.steps[2].detail == "tls.key, tls.crt"
    assert snapshot(out)["ca.key"] == before["ca.key"]

    # A lost key: reissued.
    (out / "tls.key").unlink()
    fourth = await install_certificates(dir_options(out, extra_dns=("wfboost.example.com",)), now=NOW + DAY)
    assert fourth.steps[1].action == "issued"


async def test_directory_with_a_foreign_serving_certificate(tmp_path: Path) -> None:
    await install_certificates(dir_options(tmp_path), now=NOW)
    other = await install_certificates(dir_options(tmp_path / "other"), now=NOW)
    os.replace(tmp_path / "other" / "tls.crt", tmp_path / "tls.crt")
    os.replace(tmp_path / "other" / "tls.key", tmp_path / "tls.key")
    result = await install_certificates(dir_options(tmp_path), now=NOW)
    assert result.steps[1].action == "reissued"
    assert result.steps[1].detail.startswith("signed by another CA")
    assert result.serving != other.serving


# --- the command line -------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wfboost")
    certs_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["certs", *argv])


def test_cli_directory_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["--out-dir", str(tmp_path), "--extra-ip", "127.0.0.1", "--cert-days", "90"])
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CA: created")
    assert lines[1].startswith("serving certificate: issued")
    assert lines[2] == f"directory {tmp_path}: written (ca.crt, ca.key, tls.key, tls.crt)"
    assert args.handler(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "nothing to do"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out-dir", "X", "--ca-days", "10", "--renew-before-days", "30"], "must be longer than renew-before"),
        ([], "nowhere to keep the CA"),
        (["--out-dir", "X", "--extra-ip", "nope"], "bad --extra-ip"),
        (["--secret", "s", "--kubeconfig", "/nonexistent/kubeconfig"], "cannot load kubeconfig"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = parse([str(tmp_path) if a == "X" else a for a in argv])
    assert args.handler(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("wfboost certs: ")
    assert message in captured.err


async def test_cli_against_the_api_with_a_kubeconfig(
    kmock: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kmock.objects[MWC, None, "wfboost"] = webhook_configuration("wfboost")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    argv = ["--secret", "wfboost-tls", "--webhook-config", "wfboost", "--kubeconfig", str(tmp_path / "kubeconfig")]
    args = parse(argv)
    # The handler runs its own event loop (as under `wfboost certs`); kmock keeps serving on this one.
    assert await asyncio.to_thread(args.handler, args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("MutatingWebhookConfiguration wfboost: updated (caBundle of 2 of 2 webhook(s) set")
    assert out[3] == f"Secret {NS}/wfboost-tls: created (tls.crt, tls.key, ca.crt, ca.key)"
    assert all(r.headers.get("Authorization") == "Bearer t" for r in kmock)
    assert await asyncio.to_thread(args.handler, args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "nothing to do"


def test_result_is_printable() -> None:
    result = InstallResult(ca=create_ca(), serving=create_ca(), steps=())
    assert not result.changed
    assert "key_pem" not in repr(result)
