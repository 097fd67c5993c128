"""Serving TLS with certificates that change under a running server.

Certificates reach the pod as a mounted Secret (from `wfboost certs` or cert-manager). The kubelet updates
such a mount by writing a new timestamped directory and atomically swapping the `..data` symlink, and
inotify on the visible names does not see that reliably; other tools replace files one at a time. So the
reloader polls: every tick it reads the two files and compares a hash of their content, which catches every
way of changing them, including a change back to earlier bytes, and costs two small reads.

The server is started once with `CertificateReloader.context`; new material is loaded into that same
`ssl.SSLContext`. OpenSSL copies the certificate into each connection when the connection is created, so
connections already open keep the certificate they negotiated and only new handshakes see the new one: no
listener restart, no dropped request.

Loading is the dangerous step. `load_cert_chain` installs the certificate before it checks the key, and when
the key does not match OpenSSL has already replaced the certificate and discarded the old key, leaving a
context that cannot complete any handshake. So the pair is fully validated in memory first (both parse, key
matches certificate) and only exactly those validated bytes are handed to OpenSSL, through an anonymous
in-memory file, never by re-opening the mounted paths, which may have changed in between. A file caught
half-written, a key written before its certificate, or a missing file keeps the old material, is logged once,
and is retried on the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wfboost.tls.certs import CertificateError, CertKeyPair, check_pair, fingerprint, is_expired

log = logging.getLogger(__name__)

DEFAULT_CERT_NAME = "tls.crt"  # the key names of `kubernetes.io/tls` Secrets, which cert-manager also writes
DEFAULT_KEY_NAME = "tls.key"

# How often a torn read (the symlink swapped between reading the certificate and the key) is retried at once,
# before giving up until the next tick.
_STABLE_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class LoadedCertificate:
    """What the server currently presents; read by /readyz, /metrics and the logs."""

    serial: int
    fingerprint: str  # SHA-256 of the leaf's DER, hex
    not_after: datetime.datetime
    subject: str


def new_server_context() -> ssl.SSLContext:
    """A server-side context with Python's secure defaults and nothing older than TLS 1.2
    (the API server speaks 1.2 and 1.3; anything older is a misconfigured client)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class CertificateReloader:
    """Owns the server's one `ssl.SSLContext` and keeps its certificate in step with two files.

    Plain attributes, read by the metrics and health modules: `loaded`, `current` (serial, fingerprint,
    expiry), `reloads` (successful loads of new material, the first one included), `reload_errors` (distinct
    unusable contents seen; the same bad bytes on every tick count once), `last_error`.
    `on_change`, if given, is called after each successful load and each new error.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cert_name: str = DEFAULT_CERT_NAME,
        key_name: str = DEFAULT_KEY_NAME,
        context: ssl.SSLContext | None = None,
        on_change: Callable[[CertificateReloader], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.cert_path = self.directory / cert_name
        self.key_path = self.directory / key_name
        self.context = context if context is not None else new_server_context()
        self.on_change = on_change
        self.loaded = False
        self.current: LoadedCertificate | None = None
        self.reloads = 0
        self.reload_errors = 0
        self.last_error: str | None = None
        self._loaded_digest: bytes | None = None
        self._loaded_pair: CertKeyPair | None = None
        self._failed_digest: bytes | None = None

    @property
    def not_after(self) -> datetime.datetime | None:
        return self.current.not_after if self.current else None

    def not_after_timestamp(self) -> float:
        """The expiry as Unix time for the `wfboost_tls_certificate_not_after_seconds` gauge; 0 before a load."""
        return self.current.not_after.timestamp() if self.current else 0.0

    @property
    def serial(self) -> int | None:
        return self.current.serial if self.current else None

    @property
    def fingerprint(self) -> str | None:
        return self.current.fingerprint if self.current else None

    def check_now(self) -> bool:
        """Load the files if their content changed and is usable. True when new material was loaded."""
        try:
            pair = self._read_pair()
        except OSError as exc:
            message = f"cannot read {exc.filename or self.directory}: {exc.strerror or exc}"
            self._fail(b"os-error:" + message.encode(), message)
            return False
        digest = hashlib.sha256(len(pair.cert_pem).to_bytes(8, "big") + pair.cert_pem + pair.key_pem).digest()
        if digest == self._loaded_digest:
            self._failed_digest = None
            return False
        try:
            cert = check_pair(pair)
        except CertificateError as exc:
            self._fail(digest, f"{self.cert_path} / {self.key_path}: {exc}")
            return False
        try:
            _load_chain(self.context, pair)
        except (ssl.SSLError, OSError) as exc:
            # Validated bytes should always load; if OpenSSL still refuses them, the context may be half
            # updated, so put the previous pair back before reporting.
            if self._loaded_pair is not None:
                _load_chain(self.context, self._loaded_pair)
            self._fail(digest, f"OpenSSL refused {self.cert_path}: {exc}")
            return False
        previous = self.current
        self.current = LoadedCertificate(
            serial=cert.serial_number,
            fingerprint=fingerprint(cert),
            not_after=cert.not_valid_after_utc,
            subject=cert.subject.rfc4514_string(),
        )
        self._loaded_digest, self._loaded_pair, self._failed_digest = digest, pair, None
        self.loaded = True
        self.reloads += 1
        self.last_error = None
        log.info(
            "%s TLS certificate serial %x (sha256 %s, expires %s)%s",
            "loaded" if previous is None else "reloaded",
            self.current.serial,
            self.current.fingerprint[:16],
            self.current.not_after.isoformat(),
            f", replacing serial {previous.serial:x}" if previous else "",
        )
        if is_expired(cert, datetime.datetime.now(datetime.UTC)):
            log.warning("the TLS certificate in %s has expired: clients will refuse it", self.cert_path)
        self._notify()
        return True

    async def run(self, interval: float = 10.0) -> None:
        """Poll forever; cancel the task to stop. Errors never end the loop: a certificate that cannot be
        read now may be fine on the next tick, and the server keeps serving the last good one meanwhile."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_now()
            except Exception:  # a bug here must not stop rotation for the life of the pod
                log.exception("certificate check failed")

    def _read_pair(self) -> CertKeyPair:
        # Read certificate, key, certificate: if the two certificate reads differ, a swap happened in the
        # middle and the key may belong to either; read again rather than report a spurious mismatch.
        for _ in range(_STABLE_READ_ATTEMPTS):
            cert = self.cert_path.read_bytes()
            key = self.key_path.read_bytes()
            if self.cert_path.read_bytes() == cert:
                break
        return CertKeyPair(cert_pem=cert, key_pem=key)

    def _fail(self, digest: bytes, message: str) -> None:
        if digest == self._failed_digest:
            return  # same bad content as last tick: already counted and logged
        self._failed_digest = digest
        self.reload_errors += 1
        self.last_error = message
        if self.loaded:
            log.warning("keeping the current TLS certificate: %s", message)
        else:
            log.error("no usable TLS certificate yet: %s", message)
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                log.exception("certificate change callback failed")


def _load_chain(context: ssl.SSLContext, pair: CertKeyPair) -> None:
    with _in_memory_file(pair.cert_pem) as cert_path, _in_memory_file(pair.key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)


@contextlib.contextmanager
def _in_memory_file(content: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds exactly `content`.

    On Linux an anonymous memfd, so nothing is written to disk and a read-only root filesystem is fine;
    elsewhere (developer machines) a private temporary file that is removed at once.
    """
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("wfboost-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="wfboost-tls-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        os.unlink(path)
