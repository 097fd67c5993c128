"""`wfboost certs`: make, keep and publish the webhook's certificates without cert-manager.

One pass reconciles three places: where the certificates are kept (a directory and/or a `kubernetes.io/tls`
Secret, which also keeps the CA key so that the next pass can sign with the same CA), and the `caBundle` of
each named MutatingWebhookConfiguration. Every step compares before it writes, so running the command again,
from a CronJob or a Helm hook, changes nothing until something is due: that is what makes it safe to run
often, and running it often is what makes renewal happen.

Rotation keeps trust continuous. A new CA is published into `caBundle` next to every older CA that has not
expired, before any pod presents a certificate from it, and the old CA leaves the bundle only once it has
expired; meanwhile the pods pick up the new Secret content by themselves (`wfboost.tls.reloader`).
"""

from __future__ import annotations

import base64
import datetime
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from wfboost.kube import JsonObject, KubeApiError, KubeClient, resource_path
from wfboost.structs.patch import AddOp, ReplaceOp
from wfboost.tls.certs import (
    CertificateError,
    CertKeyPair,
    SubjectNames,
    cert_names,
    check_pair,
    create_ca,
    create_serving_cert,
    is_ca,
    is_signed_by,
    merge_ca_bundle,
    needs_renewal,
    parse_pem_bundle,
    service_names,
)

# File names, also the Secret's keys: the `kubernetes.io/tls` pair plus the CA, as cert-manager lays them out.
CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
_SECRET_MODE, _PUBLIC_MODE = 0o600, 0o644

StepAction = Literal["created", "renewed", "issued", "reissued", "reused", "written", "updated", "unchanged"]


class CertsError(Exception):
    """Something `wfboost certs` cannot do with the options or cluster it was given (one line for the CLI)."""


class TestOp(TypedDict):
    """JSON Patch `test` (RFC 6902): makes the patch fail instead of landing on an object that changed
    between our GET and our PATCH."""

    op: Literal["test"]
    path: str
    value: Any


CaBundlePatchOp = AddOp | ReplaceOp | TestOp


@dataclass(frozen=True)
class CertsConfig:
    service: str = "wfboost"
    namespace: str = "wfboost"
    out_dir: Path | None = None
    secret: str | None = None
    webhook_configs: tuple[str, ...] = ()
    extra_dns: tuple[str, ...] = ()
    extra_ips: tuple[str, ...] = ()
    ca_validity: datetime.timedelta = datetime.timedelta(days=3650)
    cert_validity: datetime.timedelta = datetime.timedelta(days=365)
    renew_before: datetime.timedelta = datetime.timedelta(days=30)

    @property
    def needs_api(self) -> bool:
        return bool(self.secret or self.webhook_configs)

    def names(self) -> SubjectNames:
        return service_names(self.service, self.namespace, extra_dns=self.extra_dns, extra_ips=self.extra_ips)

    def validate(self) -> None:
        if self.out_dir is None and self.secret is None:
            raise CertsError("nowhere to keep the CA: give an output directory and/or a Secret name")
        for what, validity in (("CA", self.ca_validity), ("serving certificate", self.cert_validity)):
            if validity <= self.renew_before:
                # Otherwise every run would find the fresh certificate already due and make another one.
                raise CertsError(
                    f"{what} validity ({validity.days}d) must be longer than renew-before ({self.renew_before.days}d)"
                )
        try:
            self.names()
        except ValueError as exc:
            raise CertsError(f"bad --extra-ip: {exc}") from None


@dataclass(frozen=True)
class Step:
    """One thing the run looked at, and what it did about it (one line of CLI output)."""

    target: str
    action: StepAction
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.action not in ("reused", "unchanged")

    def __str__(self) -> str:
        return f"{self.target}: {self.action}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class InstallResult:
    ca: CertKeyPair = field(repr=False)
    serving: CertKeyPair = field(repr=False)
    steps: tuple[Step, ...]

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


@dataclass(frozen=True)
class StoredMaterial:
    """What an earlier run left behind; either part may be missing (first run, or a hand-edited store)."""

    ca: CertKeyPair | None = None
    serving: CertKeyPair | None = None
    where: str = ""


# --- decisions (pure) ---------------------------------------------------------------------------------------


def _day(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def choose_ca(stored: CertKeyPair | None, options: CertsConfig, now: datetime.datetime) -> tuple[CertKeyPair, Step]:
    """Keep the stored CA while it stays valid beyond renew-before; otherwise make a new one (and say why)."""
    reason = "none stored"
    action: StepAction = "created"
    if stored is not None:
        try:
            cert = check_pair(stored)
        except CertificateError as exc:
            reason = f"stored CA unusable: {exc}"
        else:
            if not is_ca(cert):
                reason = "stored certificate is not a CA"
            elif needs_renewal(cert, now, options.renew_before):
                action, reason = "renewed", f"old CA expires {_day(cert.not_valid_after_utc)}"
            else:
                return stored, Step("CA", "reused", f"expires {_day(cert.not_valid_after_utc)}")
    ca = create_ca(validity=options.ca_validity, now=now)
    return ca, Step("CA", action, f"{reason}; new CA expires {_day(ca.not_after)}")


def choose_serving_cert(
    stored: CertKeyPair | None, ca: CertKeyPair, options: CertsConfig, now: datetime.datetime
) -> tuple[CertKeyPair, Step]:
    """Keep the stored serving certificate only if it is usable, from `ca`, for exactly the wanted names,
    and not due for renewal."""
    names = options.names()
    reason = "none stored"
    action: StepAction = "issued"
    if stored is not None:
        action = "reissued"
        try:
            cert = check_pair(stored)
        except CertificateError as exc:
            reason = f"stored certificate unusable: {exc}"
        else:
            if not is_signed_by(cert, ca.certificate):
                reason = "signed by another CA"
            elif not cert_names(cert).matches(names):
                reason = "names differ"
            elif needs_renewal(cert, now, options.renew_before):
                reason = f"old one expires {_day(cert.not_valid_after_utc)}"
            else:
                expires = _day(cert.not_valid_after_utc)
                return stored, Step("serving certificate", "reused", f"expires {expires}")
    serving = create_serving_cert(ca, names, validity=options.cert_validity, now=now)
    others = len(names.dns) + len(names.ips) - 1
    detail = f"{reason}; for {options.service}.{options.namespace}.svc and {others} other names"
    return serving, Step("serving certificate", action, f"{detail}; expires {_day(serving.not_after)}")


def build_ca_bundle_patch(
    configuration: Mapping[str, Any], ca_pem: bytes, now: datetime.datetime
) -> tuple[list[CaBundlePatchOp], str]:
    """JSON Patch operations that make every webhook of `configuration` trust `ca_pem` (plus the CAs it
    already trusts that are still valid), and a summary for humans.

    Built against the object as read: `replace` where `caBundle` exists, `add` where it does not (a
    `replace` of a missing member fails the whole patch), each guarded by a `test` of the webhook's name, and
    the whole by a `test` of the resourceVersion, so a concurrent edit makes the patch fail rather than
    land on the wrong webhook. No operations when every bundle is already right.
    """
    ops: list[CaBundlePatchOp] = []
    rv = (configuration.get("metadata") or {}).get("resourceVersion")
    webhooks: Sequence[Mapping[str, Any]] = configuration.get("webhooks") or []
    sizes: set[int] = set()
    for index, webhook in enumerate(webhooks):
        client_config = webhook.get("clientConfig")
        current = client_config.get("caBundle") if isinstance(client_config, Mapping) else None
        try:
            existing = base64.b64decode(current or "", validate=True)
            merged = merge_ca_bundle(existing, ca_pem, now)
        except (ValueError, CertificateError):
            merged = merge_ca_bundle(b"", ca_pem, now)  # unreadable: the API server cannot use it either
        sizes.add(len(parse_pem_bundle(merged)))
        wanted = base64.b64encode(merged).decode("ascii")
        if wanted == current:
            continue
        base = f"/webhooks/{index}"
        ops.append({"op": "test", "path": f"{base}/name", "value": webhook.get("name")})
        if not isinstance(client_config, Mapping):
            ops.append({"op": "add", "path": f"{base}/clientConfig", "value": {"caBundle": wanted}})
        elif "caBundle" in client_config:
            ops.append({"op": "replace", "path": f"{base}/clientConfig/caBundle", "value": wanted})
        else:
            ops.append({"op": "add", "path": f"{base}/clientConfig/caBundle", "value": wanted})
    if ops and rv:
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": rv})
    changed = sum(1 for op in ops if op["op"] != "test")
    trusted = "/".join(str(n) for n in sorted(sizes)) or "0"
    if not webhooks:
        return ops, "no webhooks"
    if not ops:
        return ops, f"{len(webhooks)} webhook(s) already trust the CA; {trusted} CA(s) in bundle"
    return ops, f"caBundle of {changed} of {len(webhooks)} webhook(s) set; {trusted} CA(s) in bundle"


# --- stores -------------------------------------------------------------------------------------------------


def read_directory(directory: Path) -> StoredMaterial:
    def pair(cert_name: str, key_name: str) -> CertKeyPair | None:
        try:
            return CertKeyPair((directory / cert_name).read_bytes(), (directory / key_name).read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CertsError(f"cannot read {exc.filename}: {exc.strerror}") from None

    return StoredMaterial(ca=pair(CA_CERT, CA_KEY), serving=pair(TLS_CERT, TLS_KEY), where=str(directory))


def write_directory(directory: Path, ca: CertKeyPair, serving: CertKeyPair) -> Step:
    """Write the four files, each atomically and only if its content changed (an unchanged file keeps its
    mtime, and a reloading server sees no change). The CA comes first so that a reader never finds a
    serving certificate whose CA file it cannot yet read."""
    files = (
        (CA_CERT, ca.cert_pem, _PUBLIC_MODE),
        (CA_KEY, ca.key_pem, _SECRET_MODE),
        (TLS_KEY, serving.key_pem, _SECRET_MODE),
        (TLS_CERT, serving.cert_pem, _PUBLIC_MODE),
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = [name for name, data, mode in files if _write_if_changed(directory / name, data, mode)]
    except OSError as exc:
        raise CertsError(f"cannot write {exc.filename or directory}: {exc.strerror or exc}") from None
    target = f"directory {directory}"
    return Step(target, "written", ", ".join(written)) if written else Step(target, "unchanged")


def _write_if_changed(path: Path, content: bytes, mode: int) -> bool:
    try:
        if path.read_bytes() == content:
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # before any byte of a key is written
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def material_from_secret(secret: Mapping[str, Any] | None, where: str) -> StoredMaterial:
    if secret is None:
        return StoredMaterial(where=where)
    data: Mapping[str, str] = secret.get("data") or {}

    def pair(cert_key: str, key_key: str) -> CertKeyPair | None:
        if not data.get(cert_key) or not data.get(key_key):
            return None
        try:
            return CertKeyPair(base64.b64decode(data[cert_key]), base64.b64decode(data[key_key]))
        except ValueError:
            return CertKeyPair(b"", b"")  # present but garbled: choose_* reports it as unusable

    return StoredMaterial(ca=pair(CA_CERT, CA_KEY), serving=pair(TLS_CERT, TLS_KEY), where=where)


def _secret_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "secrets", namespace, name)


async def read_secret(kube: KubeClient, namespace: str, name: str) -> JsonObject | None:
    try:
        return await kube.get(_secret_path(namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise


async def apply_secret(
    kube: KubeClient,
    namespace: str,
    name: str,
    existing: Mapping[str, Any] | None,
    ca: CertKeyPair,
    serving: CertKeyPair,
) -> Step:
    """Create the Secret, or merge-patch only the keys whose content differs (other keys, labels and
    annotations that someone else put on the Secret stay)."""
    wanted = {
        TLS_CERT: _b64(serving.cert_pem),
        TLS_KEY: _b64(serving.key_pem),
        CA_CERT: _b64(ca.cert_pem),
        CA_KEY: _b64(ca.key_pem),
    }
    target = f"Secret {namespace}/{name}"
    if existing is None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/name": "wfboost",
                    "app.kubernetes.io/managed-by": "wfboost-certs",
                },
            },
            "type": "kubernetes.io/tls",
            "data": wanted,
        }
        await kube.create(_secret_path(namespace), body)
        return Step(target, "created", ", ".join(wanted))
    current: Mapping[str, str] = existing.get("data") or {}
    changes = {key: value for key, value in wanted.items() if current.get(key) != value}
    if not changes:
        return Step(target, "unchanged")
    await kube.patch(_secret_path(namespace, name), {"data": changes}, "merge")
    return Step(target, "updated", ", ".join(changes))


async def apply_ca_bundle(kube: KubeClient, name: str, ca_pem: bytes, now: datetime.datetime) -> Step:
    """GET the configuration, PATCH its caBundles; on a concurrent change (a `test` op fails), read again."""
    path = resource_path("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", name=name)
    target = f"MutatingWebhookConfiguration {name}"
    attempts = 3
    for attempt in range(attempts):
        try:
            configuration = await kube.get(path)
        except KubeApiError as exc:
            if exc.status == 404:
                raise CertsError(f"{target} not found (install the webhook manifests first)") from None
            raise
        ops, summary = build_ca_bundle_patch(configuration, ca_pem, now)
        if not ops:
            return Step(target, "unchanged", summary)
        try:
            await kube.patch(path, ops, "json")
        except KubeApiError as exc:
            if exc.status in (409, 422, 500) and attempt + 1 < attempts:
                continue
            raise
        return Step(target, "updated", summary)
    raise AssertionError("unreachable")  # the loop returns or raises


# --- the command --------------------------------------------------------------------------------------------


async def install_certificates(
    options: CertsConfig, kube: KubeClient | None = None, *, now: datetime.datetime | None = None
) -> InstallResult:
    """Reconcile certificates, their store(s) and the webhook configurations; see the module docstring.

    The Secret, when named, is the source of truth (it is what the pods mount); the directory is then an
    export. Without a Secret the directory is both source and destination (local runs, tests, the demo).
    """
    options.validate()
    if options.needs_api and kube is None:
        raise CertsError("a Kubernetes client is needed for --secret and --webhook-config")
    at = now or datetime.datetime.now(datetime.UTC)
    secret: JsonObject | None = None
    if options.secret is not None:
        assert kube is not None
        secret = await read_secret(kube, options.namespace, options.secret)
        stored = material_from_secret(secret, f"Secret {options.namespace}/{options.secret}")
    else:
        assert options.out_dir is not None
        stored = read_directory(options.out_dir)

    ca, ca_step = choose_ca(stored.ca, options, at)
    serving, serving_step = choose_serving_cert(stored.serving, ca, options, at)
    steps = [ca_step, serving_step]
    # The CA into every caBundle first, the certificate it signed into the Secret after: should this pass stop in
    # between, the pods still present a certificate the bundle trusts (the old one, whose CA stays in it).
    for name in options.webhook_configs:
        assert kube is not None
        steps.append(await apply_ca_bundle(kube, name, ca.cert_pem, at))
    if options.secret is not None:
        assert kube is not None
        steps.append(await apply_secret(kube, options.namespace, options.secret, secret, ca, serving))
    if options.out_dir is not None:
        steps.append(write_directory(options.out_dir, ca, serving))
    return InstallResult(ca=ca, serving=serving, steps=tuple(steps))
