"""`python -m wfboost_dev.demo` (what `make run` runs): a workflow run twice through the webhook, locally.

Embedded Valkey, an emulated Kubernetes API, and `wfboost serve`, `wfboost recorder` and `wfboost sidestore serve` as
real processes; the first run misses and is recorded, the second is replayed from the cache; then a Kubeflow-shaped
pipeline that etcd would refuse is shrunk at CREATE and its pods restored.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from wfboost_dev.demo.plan import DEFAULT_LAYOUT, LAYOUT_NAMES
from wfboost_dev.demo.processes import NoRedisServer
from wfboost_dev.demo.runner import DemoError, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wfboost_dev.demo",
        description="Run a workflow twice through the wfboost webhook and recorder, locally (what `make run` runs).",
    )
    parser.add_argument(
        "--workflow",
        type=Path,
        default=None,
        help="a Workflow YAML to replay (default: the embedded churn-model pipeline)",
    )
    parser.add_argument(
        "--layout", choices=LAYOUT_NAMES, default=DEFAULT_LAYOUT, help="Argo version whose pods to build"
    )
    parser.add_argument("--pace", type=float, default=0.0, help="seconds to wait before each pod, to watch it live")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the processes' logs, certificates and policy in DIR (default: a temporary "
                             "directory, removed on exit)")
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a CI cancel, `kill`) stops the demo as Ctrl-C does: everything it started is stopped."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_demo(args.workflow, args.layout, sys.stdout, pace=args.pace, keep=args.keep)
    except (DemoError, NoRedisServer) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
