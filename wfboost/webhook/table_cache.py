"""Argument tables already fetched and parsed, by namespace and digest, for the pods of a Workflow that has one.

Every pod of a tabled template needs the same table (one blob for all its calls: about 1 MB at 2,000 Kubeflow tasks),
so fetching and parsing it for each pod would cost the side store and the webhook a full table per pod. A table is
named by its digest, so what is cached can never go stale; the cache is bounded by the tables' sizes and forgets the
least recently used first. The namespace is part of the key: the side store answers per namespace, and a pod is
only given a table its own namespace holds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from wfboost.shrink.refs import Reference
from wfboost.shrink.tables import ArgumentTable

__all__ = ["TableCache"]

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


class TableCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[tuple[str, Reference], ArgumentTable] = OrderedDict()
        self._bytes = 0

    def get(self, namespace: str, reference: Reference) -> ArgumentTable | None:
        table = self._tables.get((namespace, reference))
        if table is not None:
            self._tables.move_to_end((namespace, reference))
        return table

    def put(self, namespace: str, reference: Reference, table: ArgumentTable) -> None:
        key = (namespace, reference)
        if key in self._tables or reference.size > self.max_bytes:
            return
        self._tables[key] = table
        self._bytes += reference.size
        while self._bytes > self.max_bytes:
            (_, evicted), _ = self._tables.popitem(last=False)
            self._bytes -= evicted.size

    def __len__(self) -> int:
        return len(self._tables)
