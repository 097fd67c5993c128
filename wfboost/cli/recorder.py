"""`wfboost recorder`: watch finished Argo steps and write their results to the cache."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from wfboost.cache.redis_client import redact
from wfboost.cli.options import add_policy_option, add_redis_option, add_service_options
from wfboost.kube import KubeConfig, KubeError
from wfboost.kube.informer import WatchSettings
from wfboost.recorder.service import RecorderConfig, serve_recorder
from wfboost.recorder.watch import RecorderSettings
from wfboost.service.shell import ServiceFailed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "recorder",
        help="watch Argo pods and task results; record successful steps in the cache",
        description="Runs until SIGTERM/SIGINT. See docs/recorder.md.",
    )
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    add_service_options(p, "recorder")
    p.add_argument("--resync", type=float, default=600.0, help="seconds between full relists (default 600)")
    p.add_argument(
        "--purge-interval", type=float, default=900.0, help="seconds between purges of stale entries (0: never)"
    )
    p.add_argument(
        "--pending-ttl", type=float, default=RecorderSettings.pending_ttl,
        help="seconds a half-seen step (pod or task result only) is remembered without news (default %(default)s)",
    )
    p.add_argument(
        "--retry-interval", type=float, default=RecorderSettings.tick,
        help="seconds between retries of steps waiting for the controller to mark their node, or for Redis "
        "(default %(default)s)",
    )
    p.add_argument(
        "--workflow-read-interval", type=float, default=RecorderSettings.workflow_read_interval,
        help="a Workflow is read at most this often, however many of its steps finish (default %(default)s)",
    )
    add_redis_option(p)
    add_policy_option(p, mounted=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.redis_url:
        return _fail("--redis-url (or WFBOOST_REDIS_URL) is required: entries are written to Redis/Valkey")
    for option in ("resync", "retry_interval", "workflow_read_interval"):
        if getattr(args, option) <= 0:
            return _fail(f"--{option.replace('_', '-')} must be a positive number of seconds")
    try:
        kube = KubeConfig.load(args.kubeconfig, args.context)
    except KubeError as exc:
        return _fail(f"no Kubernetes API access: {exc}")
    config = RecorderConfig(
        kube=kube,
        redis_url=args.redis_url,
        policy_path=Path(args.policy) if args.policy else None,
        own_namespace=args.namespace,
        metrics_port=args.metrics_port,
        settings=RecorderSettings(
            watch=WatchSettings(resync=args.resync),
            pending_ttl=args.pending_ttl,
            purge_interval=args.purge_interval,
            tick=args.retry_interval,
            workflow_read_interval=args.workflow_read_interval,
        ),
    )
    try:
        asyncio.run(serve_recorder(config))
    except ServiceFailed as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot serve metrics on port {args.metrics_port}: {exc.strerror or exc}")
    except ValueError as exc:  # a malformed Redis URL
        return _fail(f"Redis URL {redact(args.redis_url)}: {exc}")
    return 0


def _fail(message: str) -> int:
    print(f"wfboost recorder: {message}", file=sys.stderr)
    return 1
