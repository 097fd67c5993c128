"""The cache to a file and back: `wfboost cache export` and `wfboost cache import`.

A volume snapshot of the bundled Valkey restores only onto the same kind of deployment; an export is a file that
imports anywhere (a single server into a Cluster, a Sentinel master, another install) and that a person can read.
An import goes through the recorder's own write (record.lua, `CacheStore.restore`), track by track, so expiry, the
index and "a track only moves to a newer result" are what recording makes them, and importing twice writes nothing
new. One rule differs: a restored entry never drops entries that finished after it. When the key's entries now run
another image (the tag was pushed again since the backup), the older image's outputs stay out (`superseded`).

Format, JSON Lines (one object per line, UTF-8), written and read one line at a time:

- a header: `{"format": "wfboost-cache", "version": 1, "keyspace": "v1", "exported_at": RFC 3339, "exported_ms": ms}`;
- one line per cache key: `{"key": K, "tracks": {"<staleness s>": "<entry id>", ...}, "entries": {"<entry id>":
  entry, ...}, "served": [node, ...], "served_ttl_ms": ms}` (an entry as wfboost.cache.entries has it; `served`:
  the nodes already given a hit from K, so that their retries still run for real), each key read in one script
  (`CacheStore.snapshot`);
- a trailer: `{"end": true, "keys": N}`. A file without it was cut short.

Not exported: leases and waiting followers (in-flight state that an import could only make wrong), tallies and the
store's counters (statistics, not cache). The whole file is checked before anything is written: cut short, a line
that is not an entry of its key, another keyspace version: nothing is imported.

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
from wfboost.cache.store import CacheStore, Snapshot, now_ms

FORMAT: Final = "wfboost-cache"
VERSION: Final = 1
PROGRESS_EVERY: Final = 1000
FUTURE_SKEW_MS: Final = 10 * 60 * 1000  # an entry that finishes later than this from now is not a backup's
_KEY = re.compile(r"[0-9a-f]{64}")
_TRACK = re.compile(r"[0-9]{1,12}")
_ENTRY_FIELDS: Final = {"key": str, "entry_id": str, "finished_at": str, "finished_ms": int, "staleness_s": int,
                        "parameters": list, "artifacts": list, "image": str, "image_id": str, "producer": dict,
                        "recorded_at": str}
_PRODUCER_FIELDS: Final = ("namespace", "workflow", "workflow_uid", "node_id", "node_name", "pod")
_SERVED_TTL_MS: Final = int(ks.SERVED_TTL.total_seconds() * 1000)


class BackupError(CacheError, ValueError):
    """A file that is not a whole export of this keyspace; the message names the line."""


class Header(TypedDict):
    format: str
    version: int
    keyspace: str
    exported_at: str
    exported_ms: int


class KeyRecord(TypedDict):
    key: str
    tracks: dict[str, str]
    entries: dict[str, CacheEntry]
    served: list[str]
    served_ttl_ms: int


@dataclass(frozen=True)
class Checked:
    header: Header
    keys: int
    entries: int


@dataclass(frozen=True)
class Imported:
    keys: int
    tracks_written: int  # tracks that moved to the file's entry (0 on a second import of the same file)
    tracks_kept: int  # tracks that already held that entry or a newer one
    tracks_expired: int  # entries past retention now, not written
    tracks_superseded: int  # entries of an image the key has since moved away from, not written


# --- export ----------------------------------------------------------------------------------------------------


def header_now() -> Header:
    now = datetime.datetime.now(datetime.UTC)
    return {"format": FORMAT, "version": VERSION, "keyspace": ks.KEY_VERSION,
            "exported_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "exported_ms": int(now.timestamp() * 1000)}


async def export(store: CacheStore, write: Callable[[bytes], object],
                 progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Write the export line by line (each followed by a newline); the number of keys written. Keys that expire
    while it runs are left out."""
    keys = await store.keys()
    write(orjson.dumps(header_now()) + b"\n")
    written = 0
    for number, key in enumerate(keys, 1):
        record = _key_record(key, await store.snapshot(key))
        if record is not None:
            write(orjson.dumps(record) + b"\n")
            written += 1
        if number % PROGRESS_EVERY == 0 or number == len(keys):
            progress(number, len(keys))
    write(orjson.dumps({"end": True, "keys": written}) + b"\n")
    return written


def _key_record(key: str, snapshot: Snapshot) -> KeyRecord | None:
    if not snapshot.tracks:
        return None  # expired or invalidated since the index was read
    return {"key": key, "tracks": {track: entry["entry_id"] for track, entry in snapshot.tracks.items()},
            "entries": {entry["entry_id"]: entry for entry in snapshot.tracks.values()},
            "served": snapshot.served, "served_ttl_ms": snapshot.served_ttl_ms}


# --- import ----------------------------------------------------------------------------------------------------


def parse_export(lines: Iterable[bytes]) -> Iterator[Header | KeyRecord]:
    """The header, then each key's record, each checked; BackupError naming the first line that is wrong, and at
    the end when the trailer is missing or counts other keys."""
    header: Header | None = None
    keys = 0
    ended = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if ended:
            raise BackupError(f"line {number}: after the trailer")
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BackupError(f"line {number}: not JSON ({exc})") from None
        if header is None:
            header = _check_header(value, number)
            yield header
        elif isinstance(value, dict) and value.get("end") is True:
            if value.get("keys") != keys:
                raise BackupError(f"line {number}: the trailer counts {value.get('keys')!r} keys, the file holds "
                                  f"{keys}")
            ended = True
        else:
            keys += 1
            yield _check_record(value, number)
    if header is None:
        raise BackupError("the file is empty: not a wfboost cache export")
    if not ended:
        raise BackupError(f"no trailer after {keys} keys: the file was cut short")


def check_export(lines: Iterable[bytes]) -> Checked:
    """Read a whole export, keeping nothing but counts."""
    header: Header | None = None
    keys = entries = 0
    for item in parse_export(lines):
        if header is None:
            header = cast(Header, item)
        else:
            keys += 1
            entries += len(cast(KeyRecord, item)["entries"])
    assert header is not None  # parse_export raises on a file without one
    return Checked(header, keys, entries)


def _check_header(value: Any, number: int) -> Header:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise BackupError(f"line {number}: not a wfboost cache export (no header with format {FORMAT!r})")
    if value.get("version") != VERSION:
        raise BackupError(f"line {number}: export format version {value.get('version')!r}; this wfboost reads "
                          f"{VERSION}")
    if value.get("keyspace") != ks.KEY_VERSION:
        raise BackupError(f"line {number}: keyspace {value.get('keyspace')!r}; this wfboost keys its cache as "
                          f"{ks.KEY_VERSION!r}, and entries keyed otherwise would never be found")
    if not _is_int(value.get("exported_ms")) or not isinstance(value.get("exported_at"), str):
        raise BackupError(f"line {number}: the header lacks `exported_at` or `exported_ms`")
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
        if not _TRACK.fullmatch(track) or not isinstance(entry_id, str) or entry_id not in entries:
            raise BackupError(f"{where}: track {track!r} is not a staleness in seconds naming one of the line's "
                              "entries")
    for entry_id, entry in entries.items():
        _check_entry(entry, key, entry_id, f"{where}, entry {entry_id!r}")
    served = value.get("served", [])
    if not isinstance(served, list) or not all(isinstance(n, str) for n in served):
        raise BackupError(f"{where}: `served` must be a list of node names")
    served_ttl = value.get("served_ttl_ms", 0)
    if not _is_int(served_ttl) or served_ttl < 0:
        raise BackupError(f"{where}: `served_ttl_ms` must be an integer ≥ 0")
    return {"key": key, "tracks": tracks, "entries": entries, "served": served, "served_ttl_ms": served_ttl}


def _check_entry(entry: Any, key: str, entry_id: str, where: str) -> None:
    """An entry's shape as the lookup and the replay read it: a malformed one must not reach Redis, where it would
    be served."""
    if not isinstance(entry, dict):
        raise BackupError(f"{where}: not an object")
    for name, kind in _ENTRY_FIELDS.items():
        if not (_is_int(entry.get(name)) if kind is int else isinstance(entry.get(name), kind)):
            raise BackupError(f"{where}: `{name}` missing or not a {kind.__name__}")
    if entry["key"] != key or entry["entry_id"] != entry_id:
        raise BackupError(f"{where}: the entry names key {entry['key'][:16]}… / id {entry['entry_id']!r}, not its "
                          "line's: an entry filed under another key would be served for the wrong step")
    if not 0 <= entry["finished_ms"] <= now_ms() + FUTURE_SKEW_MS:
        raise BackupError(f"{where}: `finished_ms` is in the future: its track would never take a newer real run")
    if entry["staleness_s"] < 0 or ("ran_ms" in entry and (not _is_int(entry["ran_ms"]) or entry["ran_ms"] < 0)):
        raise BackupError(f"{where}: `staleness_s` and `ran_ms` must be integers ≥ 0")
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


async def import_export(store: CacheStore, lines: Iterable[bytes], *, retention: timedelta, total: int,
                        progress: Callable[[int, int], None] = lambda done, total: None) -> Imported:
    """Write a checked export through the recorder's path. A key's served nodes go first (a retry of one of them must
    never meet an entry without them); then its tracks, oldest entry first. Entries past `retention` stay out, as
    they would have expired here too."""
    counts = {"written": 0, "kept": 0, "expired": 0, "superseded": 0}
    cutoff = now_ms() - int(retention.total_seconds() * 1000)
    items = parse_export(lines)
    header = cast(Header, next(items))
    elapsed = max(0, now_ms() - header["exported_ms"])
    keys = 0
    for item in items:
        record = cast(KeyRecord, item)
        keys += 1
        lifetime = min(record["served_ttl_ms"] or _SERVED_TTL_MS, _SERVED_TTL_MS) - elapsed
        if record["served"] and lifetime > 0:  # what is left of the nodes' lifetime since the export
            await store.restore_served(record["key"], record["served"], lifetime)
        pairs = sorted(record["tracks"].items(), key=lambda item: record["entries"][item[1]]["finished_ms"])
        for track, entry_id in pairs:
            entry = record["entries"][entry_id]
            if entry["finished_ms"] <= cutoff:
                counts["expired"] += 1
                continue
            counts[await store.restore(entry, retention=retention, track=int(track))] += 1
        if keys % PROGRESS_EVERY == 0 or keys == total:
            progress(keys, total)
    return Imported(keys, counts["written"], counts["kept"], counts["expired"], counts["superseded"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
