"""Hot reload of the policy file, keeping the last good policy when a new one is bad.

A ConfigMap mounted as a volume changes by the kubelet writing a new timestamped directory and swapping the
`..data` symlink to it; the file's own path never changes and inotify events on it are not reliable across the
swap (and absent on some filesystems). So the watcher polls: it reads the file through its path (following the
symlinks as they are now) and compares a sha256 of the content with what it saw last. Reading a policy-sized
file every few seconds costs nothing, and content hashing also ignores touches that change only mtimes.

A state (a given content, or the file being unreadable) is reported once: one log line and one count in
`errors` when it appears, not one per poll. The default policy is in force until a file has been read well,
and
`loaded` stays False until then, so /readyz does not call a webhook ready on a policy it never read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import PolicyError
from .loader import load_policy
from .model import Policy

__all__ = ["MAX_POLICY_BYTES", "PolicyWatcher"]

log = logging.getLogger(__name__)

# A ConfigMap holds at most 1 MiB; anything bigger is not a policy we wrote.
MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _Reading:
    """One poll of the file: its bytes, or why they could not be read."""

    data: bytes | None
    error: str | None


class PolicyWatcher:
    """Holds the policy in force and reloads it when the file's content changes.

    Attributes read by the server: `current` (the policy in force), `loaded` (a policy is in place: the
    file's, or the default when no file was given), `last_error` (why the newest content was refused, None
    once a good one is read), `reloads` (good contents installed, the first included) and `errors` (bad
    contents or read failures seen, each counted once).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        own_namespace: str | None = None,
        interval: float = 5.0,
        on_change: Callable[[Policy], None] | None = None,
    ) -> None:
        """Load the file once right away (without calling `on_change`); `run()` keeps it current."""
        self.path = Path(path) if path is not None else None
        self.own_namespace = own_namespace
        self.interval = interval
        self.current = Policy.default(own_namespace)
        self.loaded = self.path is None
        self.last_error: str | None = None
        self.reloads = 0
        self.errors = 0
        self._fingerprint: str | None = None
        self._on_change: Callable[[Policy], None] | None = None
        self.check_now()
        self._on_change = on_change

    def check_now(self) -> bool:
        """Read the file now; True when a new good policy was installed (also used by tests and the CLI)."""
        if self.path is None:
            return False
        return self._apply(self._read())

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled; returns at once when there is no file to watch.

        The read happens in a worker thread (a stuck network filesystem must not block admissions); parsing
        and the `on_change` callback run on the event loop's thread, so the callback may touch loop objects.
        """
        if self.path is None:
            return
        while True:
            await asyncio.sleep(self.interval)
            self._apply(await asyncio.to_thread(self._read))

    def _read(self) -> _Reading:
        assert self.path is not None
        try:
            with self.path.open("rb") as handle:
                data = handle.read(MAX_POLICY_BYTES + 1)
        except OSError as error:
            return _Reading(None, f"cannot read {self.path}: {error.strerror or error}")
        return _Reading(data, None)

    def _apply(self, reading: _Reading) -> bool:
        if reading.data is None:
            return self._refuse(f"unreadable:{reading.error}", [reading.error or "cannot read the file"])
        fingerprint = hashlib.sha256(reading.data).hexdigest()
        if fingerprint == self._fingerprint:
            return False
        if len(reading.data) > MAX_POLICY_BYTES:
            return self._refuse(fingerprint, [f"(top level): the file is larger than {MAX_POLICY_BYTES} bytes"])
        try:
            policy = load_policy(reading.data.decode("utf-8"), self.own_namespace)
        except UnicodeDecodeError as error:
            return self._refuse(fingerprint, [f"(top level): not UTF-8 text ({error.reason} at byte {error.start})"])
        except PolicyError as error:
            return self._refuse(fingerprint, list(error.messages))
        except Exception as error:  # a bug in the loader must not stop the watcher or drop the good policy
            log.exception("policy %s: unexpected error while loading", self.path)
            return self._refuse(fingerprint, [f"unexpected error: {type(error).__name__}: {error}"])
        self._install(fingerprint, policy)
        return True

    def _install(self, fingerprint: str, policy: Policy) -> None:
        changed = policy != self.current or not self.loaded
        self._fingerprint = fingerprint
        self.current = policy
        self.loaded = True
        self.last_error = None
        self.reloads += 1
        log.info("policy %s loaded (sha256 %s)", self.path, fingerprint[:12])
        if changed and self._on_change is not None:
            try:
                self._on_change(policy)
            except Exception:  # the new policy is in force either way; a listener's bug is its own
                log.exception("policy %s: on_change callback failed", self.path)

    def _refuse(self, fingerprint: str, messages: list[str]) -> bool:
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        self.errors += 1
        self.last_error = "; ".join(messages)
        kept = "the last good policy" if self.loaded else "the default policy (features off)"
        log.warning("policy %s refused, keeping %s: %s", self.path, kept, self.last_error)
        return False
