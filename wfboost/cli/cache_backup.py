"""`wfboost cache export` and `wfboost cache import`: the cache to a file and back (wfboost.cache.backup)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from wfboost.cache.backup import BackupError, export_lines, import_records, read_export
from wfboost.cache.eligibility import retention
from wfboost.cache.store import CacheStore
from wfboost.cli.options import add_policy_option, add_redis_option
from wfboost.cli.policy_file import read_policy
from wfboost.policy import PolicyError

StoreAction = Callable[[CacheStore, argparse.Namespace], Awaitable[str]]
RunWithStore = Callable[[StoreAction], Callable[[argparse.Namespace], int]]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], run_with_store: RunWithStore) -> None:
    export = commands.add_parser(
        "export", help="every cache entry to a JSON Lines file (a backup that imports into any deployment)",
        description="Writes the header, then one line per cache key: its tracks, entries and the nodes served from "
        "it (docs/operations.md, 'Back up and restore the cache'). Leases, waiting followers and tallies are not "
        "exported.")
    export.add_argument("--output", "-o", default="-", metavar="FILE",
                        help="where to write (written whole or not at all); default '-': standard output")
    export.set_defaults(handler=_exporting(run_with_store(_export)))

    imp = commands.add_parser(
        "import", help="entries from an export, through the recorder's own write path",
        description="Checks the whole file first (nothing is written from a file cut short or not an export), "
        "then records each track as the recorder would: an entry already there, or older than the one there, "
        "changes nothing, so importing twice is safe. Entries past retention (--policy's memoize."
        "maxStalenessLimit, else 90 days) are left out. Entries invalidated after the export come back: run "
        "those invalidations again.")
    imp.add_argument("file", metavar="FILE", help="an export of `wfboost cache export`; '-' reads standard input")
    imp.add_argument("--dry-run", action="store_true", help="check the file and say what it holds; write nothing")
    add_policy_option(imp)
    imp.set_defaults(handler=_importing(run_with_store(_import)))
    for sub in (export, imp):
        add_redis_option(sub)


def _progress(verb: str) -> Callable[[int, int], None]:
    def say(done: int, total: int) -> None:
        print(f"{verb} {done:,}/{total:,} keys", file=sys.stderr, flush=True)

    return say


def _fail(command: str, message: str) -> int:
    print(f"wfboost cache {command}: {message}", file=sys.stderr)
    return 1


def _exporting(read: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Read everything from Redis, then write the file whole (or standard output): a failed export leaves no
    file that could pass for a backup."""

    def handler(args: argparse.Namespace) -> int:
        code = read(args)
        if code != 0:
            return code
        body: bytes = args.export_body
        if args.output == "-":
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
            return 0
        target = Path(args.output)
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.write_bytes(body)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            return _fail("export", f"cannot write {target}: {exc.strerror or exc}")
        print(f"exported {args.export_keys:,} keys to {target} ({len(body):,} bytes)", file=sys.stderr)
        return 0

    return handler


async def _export(store: CacheStore, args: argparse.Namespace) -> str:
    lines = list(await export_lines(store, _progress("read")))
    args.export_body = b"\n".join(lines) + b"\n"
    args.export_keys = len(lines) - 1
    return ""


def _importing(write: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Read and check the whole file (and the policy) before Redis is touched; --dry-run stops there."""

    def handler(args: argparse.Namespace) -> int:
        try:
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        except OSError as exc:
            return _fail("import", f"cannot read {args.file}: {exc.strerror or exc}")
        try:
            args.import_retention = retention(read_policy(args.policy))
        except (PolicyError, OSError) as exc:
            return _fail("import", f"--policy: {exc}")
        try:
            header, records = read_export(raw.splitlines())
        except BackupError as exc:
            return _fail("import", f"{args.file}: {exc}; nothing imported")
        entries = sum(len(r["entries"]) for r in records)
        args.import_header, args.import_records = header, records
        args.import_summary = f"{len(records):,} keys, {entries:,} entries, exported {header['exported_at']}"
        if args.dry_run:
            print(f"a whole export: {args.import_summary}; nothing written (--dry-run)")
            return 0
        return write(args)

    return handler


async def _import(store: CacheStore, args: argparse.Namespace) -> str:
    done = await import_records(store, args.import_records, retention=args.import_retention,
                                progress=_progress("imported"))
    print(f"wfboost cache import: entries invalidated after {args.import_header['exported_at']} are back: run "
          "those invalidations again", file=sys.stderr)
    return (f"imported {args.import_summary}: {done.tracks_written:,} tracks written, {done.tracks_kept:,} already "
            f"held that entry or a newer one, {done.tracks_expired:,} past retention left out")
