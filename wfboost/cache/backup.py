"""The cache to a file and back: `wfboost cache export` and `wfboost cache import`.

A volume snapshot of the bundled Valkey restores only onto the same kind of deployment; an export is a file that
imports anywhere (a single server into a Cluster, a Sentinel master, another install) and that a person can read.
An import goes through the recorder's own write (record.lua), track by track, so expiry, the index, the image-digest
rule and "a track only moves to a newer result" are what recording makes them; importing twice writes nothing new.

Format, JSON Lines (one object per line, UTF-8):

- a header: `{"format": "wfboost-cache", "version": 1, "keyspace": "v1", "exported_at": RFC 3339, "keys": N}`;
- then one line per cache key: `{"key": K, "tracks": {"<staleness s>": "<entry id>", ...}, "entries": {"<entry
  id>": entry, ...}, "served": [node, ...], "served_ttl_ms": ms}` (an entry as wfboost.cache.entries has it;
  `served`: the nodes already given a hit from K, so that their retries still run for real).

Not exported: leases and waiting followers (in-flight state that an import could only make wrong), tallies and the
store's counters (statistics, not cache). Every line is checked before anything is written: a file cut short (fewer
keys than its header says), a line that is not an entry of its key, another keyspace version: nothing is imported.

What an import cannot know is what was invalidated after the export: those entries come back. The command says so;
run the invalidations again after an import (docs/operations.md, "Back up and restore the cache").
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, TypedDict, cast

import orjson

from wfboost.cache import keyspace as ks
from wfboost.cache.entries import CacheEntry
from wfboost.cache.errors import CacheError
from wfboost.cache.store import CacheStore, now_ms

FORMAT: Final = "wfboost-cache"
VERSION: Final = 1
_KEY = re.compile(r"[0-9a-f]{64}")
_ENTRY_FIELDS: Final = {"key": str, "entry_id": str, "finished_at": str, "finished_ms": int, "staleness_s": int,
                        "parameters": list, "artifacts": list, "image": str, "image_id": str, "producer": dict,
                        "recorded_at": str}
_PRODUCER_FIELDS: Final = ("namespace", "workflow", "workflow_uid", "node_id", "node_name", "pod")
PROGRESS_EVERY: Final = 1000
_SERVED_TTL_MS: Final = int(ks.SERVED_TTL.total_seconds() * 1000)


class BackupError(CacheError, ValueError):
    """A file that is not a whole export of this keyspace; the message names the line."""


class Header(TypedDict):
    format: str
    version: int
    keyspace: str
    exported_at: str
    keys: int


class KeyRecord(TypedDict):
    key: str
    tracks: dict[str, str]
    entries: dict[str, CacheEntry]
    served: list[str]
    served_ttl_ms: int


@dataclass(frozen=True)
class Imported:
    keys: int
    tracks_written: int  # tracks that moved to the file's entry (0 on a second import of the same file)
    tracks_kept: int  # tracks that already held that entry or a newer one
    tracks_expired: int  # entries past retention now, not written


# --- export ----------------------------------------------------------------------------------------------------


async def export_lines(store: CacheStore, progress: Callable[[int, int], None] = lambda done, total: None
                       ) -> Iterator[bytes]:
    """The export, line by line (header first). Keys that expire while it runs are left out, so the header's count
    is of the keys written: it is the last thing known, so the lines are gathered before they are handed out."""
    keys = await store.keys()
    lines: list[bytes] = []
    for number, key in enumerate(keys, 1):
        record = await _key_record(store, key)
        if record is not None:
            lines.append(orjson.dumps(record))
        if number % PROGRESS_EVERY == 0 or number == len(keys):
            progress(number, len(keys))
    header: Header = {"format": FORMAT, "version": VERSION, "keyspace": ks.KEY_VERSION,
                      "exported_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "keys": len(lines)}
    return iter([orjson.dumps(header), *lines])


async def _key_record(store: CacheStore, key: str) -> KeyRecord | None:
    redis = store.redis
    tracks_raw = await redis.hgetall(ks.tracks_key(key))
    entries_raw = await redis.hgetall(ks.entries_key(key))
    served_raw = await redis.smembers(ks.served_key(key))
    served_ttl = int(await redis.pttl(ks.served_key(key)))
    bodies = {_text(k): v for k, v in entries_raw.items()}
    tracks: dict[str, str] = {}
    entries: dict[str, CacheEntry] = {}
    for field, value in tracks_raw.items():
        entry_id = _text(value).split(":", 1)[1]
        if entry_id in bodies:
            tracks[_text(field).removeprefix("t:")] = entry_id
            entries[entry_id] = cast(CacheEntry, orjson.loads(bodies[entry_id]))
    if not tracks:
        return None  # expired or invalidated since the index was read
    return {"key": key, "tracks": tracks, "entries": entries, "served": sorted(_text(n) for n in served_raw),
            "served_ttl_ms": max(0, served_ttl) if served_raw else 0}


# --- import ----------------------------------------------------------------------------------------------------


def read_export(lines: Iterable[bytes]) -> tuple[Header, list[KeyRecord]]:
    """The whole file, checked; BackupError naming the first line that is wrong."""
    header: Header | None = None
    records: list[KeyRecord] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BackupError(f"line {number}: not JSON ({exc})") from None
        if header is None:
            header = _check_header(value, number)
        else:
            records.append(_check_record(value, number))
    if header is None:
        raise BackupError("the file is empty: not a wfboost cache export")
    if len(records) != header["keys"]:
        raise BackupError(f"the file holds {len(records)} of the {header['keys']} keys its header counts: cut short?")
    return header, records


def _check_header(value: Any, number: int) -> Header:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise BackupError(f"line {number}: not a wfboost cache export (no header with format {FORMAT!r})")
    if value.get("version") != VERSION:
        raise BackupError(f"line {number}: export format version {value.get('version')!r}; this wfboost reads "
                          f"{VERSION}")
    if value.get("keyspace") != ks.KEY_VERSION:
        raise BackupError(f"line {number}: keyspace {value.get('keyspace')!r}; this wfboost keys its cache as "
                          f"{ks.KEY_VERSION!r}, and entries keyed otherwise would never be found")
    if not isinstance(value.get("keys"), int) or not isinstance(value.get("exported_at"), str):
        raise BackupError(f"line {number}: the header lacks `keys` or `exported_at`")
    return cast(Header, value)


def _check_record(value: Any, number: int) -> KeyRecord:
    where = f"line {number}"
    if not isinstance(value, dict):
        raise BackupError(f"{where}: not an object")
    key = value.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise BackupError(f"{where}: `key` is not a cache key (64 hex digits)")
    tracks, entries = value.get("tracks"), value.get("entries")
    if not isinstance(tracks, dict) or not tracks or not isinstance(entries, dict):
        raise BackupError(f"{where}: `tracks` and `entries` must be objects, `tracks` not empty")
    for track, entry_id in tracks.items():
        if not track.isdigit() or not isinstance(entry_id, str) or entry_id not in entries:
            raise BackupError(f"{where}: track {track!r} does not name one of the line's entries")
    for entry_id, entry in entries.items():
        _check_entry(entry, key, entry_id, f"{where}, entry {entry_id!r}")
    served = value.get("served", [])
    if not isinstance(served, list) or not all(isinstance(n, str) for n in served):
        raise BackupError(f"{where}: `served` must be a list of node names")
    if not isinstance(value.get("served_ttl_ms", 0), int):
        raise BackupError(f"{where}: `served_ttl_ms` must be an integer")
    return cast(KeyRecord, {"key": key, "tracks": tracks, "entries": entries, "served": served,
                            "served_ttl_ms": value.get("served_ttl_ms", 0)})


def _check_entry(entry: Any, key: str, entry_id: str, where: str) -> None:
    """An entry's shape as the lookup and the replay read it: a malformed one must not reach Redis, where it would
    be served."""
    if not isinstance(entry, dict):
        raise BackupError(f"{where}: not an object")
    for name, kind in _ENTRY_FIELDS.items():
        if not isinstance(entry.get(name), kind) or (kind is int and isinstance(entry.get(name), bool)):
            raise BackupError(f"{where}: `{name}` missing or not a {kind.__name__}")
    if entry["key"] != key or entry["entry_id"] != entry_id:
        raise BackupError(f"{where}: the entry names key {entry['key'][:16]}… / id {entry['entry_id']!r}, not its "
                          "line's: an entry filed under another key would be served for the wrong step")
    for parameter in entry["parameters"]:
        if not (isinstance(parameter, dict) and isinstance(parameter.get("name"), str)
                and isinstance(parameter.get("value"), str)):
            raise BackupError(f"{where}: each parameter needs a string `name` and `value`")
    if not all(isinstance(a, dict) for a in entry["artifacts"]):
        raise BackupError(f"{where}: each artifact must be an object")
    if not all(isinstance(entry["producer"].get(f), str) for f in _PRODUCER_FIELDS):
        raise BackupError(f"{where}: `producer` needs {', '.join(_PRODUCER_FIELDS)}")
    if "result" in entry and not isinstance(entry["result"], str):
        raise BackupError(f"{where}: `result` must be a string")
    if "ran_ms" in entry and (not isinstance(entry["ran_ms"], int) or isinstance(entry["ran_ms"], bool)):
        raise BackupError(f"{where}: `ran_ms` must be an integer")


async def import_records(store: CacheStore, records: list[KeyRecord], *, retention: timedelta,
                         progress: Callable[[int, int], None] = lambda done, total: None) -> Imported:
    """Write checked records through the recorder's path. Entries past `retention` expire at once, as they would
    have; a key's tracks are written oldest entry first, so the image-digest rule sees them in the order they ran."""
    written = kept = expired = 0
    cutoff = now_ms() - int(retention.total_seconds() * 1000)
    for number, record in enumerate(records, 1):
        pairs = sorted(record["tracks"].items(), key=lambda item: record["entries"][item[1]]["finished_ms"])
        for track, entry_id in pairs:
            entry = record["entries"][entry_id]
            if entry["finished_ms"] <= cutoff:
                expired += 1  # past retention since the export: it would have expired here too
                continue
            moved, _ = await store.record_run(entry, retention=retention, track=int(track))
            written += int(moved)
            kept += int(not moved)
        if record["served"]:  # the nodes' lifetime as exported (never longer than a lookup would give it)
            served = ks.served_key(record["key"])
            lifetime = min(record["served_ttl_ms"] or _SERVED_TTL_MS, _SERVED_TTL_MS)
            await store.redis.sadd(served, *record["served"])
            if int(await store.redis.pttl(served)) < lifetime:
                await store.redis.pexpire(served, lifetime)
        if number % PROGRESS_EVERY == 0 or number == len(records):
            progress(number, len(records))
    return Imported(len(records), written, kept, expired)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
