"""`wfboost serve`: the HTTPS admission server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from wfboost.cli.options import add_policy_option, add_redis_option, add_service_options, env_default
from wfboost.kube import KubeConfig, KubeConfigError
from wfboost.service.shell import ServiceFailed
from wfboost.webhook.config import WebhookConfig
from wfboost.webhook.server import client_auth_context, serve
from wfboost.webhook.workers import serve_workers

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("serve", help="run the HTTPS admission server")
    p.add_argument("--host", default=env_default("WFBOOST_HOST", "0.0.0.0"), help="listen address")
    p.add_argument("--port", type=int, default=int(env_default("WFBOOST_PORT", "8443") or 8443),
                   help="HTTPS port for admission (env WFBOOST_PORT)")
    p.add_argument(
        "--cert-dir",
        type=Path,
        default=Path(env_default("WFBOOST_CERT_DIR", "/etc/wfboost/tls") or "/etc/wfboost/tls"),
        help="directory holding tls.crt and tls.key (a mounted Secret; re-read when it changes)",
    )
    add_service_options(p, "webhook")
    p.add_argument(
        "--webhook-timeout",
        type=float,
        default=float(env_default("WFBOOST_WEBHOOK_TIMEOUT", "10") or 10),
        help="timeoutSeconds of the MutatingWebhookConfiguration; the internal deadline stays below it",
    )
    p.add_argument("--reload-interval", type=float, default=10.0, help="seconds between certificate/policy checks")
    p.add_argument(
        "--workers",
        type=_workers,
        default=env_default("WFBOOST_WORKERS", "1"),  # a string: argparse converts and checks it like an option
        help="admission processes sharing the port (SO_REUSEPORT), one per core to use; the parent serves "
        "--metrics-port for all of them (env WFBOOST_WORKERS; default 1: one process, no parent)",
    )
    p.add_argument(
        "--kubeconfig",
        default=env_default("KUBECONFIG"),
        help="kubeconfig for the rare admission-time API read (an offloaded Argo template); in a pod the "
        "service account is used",
    )
    add_redis_option(p)
    p.add_argument(
        "--sidestore-url",
        default=env_default("WFBOOST_SIDESTORE_URL"),
        help="the side store (https://…), for shrinking Workflows; env WFBOOST_SIDESTORE_URL",
    )
    p.add_argument(
        "--sidestore-token-file",
        type=Path,
        default=env_default("WFBOOST_SIDESTORE_TOKEN_FILE"),
        help="file holding the webhook's bearer token for the side store (a mounted Secret; re-read on change)",
    )
    p.add_argument(
        "--sidestore-ca",
        type=Path,
        default=env_default("WFBOOST_SIDESTORE_CA"),
        help="CA bundle that signed the side store's certificate",
    )
    p.add_argument(
        "--client-ca",
        type=Path,
        default=env_default("WFBOOST_CLIENT_CA"),
        help="require a client certificate signed by this CA on the admission port: the API server's, from its "
        "AdmissionConfiguration (docs/tls.md); env WFBOOST_CLIENT_CA; default: any client",
    )
    add_policy_option(p, mounted=True)
    p.set_defaults(handler=run)


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"expected 1 to 64 worker processes, got {count}")
    return count


def kube_config(kubeconfig: str | None) -> KubeConfig | None:
    """The API access the server has: explicit kubeconfig, else the pod's service account, else none (then
    steps whose template Argo offloaded to a ConfigMap are admitted unchanged, counted as kube_unavailable)."""
    if not kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    try:
        return KubeConfig.load(kubeconfig)
    except KubeConfigError as exc:
        log.warning("no Kubernetes API access (%s): offloaded Argo templates will not be read", exc)
        return None


def run(args: argparse.Namespace) -> int:
    config = WebhookConfig(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        cert_dir=args.cert_dir,
        policy_path=Path(args.policy) if args.policy else None,
        own_namespace=args.namespace,
        redis_url=args.redis_url,
        webhook_timeout=args.webhook_timeout,
        reload_interval=args.reload_interval,
        kube_config=kube_config(args.kubeconfig),
        sidestore_url=args.sidestore_url,
        sidestore_token_file=args.sidestore_token_file,
        sidestore_ca_file=args.sidestore_ca,
        client_ca_file=args.client_ca,
    )
    try:
        client_auth_context(config.client_ca_file)  # checked here: a bad file is one line, not a traceback
    except ValueError as exc:
        print(f"wfboost serve: --client-ca {exc}", file=sys.stderr)
        return 1
    if args.workers > 1:
        try:
            return serve_workers(config, args.workers, _worker)
        except OSError as exc:
            print(f"wfboost serve: cannot listen on {args.host}:{args.metrics_port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    return _serve_here(config)


def _worker(config: WebhookConfig) -> None:
    """One worker process (forked, logging already set up): its exit status is the parent's to read."""
    sys.exit(_serve_here(config))


def _serve_here(config: WebhookConfig) -> int:
    try:
        asyncio.run(serve(config))
    except ServiceFailed as exc:
        print(f"wfboost serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wfboost serve: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
