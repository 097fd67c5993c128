"""`wfboost demo`: what `make run` runs (embedded Valkey, the webhook over HTTPS, a workflow's pods replayed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wfboost.demo.processes import NoRedisServer
from wfboost.demo.replay import DEFAULT_LAYOUT, LAYOUT_NAMES
from wfboost.demo.runner import DemoError, run_demo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="replay a workflow's pods through the webhook over HTTPS, locally (what `make run` runs)",
    )
    p.add_argument(
        "--workflow",
        type=Path,
        default=None,
        help="a Workflow YAML to replay (default: the embedded churn-model pipeline)",
    )
    p.add_argument("--layout", choices=LAYOUT_NAMES, default=DEFAULT_LAYOUT, help="Argo version whose pods to build")
    p.add_argument("--pace", type=float, default=0.0, help="seconds to wait before each pod, to watch it live")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        return run_demo(args.workflow, args.layout, sys.stdout, pace=args.pace)
    except (DemoError, NoRedisServer) as exc:
        print(f"wfboost demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nwfboost demo: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
