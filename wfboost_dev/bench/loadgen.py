"""Real load generators, driven from Python: Debian's `wrk` (closed loop, and paced for bodies that change per
request) and `hey` (fixed offered rates).

Both speak HTTPS with keep-alive connections and do not verify the server's certificate (the TLS work is the same).
`wrk` runs one thread with a Lua script that posts a body read from a file; a token in the body can be replaced
by a counter on every request (so that each pod of a "hit" run is another node: a node served before is answered
"rerun"). `hey` sends one body at a fixed rate per connection (`-q`, per worker) and writes every request's
latency as CSV, from which the percentiles are computed here.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A token the wrk script replaces by a 12-digit counter; the bodies that need it carry it in a uid.
COUNTER_TOKEN = "WFBCOUNTER00"

_WRK_SCRIPT = r"""
local body_file = os.getenv("WFB_BODY")
local token = os.getenv("WFB_TOKEN")
local handle = io.open(body_file, "rb")
local body = handle:read("*a")
handle:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local count = 0
local fixed = nil
init = function(args)
  fixed = wrk.format(nil, nil, nil, body)  -- here: wrk has set the Host header by now
end
request = function()
  if token == nil or token == "" then
    return fixed
  end
  count = count + 1
  return wrk.format(nil, nil, nil, (string.gsub(body, token, string.format("%012d", count))))
end
local pause = tonumber(os.getenv("WFB_DELAY_MS") or "")
if pause ~= nil then
  delay = function()
    return pause
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WFBOOST {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50": %d, "p99": %d, "p999": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


class LoadError(RuntimeError):
    """A load generator is missing or failed; the message says which and why."""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    errors: int  # connection errors, timeouts and non-2xx answers
    p50_ms: float
    p99_ms: float
    p999_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_tools() -> None:
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise LoadError(f"{tool} is not installed (make bench installs Debian's wrk and hey)")


def paced(url: str, body: bytes, rate: float, *, connections: int = 8, seconds: float = 10.0,
          counter: bool = False) -> Result:
    """`wrk` with a pause before each request (its `delay()` hook): each connection sends one request every
    connections/rate seconds plus the answer's own time, so a body that must change per request (another node for
    each hit) can be offered near a fixed rate, which hey cannot. The achieved rate is what the table shows."""
    return closed_loop(url, body, connections=connections, seconds=seconds, counter=counter,
                       delay_ms=round(connections * 1000 / rate))


def closed_loop(url: str, body: bytes, *, connections: int = 8, seconds: float = 10.0, counter: bool = False,
                timeout_s: float = 30.0, delay_ms: int | None = None) -> Result:
    """`wrk`: `connections` keep-alive connections each sending the next request as soon as an answer comes (after
    `delay_ms`, when given)."""
    with tempfile.TemporaryDirectory(prefix="wfboost-wrk-") as tmp:
        script, body_file = Path(tmp) / "post.lua", Path(tmp) / "body.json"
        script.write_text(_WRK_SCRIPT)
        body_file.write_bytes(body)
        env = {"WFB_BODY": str(body_file), "WFB_TOKEN": COUNTER_TOKEN if counter else "", "PATH": "/usr/bin:/bin"}
        if delay_ms is not None:
            env["WFB_DELAY_MS"] = str(delay_ms)
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", f"--timeout={timeout_s:.0f}s", "-s", str(script),
             url], capture_output=True, text=True, env=env, timeout=seconds + timeout_s + 30,
        )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WFBOOST ")), None)
    if done.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
    found = json.loads(line.removeprefix("WFBOOST "))
    return Result(found["requests"], found["duration_us"] / 1e6, found["errors"] + found["non2xx"],
                  found["p50"] / 1000, found["p99"] / 1000, found["p999"] / 1000)


def fixed_rate(url: str, body: bytes, rate: float, *, connections: int = 8, seconds: float = 10.0) -> Result:
    """`hey`: `connections` workers, each throttled to rate/connections requests per second."""
    with tempfile.TemporaryDirectory(prefix="wfboost-hey-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        done = subprocess.run(
            ["hey", "-z", f"{seconds:.0f}s", "-c", str(connections), "-q", f"{rate / connections:g}", "-m", "POST",
             "-T", "application/json", "-D", str(body_file), "-o", "csv", url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
    if done.returncode != 0:
        raise LoadError(f"hey failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if not rows:
        raise LoadError(f"hey answered nothing: {done.stderr.strip()[-300:]}")
    latencies = sorted(float(row["response-time"]) * 1000 for row in rows)
    errors = sum(1 for row in rows if not row["status-code"].startswith("2"))
    return Result(len(rows), seconds, errors, statistics.median(latencies), _percentile(latencies, 99),
                  _percentile(latencies, 99.9))


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]


def versions() -> dict[str, str]:
    found = {}
    for package in ("wrk", "hey"):
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
        found[package] = done.stdout.strip() or "?"
    return found
