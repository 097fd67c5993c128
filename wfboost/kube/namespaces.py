"""Namespace labels, kept current by a watch, so the policy can turn features on by namespace label.

AdmissionReviews carry the object's namespace name but not the namespace's labels; asking the API on every admission
would put a call on the hot path. This view lists and watches namespaces instead and answers from memory. Until the
first list completes (or without API access) it knows nothing: `labels()` returns None, and a policy selector then
does not match (features gated by a label stay off when in doubt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfboost.kube.client import KubeClient, resource_path
from wfboost.kube.informer import Informer, WatchSettings


class NamespaceLabels:
    def __init__(self, kube: KubeClient, settings: WatchSettings | None = None) -> None:
        self._labels: dict[str, dict[str, str]] = {}
        self._informer = Informer(
            kube, resource_path("", "v1", "namespaces"), name="namespaces", handler=self.on_event,
            settings=settings or WatchSettings(),
        )

    @property
    def synced(self) -> bool:
        """True once the first list has been taken in."""
        return self._informer.synced.is_set()

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's labels; None while unknown (not listed yet, or no such namespace)."""
        if not self._informer.synced.is_set():
            return None
        return self._labels.get(namespace)

    async def run(self) -> None:
        """Until cancelled."""
        await self._informer.run()

    async def on_event(self, event_type: str, namespace: dict[str, Any]) -> None:
        meta = namespace.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            return
        if event_type == "DELETED":
            self._labels.pop(name, None)
        else:
            self._labels[name] = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
