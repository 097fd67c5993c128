"""`make bench-cpu`: the CPU one pod admission costs, in one process, without HTTP or a load generator.

The quick measure for work on the admission path's own code: `make bench` stays the reference (real load, beside
a floor measured in the same run), but takes ten minutes and measures the HTTP stack too. Here each pod path of
`make bench` (pass-through, miss, hit: the same review bodies, a real Valkey) runs `--admissions` times through
`Admission.admit` after a warm-up, the review's parse included (the patch check runs inside `admit`); printed per
admission: CPU time (process_time: the server's and this script's part, not Valkey's) and wall time. `--profile`
adds the functions with the most own time under cProfile, which slows everything about threefold: read its
shares, not its times.

`python -m wfboost_dev.bench.cpu [--admissions N] [--profile]`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections import Counter
from dataclasses import dataclass

from wfboost.policy import load_policy
from wfboost.webhook.admission import budget_for
from wfboost.webhook.review import offline_admission
from wfboost.webhook.wire import parse_review
from wfboost_dev.bench import loadgen
from wfboost_dev.bench.__main__ import POLICY, AdmissionPath, admission_paths
from wfboost_dev.demo.processes import start_redis

POD_PATHS = ("pod CREATE, pass-through", "pod CREATE, miss", "pod CREATE, hit")
WARM_UP = 200


@dataclass(frozen=True)
class Measured:
    path: str
    cpu_us: float
    wall_us: float
    outcomes: dict[str, int]
    profile: str = ""


def bodies(path: AdmissionPath, count: int, start: int) -> list[bytes]:
    """The path's review, or for a hit one per request, each another Workflow's node (as the wrk script does)."""
    if not path.counter:
        return [path.body] * count
    token = loadgen.COUNTER_TOKEN.encode()
    return [path.body.replace(token, f"{n:012d}".encode()) for n in range(start, start + count)]


async def measure(path: AdmissionPath, redis_url: str, admissions: int, profile: bool) -> Measured:
    async with offline_admission(load_policy(POLICY), redis_url, namespace_labels={}) as admission:
        for body in bodies(path, WARM_UP, 0):
            await admission.admit(path.route, parse_review(body), budget_for(10))
        timed = bodies(path, admissions, WARM_UP)
        outcomes: Counter[str] = Counter()
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        for body in timed:
            outcomes[(await admission.admit(path.route, parse_review(body), budget_for(10))).outcome] += 1
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    shown = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        shown = out.getvalue()
    return Measured(path.name, cpu / admissions * 1e6, wall / admissions * 1e6, dict(outcomes), shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfboost_dev.bench.cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--admissions", type=int, default=3000, help="timed admissions per path (default 3000)")
    parser.add_argument("--profile", action="store_true", help="also the top functions by own time (cProfile)")
    args = parser.parse_args(argv)
    if args.admissions < 1:
        print("bench-cpu: --admissions must be at least 1", file=sys.stderr)
        return 2
    server = start_redis()
    try:
        paths = {p.name: p for p in admission_paths(server)}
        for name in POD_PATHS:
            found = asyncio.run(measure(paths[name], server.url, args.admissions, args.profile))
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(found.outcomes.items()))
            print(f"{found.path}: {found.cpu_us:.0f} µs CPU, {found.wall_us:.0f} µs wall per admission ({outcomes})",
                  flush=True)
            if found.profile:
                print(found.profile)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
