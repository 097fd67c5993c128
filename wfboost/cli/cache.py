"""`wfboost cache ls|show|explain|invalidate|stats|inflight|export|import`: look into the memoization cache and
act on it.

Thin: every answer comes from wfboost.cache.admin, which uses the same store, keys and eligibility code as the
webhook and the recorder. `explain` needs no Redis; the others read `--redis-url` (env WFBOOST_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

from wfboost.cache import redis_client
from wfboost.cache.admin import (
    REPLICATION_WAIT_MS,
    AdminError,
    EntryFilter,
    Explanation,
    Invalidation,
    KeySummary,
    cache_stats,
    configmap_data_for,
    diff_materials,
    explain_pod,
    invalidate,
    invalidate_all,
    list_keys,
    older_than,
    parse_workflow,
    pod_from_document,
    show_key,
)
from wfboost.cache.leases import describe_owner
from wfboost.cache.redis_client import redact
from wfboost.cache.store import CacheStore
from wfboost.cache.tally import read_tallies
from wfboost.cli import cache_backup
from wfboost.cli.inputs import InputError, read_text
from wfboost.cli.options import add_policy_option, add_redis_option
from wfboost.cli.policy_file import read_policy
from wfboost.policy import DurationError, Policy, PolicyError, format_duration, parse_duration
from wfboost.structs.documents import DocumentError, parse_documents


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("cache", help="list, show, explain and invalidate memoized step results")
    commands = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)

    ls = commands.add_parser("ls", help="cache keys, newest first")
    _filters(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_run(_ls))

    show = commands.add_parser("show", help="every track and entry of one key")
    show.add_argument("key", help="a cache key, or any prefix of one that is unambiguous (`ls` shows 16 characters)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(handler=_run(_show))

    explain = commands.add_parser(
        "explain",
        help="a pod's cache key, every input of it, and whether the step would be memoized",
        description="FILE is a pod (YAML or JSON, e.g. `kubectl get pod -o yaml`) or an AdmissionReview; '-' reads "
        "stdin. With two files, prints what differs between their key inputs.",
    )
    explain.add_argument("files", metavar="FILE", nargs="+", help="one or two pods")
    explain.add_argument("--configmap", action="append", default=[], metavar="FILE",
                         help="the offload ConfigMap of a pod whose ARGO_TEMPLATE or args say 'offloaded'")
    explain.add_argument("--namespace", default=None, help="namespace for a pod without metadata.namespace")
    explain.add_argument("--json", action="store_true", help="print JSON instead of a table")
    explain.set_defaults(handler=_explain)

    inv = commands.add_parser("invalidate", help="remove entries (all given filters must match)")
    inv.add_argument("--key", action="append", default=[], help="a whole cache key (repeatable)")
    _filters(inv)
    inv.add_argument("--older-than", default=None, metavar="DURATION", help="entries finished longer ago, e.g. P7D")
    inv.add_argument("--all", action="store_true", help="every entry")
    inv.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    inv.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inv.set_defaults(handler=_run(_invalidate))

    stats = commands.add_parser("stats", help="hits, misses, hit rate and compute time saved per namespace; keys, "
                                              "entries recorded, bytes, invalidated, purged")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--days", type=int, default=0, metavar="N",
                       help="also each of the last N days (UTC), per namespace (default 0: totals only; at most 90)")
    stats.set_defaults(handler=_run(_stats))

    inflight = commands.add_parser("inflight", help="latching: steps running now, their leaders, who waits for them")
    inflight.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inflight.set_defaults(handler=_run(_inflight))

    for sub in (ls, show, inv, stats, inflight, explain):
        add_redis_option(sub)
    add_policy_option(explain)
    cache_backup.register(commands, _run)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default=None, help="entries produced in this namespace")
    parser.add_argument("--image", default=None, help="image glob, digest, or repository without tag")
    parser.add_argument("--workflow", default=None, metavar="NS/NAME", help="entries produced by this workflow")


def _selection(args: argparse.Namespace) -> EntryFilter:
    age = getattr(args, "older_than", None)
    before = None
    if age is not None:
        try:
            before = older_than(parse_duration(age))
        except DurationError as exc:
            raise AdminError(f"--older-than: {exc}") from None
    return EntryFilter(
        namespace=args.namespace,
        image=args.image,
        workflow=parse_workflow(args.workflow) if args.workflow else None,
        finished_before_ms=before,
    )


# --- commands that read Redis --------------------------------------------------------------------------------


def _run(action: Callable[[CacheStore, argparse.Namespace], Awaitable[str]]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        name = args.cache_command
        if not args.redis_url:
            return _fail(name, "--redis-url (or WFBOOST_REDIS_URL) is required")

        async def go() -> str:
            client = redis_client.connect(args.redis_url, socket_timeout=5.0)
            try:
                return await action(CacheStore(client), args)
            finally:
                await client.aclose()

        try:
            output = asyncio.run(go())
        except AdminError as exc:
            return _fail(name, str(exc))
        except (RedisError, RedisClusterException, OSError) as exc:
            return _fail(name, _redis_problem(args.redis_url, exc))
        except ValueError as exc:  # a malformed URL
            return _fail(name, f"Redis URL {redact(args.redis_url)}: {exc}")
        if output:
            print(output)
        return 0

    return handler


async def _ls(store: CacheStore, args: argparse.Namespace) -> str:
    summaries = await list_keys(store, _selection(args))
    if args.json:
        return _json([s.as_json() for s in summaries])
    rows = [("KEY", "NAMESPACE", "WORKFLOW", "NODE", "FINISHED", "TRACKS")]
    for s in summaries:
        row = s.as_json()
        rows.append((s.key[:16], row["namespace"], row["workflow"], row["node"], row["finished_at"],
                     ",".join(_track(t) for t in row["tracks"])))
    return _table(rows) + f"\n{len(summaries)} key(s)"


async def _show(store: CacheStore, args: argparse.Namespace) -> str:
    summary = await show_key(store, await _full_key(store, args.key))
    if args.json:
        return _json({"key": summary.key, "tracks": summary.tracks})
    return _render_key(summary)


async def _full_key(store: CacheStore, prefix: str) -> str:
    """`ls` shows 16 characters; `show` accepts any unambiguous prefix."""
    if len(prefix) == 64:
        return prefix
    matches = [k for k in await store.keys() if k.startswith(prefix)]
    if len(matches) > 1:
        raise AdminError(f"key prefix {prefix!r} is ambiguous ({len(matches)} keys)")
    return matches[0] if matches else prefix


def _render_key(summary: KeySummary) -> str:
    lines = [f"key: {summary.key}"]
    for track in sorted(summary.tracks, key=int):
        entry = summary.tracks[track]
        producer = entry["producer"]
        lines += [
            f"track {_track(track)} (staleness {track}s): entry {entry['entry_id']}",
            f"  finished:  {entry['finished_at']} (recorded {entry['recorded_at']})",
            f"  producer:  {producer['namespace']}/{producer['workflow']} node {producer['node_name']} "
            f"pod {producer['pod']}",
            f"  image:     {entry['image']}" + (f" ({entry['image_id']})" if entry["image_id"] else ""),
        ]
        lines += [f"  parameter: {p['name']} = {_short(p['value'])}" for p in entry["parameters"]]
        if "result" in entry:
            lines.append(f"  result:    {_short(entry['result'])}")
        for artifact in entry["artifacts"]:
            where = {k: v for k, v in artifact.items() if k not in ("name", "path")}
            lines.append(f"  artifact:  {artifact.get('name')} {orjson.dumps(where).decode()}")
    return "\n".join(lines)


async def _invalidate(store: CacheStore, args: argparse.Namespace) -> str:
    selection = _selection(args)
    if args.all:
        if args.key or not selection.empty:
            raise AdminError("--all cannot be combined with other selections")
        report = await invalidate_all(store, dry_run=args.dry_run)
    else:
        for key in args.key:
            if not re.fullmatch(r"[0-9a-f]{64}", key):
                raise AdminError(f"--key takes a whole cache key (64 hex digits), not {key!r}; "
                                 "`wfboost cache show PREFIX` prints the whole key of a prefix")
        report = await invalidate(store, keys=list(args.key), selection=selection, dry_run=args.dry_run)
    if args.json:
        return _json(report.as_json())
    return _render_invalidation(report)


def _render_invalidation(report: Invalidation) -> str:
    verb = "would remove" if report.dry_run else "removed"
    lines = [f"{verb} {len(report.entries)} entr{'y' if len(report.entries) == 1 else 'ies'}"]
    for doomed in report.entries:
        producer = doomed.entry["producer"]
        lines.append(
            f"  {doomed.key[:16]} {doomed.entry['entry_id']} {producer['namespace']}/{producer['workflow']} "
            f"{producer['node_name']} finished {doomed.entry['finished_at']} "
            f"tracks {','.join(_track(t) for t in doomed.tracks)}"
        )
    replication = report.replication
    if replication is not None and replication.acknowledged < replication.connected:
        lines.append(
            f"warning: {replication.acknowledged} of {replication.connected} replicas confirmed the removal within "
            f"{REPLICATION_WAIT_MS // 1000} s; a failover to one that did not would serve the removed entries "
            "again: run the command again once the replicas are back"
        )
    elif replication is not None:
        lines.append(f"confirmed by {replication.connected} of {replication.connected} replicas")
    return "\n".join(lines)


async def _stats(store: CacheStore, args: argparse.Namespace) -> str:
    if not 0 <= args.days <= 90:
        raise AdminError("--days must be between 0 and 90 (per-day counts are kept 90 days)")
    stats = await cache_stats(store)
    namespaces = await read_tallies(store.redis, args.days)
    if args.json:
        return _json({**stats, "namespaces": namespaces})
    order = ["keys", "recorded", "bytes", "invalidated", "purged"]
    names = order + sorted(k for k in stats if k not in order)
    lines = [f"{name + ':':<13}{stats[name]}" for name in names]
    if not namespaces:
        return "\n".join([*lines, "", "no admissions counted yet (each webhook adds its counts every 10 s)"])
    rows = [("NAMESPACE", "DAY", "HITS", "MISSES", "HIT RATE", "NOT MEMOIZABLE", "COMPUTE SAVED")]
    for namespace, counts in namespaces.items():
        for day, row in [("total", counts), *((d["day"], d) for d in counts.get("days", []))]:
            rate = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.1%}"
            rows.append((namespace, day, str(row["hits"]), str(row["misses"]), rate, str(row["skipped"]),
                         format_duration(timedelta(seconds=row["saved_ms"] // 1000))))
    return "\n".join([*lines, "", _table(rows)])


# --- explain (Redis only with --redis-url: would the step hit now) -----------------------------------------


async def _inflight(store: CacheStore, args: argparse.Namespace) -> str:
    leases = await store.inflight()
    now = int(time.time() * 1000)
    if args.json:
        return _json([{"key": i.key, "leader": i.holder, "expires_in_s": i.expires_in_ms / 1000,
                       "waiting": {node: (now - first) / 1000 for node, first in sorted(i.waiting.items())},
                       "waiting_workflows": sorted({_waiting_workflow(node) for node in i.waiting})}
                      for i in leases])
    rows = [("KEY", "LEADER", "LAPSES IN", "WAITING", "LONGEST WAIT", "WAITING WORKFLOWS")]
    for i in leases:
        longest = max((now - first for first in i.waiting.values()), default=0)
        workflows = ", ".join(sorted({_waiting_workflow(node) for node in i.waiting})) or "-"
        rows.append((i.key[:16], _short(describe_owner(i.holder), 80), f"{i.expires_in_ms / 1000:.0f}s",
                     str(len(i.waiting)), f"{longest / 1000:.0f}s" if i.waiting else "-", _short(workflows, 80)))
    return _table(rows) + f"\n{len(leases)} step(s) in flight"


def _waiting_workflow(node: str) -> str:
    """`namespace/workflow` of a waiting node's identity (`namespace/workflow-uid/node name`): Argo names a node
    after its workflow (`wf.step`, `wf[0].step`)."""
    namespace, _, rest = node.partition("/")
    name = rest.partition("/")[2]
    workflow = _NODE_SEPARATOR.split(name, maxsplit=1)[0]
    return f"{namespace}/{workflow}"


_NODE_SEPARATOR = re.compile(r"[.\[(]")


def _explain(args: argparse.Namespace) -> int:
    try:
        if len(args.files) > 2:
            raise AdminError("explain takes one pod, or two to compare")
        if args.files.count("-") > 1:
            raise AdminError("only one FILE can be '-' (stdin)")
        policy = _policy(args.policy)
        configmaps = [doc for path in args.configmap for doc in parse_documents(read_text(path), path)]
        explanations = []
        for path in args.files:
            source = "stdin" if path == "-" else path
            docs = parse_documents(read_text(path), source)
            if len(docs) > 1:
                raise AdminError(f"{source} holds {len(docs)} objects; explain takes one pod per file "
                                 "(two files to compare them)")
            pod, namespace = pod_from_document(docs[0], source)
            name = str((pod.get("metadata") or {}).get("name") or "")
            explanations.append(explain_pod(
                pod, policy, namespace=namespace or args.namespace,
                configmap_data=configmap_data_for(name, configmaps), source="stdin" if path == "-" else path,
            ))
    except (AdminError, DocumentError, InputError) as exc:
        return _fail("explain", str(exc))
    except OSError as exc:
        return _fail("explain", f"{exc.filename}: {exc.strerror or exc}")
    if len(explanations) == 1:
        one = explanations[0]
        found = _lookup_now(one, args.redis_url) if args.redis_url else None
        if isinstance(found, AdminError):
            return _fail("explain", str(found))
        if args.json:
            print(_json({**one.as_json(), **({"now": found} if found is not None else {})}))
        else:
            print(_render_explanation(one) + (f"\nnow:       {found}" if found is not None else ""))
    else:
        print(_render_comparison(*explanations, as_json=args.json))
    return 0


def _lookup_now(explained: Explanation, redis_url: str) -> str | AdminError:
    """Whether the step would hit now: the lookup the webhook makes, writing nothing (no adoption, no lease)."""
    if not explained.memoized or explained.staleness is None:
        return "not looked up: the step is not memoized"
    if explained.staleness.total_seconds() <= 0:
        return "not looked up: staleness P0D never reuses a result"
    staleness = explained.staleness

    async def go() -> str:
        client = redis_client.connect(redis_url, socket_timeout=5.0)
        try:
            found = await CacheStore(client).lookup(explained.key, staleness=staleness, adopt=False)
        finally:
            await client.aclose()
        if found.entry is None:
            return f"would miss: no entry younger than {format_duration(staleness)}"
        producer = found.entry["producer"]
        return (f"would hit: the result of {producer['namespace']}/{producer['workflow']} node "
                f"{producer['node_name']}, finished {found.entry['finished_at']}")

    try:
        return asyncio.run(go())
    except (RedisError, RedisClusterException, OSError, ValueError) as exc:
        return AdminError(_redis_problem(redis_url, exc))


def _redis_problem(url: str, exc: BaseException) -> str:
    """One line: which Redis (credentials redacted) and the first line of what went wrong."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot use Redis at {redact(url)}: {reason}"


def _policy(path: str | None) -> Policy:
    try:
        return read_policy(path)
    except PolicyError as exc:
        raise AdminError(f"policy {path} is invalid: {exc}") from None


def _render_explanation(e: Explanation) -> str:
    verdict = e.detail if e.memoized else f"not memoized ({e.reason}): {e.detail}"
    return "\n".join([
        f"pod:       {e.pod} (node {e.node_name}; layout {e.layout}; {e.template_kind} template)",
        f"key:       {e.key}",
        f"decision:  {verdict}",
        "material (sha256 of its RFC 8785 form is the key):",
        orjson.dumps(e.material, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
    ])


def _render_comparison(a: Explanation, b: Explanation, *, as_json: bool) -> str:
    differences = diff_materials(a.material, b.material)
    if as_json:
        return _json({
            "same_key": a.key == b.key,
            "left": a.as_json(),
            "right": b.as_json(),
            "differences": [{"path": d.path, "left": d.left, "right": d.right, "missing": d.missing or None}
                            for d in differences],
        })
    lines = [f"A: {a.pod} ({a.source})  key {a.key}", f"B: {b.pod} ({b.source})  key {b.key}"]
    for label, e in (("A", a), ("B", b)):
        if not e.memoized:
            lines.append(f"{label} is not memoized ({e.reason}): {e.detail}")
    if a.key == b.key:
        lines.append("same key: B can reuse A's result (and the other way round)")
        return "\n".join(lines)
    lines.append(f"different keys: {len(differences)} input(s) differ")
    for d in differences:
        if d.missing == "left":
            lines.append(f"  {d.path}: only in B: {_value(d.right)}")
        elif d.missing == "right":
            lines.append(f"  {d.path}: only in A: {_value(d.left)}")
        else:
            lines.append(f"  {d.path}: {_value(d.left)} → {_value(d.right)}")
    return "\n".join(lines)


# --- helpers -------------------------------------------------------------------------------------------------


def _track(seconds: str) -> str:
    return format_duration(timedelta(seconds=int(seconds)))


def _value(value: Any) -> str:
    return _short(orjson.dumps(value).decode(), 200)


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _fail(command: str, message: str) -> int:
    print(f"wfboost cache {command}: {message}", file=sys.stderr)
    return 1
