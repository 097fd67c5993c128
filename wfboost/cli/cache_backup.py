"""`wfboost cache export` and `wfboost cache import`: the cache to a file and back (wfboost.cache.backup).

Both stream, one line at a time: an export goes to a hidden file renamed into place only when whole (standard
output: a stream cut short lacks its trailer, which an import refuses); an import reads its file twice, once to
check all of it and once to write, so a file that is wrong anywhere writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from wfboost.cache.backup import BackupError, check_export, export, import_export
from wfboost.cache.eligibility import retention
from wfboost.cache.store import CacheStore
from wfboost.cli.options import add_policy_option, add_redis_option
from wfboost.cli.policy_file import read_policy
from wfboost.policy import PolicyError

StoreAction = Callable[[CacheStore, argparse.Namespace], Awaitable[str]]
RunWithStore = Callable[[StoreAction], Callable[[argparse.Namespace], int]]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], run_with_store: RunWithStore) -> None:
    exporting = commands.add_parser(
        "export", help="every cache entry to a JSON Lines file (a backup that imports into any deployment)",
        description="Writes a header, one line per cache key (its tracks, entries and the nodes served from it) "
        "and a trailer (docs/operations.md, 'Back up and restore the cache'). Leases, waiting followers and "
        "tallies are not exported.")
    exporting.add_argument("--output", "-o", default="-", metavar="FILE",
                           help="where to write (renamed into place once whole); default '-': standard output")
    exporting.set_defaults(handler=_exporting(run_with_store(_export)))

    importing = commands.add_parser(
        "import", help="entries from an export, through the recorder's own write path",
        description="Checks the whole file first (nothing is written from a file cut short or not an export), "
        "then records each track as the recorder would: an entry already there, or older than the one there, "
        "changes nothing, so importing twice is safe, and an entry of an image the key has moved away from since "
        "stays out. Entries past retention (--policy's memoize.maxStalenessLimit, else 90 days) are left out. "
        "Entries invalidated after the export come back: run those invalidations again.")
    importing.add_argument("file", metavar="FILE", help="an export of `wfboost cache export`; '-': standard input")
    importing.add_argument("--dry-run", action="store_true", help="check the file and say what it holds; no Redis")
    add_policy_option(importing)
    importing.set_defaults(handler=_importing(run_with_store(_import)))
    for sub in (exporting, importing):
        add_redis_option(sub)


def _fail(command: str, message: str) -> int:
    print(f"wfboost cache {command}: {message}", file=sys.stderr)
    return 1


def _progress(verb: str) -> Callable[[int, int], None]:
    def say(done: int, total: int) -> None:
        print(f"{verb} {done:,}/{total:,} keys", file=sys.stderr, flush=True)

    return say


def _exporting(read: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        if args.output == "-":
            args.write = sys.stdout.buffer.write
            code = read(args)
            sys.stdout.flush()
            return code
        target = Path(args.output)
        partial = target.with_name(f".{target.name}.partial")
        try:
            out = partial.open("wb")
        except OSError as exc:
            return _fail("export", f"cannot write {target}: {exc.strerror or exc}")
        try:
            with out:
                args.write = out.write
                code = read(args)
            if code == 0:
                os.replace(partial, target)
                print(f"exported {args.exported:,} keys to {target} ({target.stat().st_size:,} bytes)",
                      file=sys.stderr)
            return code
        except OSError as exc:
            return _fail("export", f"cannot write {target}: {exc.strerror or exc}")
        finally:
            partial.unlink(missing_ok=True)

    return handler


async def _export(store: CacheStore, args: argparse.Namespace) -> str:
    args.exported = await export(store, args.write, _progress("read"))
    return ""


def _importing(write: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Check the whole file (and the policy) before Redis is touched; --dry-run stops there."""

    def handler(args: argparse.Namespace) -> int:
        try:
            args.import_retention = retention(read_policy(args.policy))
        except (PolicyError, OSError) as exc:
            return _fail("import", f"--policy: {exc}")
        try:
            scratch_dir = tempfile.TemporaryDirectory(prefix="wfboost-import-") if args.file == "-" else None
        except OSError as exc:  # a read-only root with nothing mounted at /tmp
            return _fail("import", f"standard input needs a writable temporary directory ({exc.strerror or exc}): "
                                   "give a file instead, or mount one at /tmp (TMPDIR)")
        with scratch_dir or contextlib.nullcontext() as scratch:
            try:
                path = _spooled(args.file, Path(scratch or "."))
                with path.open("rb") as lines:
                    checked = check_export(lines)
            except OSError as exc:
                return _fail("import", f"cannot read {args.file}: {exc.strerror or exc}")
            except BackupError as exc:
                return _fail("import", f"{args.file}: {exc}; nothing imported")
            args.import_summary = (f"{checked.keys:,} keys, {checked.entries:,} entries, exported "
                                   f"{checked.header['exported_at']}")
            args.import_total, args.exported_at = checked.keys, checked.header["exported_at"]
            if args.dry_run:
                print(f"a whole export: {args.import_summary}; nothing written (--dry-run)")
                return 0
            with path.open("rb") as lines:
                args.import_lines = lines
                return write(args)

    return handler


def _spooled(name: str, scratch: Path) -> Path:
    """A file to read twice: the one named, or standard input copied to `scratch`."""
    if name != "-":
        return Path(name)
    spooled = scratch / "stdin.jsonl"
    stdin: IO[bytes] = sys.stdin.buffer
    with spooled.open("wb") as out:
        shutil.copyfileobj(stdin, out)
    return spooled


async def _import(store: CacheStore, args: argparse.Namespace) -> str:
    done = await import_export(store, args.import_lines, retention=args.import_retention, total=args.import_total,
                               progress=_progress("imported"))
    print(f"wfboost cache import: entries invalidated after {args.exported_at} are back: run those invalidations "
          "again", file=sys.stderr)
    return (f"imported {args.import_summary}: {done.tracks_written:,} tracks written, {done.tracks_kept:,} already "
            f"held that entry or a newer one, {done.tracks_superseded:,} of an image the key has moved away from "
            f"left out, {done.tracks_expired:,} past retention left out")
