"""`wfboost cache export` and `import` on real Valkey deployments: an export imports into a single server, a Cluster
and a Sentinel master and answers the same lookups there; what is not a whole export of this keyspace is refused
with nothing written; a second import writes nothing; entries past retention stay out."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REDIS_DEPLOYMENTS, redis_deployment
from wfboost.cache import keyspace as ks
from wfboost.cache import redis_client
from wfboost.cache.backup import BackupError, KeyRecord, check_export, parse_export
from wfboost.cache.entries import CacheEntry
from wfboost.cache.store import CacheStore, Verdict, now_ms
from wfboost.cli import main
from wfboost_dev.demo.processes import RedisProcess, start_redis

WEEK = 604800


def entry(key: str, entry_id: str, *, finished_ms: int, staleness_s: int = WEEK, value: str = "42",
          digest: str = "a") -> CacheEntry:
    return {
        "key": key, "entry_id": entry_id, "finished_at": "2026-12-01T10:00:00Z", "finished_ms": finished_ms,
        "staleness_s": staleness_s, "parameters": [{"name": "rows", "value": value}], "artifacts": [],
        "image": "python:3.11", "image_id": "sha256:" + digest * 64, "recorded_at": "2026-12-01T10:00:01Z",
        "producer": {"namespace": "ml", "workflow": "wf", "workflow_uid": "u", "node_id": "n", "node_name": "wf.a",
                     "pod": "wf-a"},
        "ran_ms": 61_000,
    }


def key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def with_store(url: str, action: Any) -> Any:
    client = redis_client.connect(url)
    try:
        return await action(CacheStore(client))
    finally:
        await client.aclose()


def run(url: str, action: Any) -> Any:
    return asyncio.run(with_store(url, action))


@pytest.fixture
def source() -> Iterator[RedisProcess]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


def fill(url: str, prefix: str) -> list[str]:
    """Two keys: one with an entry on its own track and a newer one a lookup adopted onto a day's track, one with a
    node it served (so that node's retry must still run for real)."""
    first, second = key_of(prefix + "first"), key_of(prefix + "second")
    recent = now_ms() - 3_600_000

    async def write(store: CacheStore) -> None:
        await store.record(entry(first, "old", finished_ms=recent - 60_000), retention=timedelta(days=90))
        await store.record(entry(first, "new", finished_ms=recent, value="43"), retention=timedelta(days=90))
        adopted = await store.lookup(first, staleness=timedelta(days=1))  # copies "new" onto the day's track
        assert adopted.adopted and adopted.entry is not None and adopted.entry["entry_id"] == "new"
        await store.record(entry(second, "only", finished_ms=recent, digest="b"), retention=timedelta(days=90))
        hit = await store.lookup(second, staleness=timedelta(days=7), node="ml/u/wf.a")
        assert hit.verdict is Verdict.HIT

    run(url, write)
    return [first, second]


def state(url: str, keys: list[str]) -> dict[str, Any]:
    async def read(store: CacheStore) -> dict[str, Any]:
        found = {}
        for key in keys:
            found[key] = {"tracks": await store.tracks(key),
                          "served": sorted(await store.redis.smembers(ks.served_key(key))),
                          "digest": await store.redis.get(ks.digest_key(key)),
                          "indexed": key in await store.keys()}
        return found

    return dict(run(url, read))


@pytest.fixture(params=list(REDIS_DEPLOYMENTS))
def target_url(request: pytest.FixtureRequest) -> str:
    """The session's single server, Cluster or Sentinel deployment: the import's target."""
    return redis_deployment(request).url


def test_an_export_imports_into_each_deployment_and_answers_the_same_lookups(
    source: RedisProcess, target_url: str, request: pytest.FixtureRequest, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    into = target_url
    keys = fill(source.url, request.node.nodeid)
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "--output", str(exported)]) == 0
    assert "exported 2 keys" in capsys.readouterr().err
    assert main(["cache", "import", "--redis-url", into, str(exported)]) == 0
    out = capsys.readouterr()
    assert "3 tracks written, 0 already held" in out.out
    assert "invalidations again" in out.err  # what an import cannot know, said
    assert state(into, keys) == state(source.url, keys)

    async def lookups(store: CacheStore) -> list[Any]:
        day = await store.lookup(keys[0], staleness=timedelta(days=1), adopt=False)
        served = await store.lookup(keys[1], staleness=timedelta(days=7), node="ml/u/wf.a")
        other = await store.lookup(keys[1], staleness=timedelta(days=7), node="ml/u2/wf.a")
        return [(day.verdict, day.entry and day.entry["entry_id"]), served.verdict, other.verdict]

    assert run(into, lookups) == [(Verdict.HIT, "new"), Verdict.RERUN, Verdict.HIT]
    assert main(["cache", "import", "--redis-url", into, str(exported)]) == 0
    assert "0 tracks written, 3 already held" in capsys.readouterr().out  # a second import writes nothing


def broken(text: bytes, change: Any) -> bytes:
    lines = text.splitlines()
    return b"\n".join(change(lines)) + b"\n"


def _rekey(lines: list[bytes]) -> list[bytes]:
    record = orjson.loads(lines[1])
    first = next(iter(record["entries"]))
    record["entries"][first]["key"] = key_of("another step")
    return [lines[0], orjson.dumps(record), *lines[2:]]


def _edited(line: bytes, change: Any) -> bytes:
    record = orjson.loads(line)
    change(record)
    return orjson.dumps(record)


def _finished_in_the_future(record: dict[str, Any]) -> None:
    for value in record["entries"].values():
        value["finished_ms"] = now_ms() + 86_400_000


def _other_keyspace(lines: list[bytes]) -> list[bytes]:
    header = orjson.loads(lines[0])
    return [orjson.dumps({**header, "keyspace": "v0"}), *lines[1:]]


def _no_value(lines: list[bytes]) -> list[bytes]:
    record = orjson.loads(lines[1])
    first = next(iter(record["entries"]))
    del record["entries"][first]["parameters"][0]["value"]
    return [lines[0], orjson.dumps(record), *lines[2:]]


@pytest.mark.parametrize(("change", "said"), [
    (lambda lines: lines[:-1], "cut short"),
    (_rekey, "another key"),
    (_other_keyspace, "keyspace 'v0'"),
    (_no_value, "`value`"),
    (lambda lines: [b"{\"format\": \"something else\"}", *lines[1:]], "not a wfboost cache export"),
    (lambda lines: [lines[0], b"{not json", *lines[1:]], "line 2: not JSON"),
    (lambda lines: [lines[0], _edited(lines[1], lambda r: r["tracks"].update({"\u00b2": next(iter(r["entries"]))})),
                    *lines[2:]], "is not a staleness in seconds"),
    (lambda lines: [lines[0], _edited(lines[1], _finished_in_the_future), *lines[2:]], "in the future"),
], ids=["cut short", "entry under another key", "other keyspace", "parameter without value", "not an export",
        "not JSON", "track not digits", "finished in the future"])
def test_what_is_not_a_whole_export_is_refused_and_nothing_is_written(
    source: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, said: str,
    request: pytest.FixtureRequest
) -> None:
    fill(source.url, request.node.nodeid)
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(exported)]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(broken(exported.read_bytes(), change))
    target = start_redis()
    try:
        capsys.readouterr()
        assert main(["cache", "import", "--redis-url", target.url, str(bad)]) == 1
        err = capsys.readouterr().err
        assert said in err and "nothing imported" in err and "Traceback" not in err
        assert run(target.url, lambda store: store.keys()) == []
    finally:
        target.stop()


def test_a_dry_run_needs_no_redis_and_entries_past_retention_stay_out(
    source: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, fresh = key_of("old"), key_of("fresh")

    async def write(store: CacheStore) -> None:
        await store.record(entry(old, "o", finished_ms=now_ms() - 20 * 86_400_000), retention=timedelta(days=90))
        await store.record(entry(fresh, "f", finished_ms=now_ms() - 1000), retention=timedelta(days=90))

    run(source.url, write)
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(exported)]) == 0
    capsys.readouterr()
    assert main(["cache", "import", "--redis-url", "redis://127.0.0.1:1/0", "--dry-run", str(exported)]) == 0
    assert "a whole export: 2 keys, 2 entries" in capsys.readouterr().out
    policy = tmp_path / "policy.yaml"  # entries are kept as long as the longest staleness allowed: 10 days here
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nmemoize: {maxStalenessLimit: P10D}\n")
    target = start_redis()
    try:
        assert main(["cache", "import", "--redis-url", target.url, "--policy", str(policy), str(exported)]) == 0
        assert "1 past retention left out" in capsys.readouterr().out
        assert run(target.url, lambda store: store.keys()) == [fresh]
    finally:
        target.stop()


def test_an_export_to_a_file_it_cannot_write_leaves_nothing(source: RedisProcess, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no such directory" / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(missing)]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not missing.parent.exists()


# --- the file format itself: any records the store could hold survive being written and read back ---------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def key_records(draw: st.DrawFn) -> KeyRecord:
    key = key_of(draw(names))
    ids = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    entries = {i: entry(key, i, finished_ms=draw(st.integers(0, 1_700_000_000_000)),
                        staleness_s=draw(st.integers(0, 10**7)), value=draw(st.text(max_size=40))) for i in ids}
    tracks = {str(draw(st.integers(0, 10**7))): draw(st.sampled_from(ids)) for _ in range(draw(st.integers(1, 3)))}
    return {"key": key, "tracks": tracks, "entries": entries, "served": draw(st.lists(names, max_size=3)),
            "served_ttl_ms": draw(st.integers(0, 10**9))}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(key_records(), max_size=5))
def test_any_export_reads_back_as_written(records: list[KeyRecord]) -> None:
    header = {"format": "wfboost-cache", "version": 1, "keyspace": ks.KEY_VERSION,
              "exported_at": "2026-12-04T00:00:00Z", "exported_ms": 1_796_342_400_000}
    lines = [orjson.dumps(header), *(orjson.dumps(r) for r in records), orjson.dumps({"end": True,
                                                                                       "keys": len(records)})]
    assert list(parse_export(lines)) == [header, *records]
    assert check_export(lines).keys == len(records)
    with pytest.raises(BackupError, match="cut short"):
        check_export(lines[:-1])
    with pytest.raises(BackupError, match="trailer counts"):
        check_export([*lines[:-1], orjson.dumps({"end": True, "keys": len(records) + 1})])


def test_export_progress_is_shown(source: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(source.url, "progress")
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(tmp_path / "c.jsonl")]) == 0
    assert "read 2/2 keys" in capsys.readouterr().err


def test_an_older_backup_never_brings_back_an_image_the_tag_has_moved_away_from(
    source: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup holds an entry of image a; since then the tag was pushed again and a run of image b recorded,
    which dropped a's entries. Importing the backup must not drop b's entry and serve a's outputs again; a backup
    entry newer than everything there still wins, as a new run would."""
    key = key_of("pushed again")
    old_ms = now_ms() - 7_200_000
    run(source.url, lambda store: store.record(entry(key, "before", finished_ms=old_ms, digest="a"),
                                                retention=timedelta(days=90)))
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(exported)]) == 0
    target = start_redis()
    try:
        run(target.url, lambda store: store.record(entry(key, "after", finished_ms=old_ms + 60_000, value="b",
                                                         digest="b"), retention=timedelta(days=90)))
        capsys.readouterr()
        assert main(["cache", "import", "--redis-url", target.url, str(exported)]) == 0
        assert "1 of an image the key has moved away from left out" in capsys.readouterr().out
        kept = run(target.url, lambda store: store.lookup(key, staleness=timedelta(days=7), adopt=False))
        assert kept.entry is not None and kept.entry["entry_id"] == "after"
    finally:
        target.stop()
    newer = start_redis()
    try:  # the backup's entry is the newest: it replaces the older image's entry
        run(newer.url, lambda store: store.record(entry(key, "older", finished_ms=old_ms - 60_000, digest="b"),
                                                  retention=timedelta(days=90)))
        assert main(["cache", "import", "--redis-url", newer.url, str(exported)]) == 0
        found = run(newer.url, lambda store: store.tracks(key))
        assert {t: e["entry_id"] for t, e in found.items()} == {str(WEEK): "before"}
    finally:
        newer.stop()


def test_served_nodes_keep_what_is_left_of_their_lifetime(source: RedisProcess, tmp_path: Path) -> None:
    keys = fill(source.url, "lifetime")
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", source.url, "-o", str(exported)]) == 0
    target = start_redis()
    try:
        assert main(["cache", "import", "--redis-url", target.url, str(exported)]) == 0
        left = run(target.url, lambda store: store.redis.pttl(ks.served_key(keys[1])))
        assert 0 < left <= int(ks.SERVED_TTL.total_seconds() * 1000)
    finally:
        target.stop()
