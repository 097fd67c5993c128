"""`wfboost sidestore serve|ls|stat|gc`: the side store service, and a thin client of it for operators.

`ls`, `stat` and `gc` talk to a running service through the same client library the webhook uses, so what they
show is what the service sees; `gc --dry-run` runs the service's own sweeper without deleting.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from wfboost.blobs.client import SideStoreClient, SideStoreClientError
from wfboost.cli.options import add_redis_option, env_default
from wfboost.service.shell import ServiceFailed
from wfboost.sidestore.config import SideStoreConfig
from wfboost.sidestore.errors import AuthConfigError, BadRequest
from wfboost.sidestore.server import serve
from wfboost.sidestore.store import StoreSettings, format_bytes
from wfboost.sidestore.view import parse_viewed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("sidestore", help="the side store service (serve) and its client (ls, stat, show, gc)")
    commands = p.add_subparsers(dest="sidestore_command", metavar="SUBCOMMAND", required=True)

    s = commands.add_parser("serve", help="run the side store HTTP(S) service")
    s.add_argument("--host", default=env_default("WFBOOST_HOST"),
                   help="listen address (default 0.0.0.0; 127.0.0.1 with --insecure-http)")
    s.add_argument("--port", type=int, default=int(env_default("WFBOOST_SIDESTORE_PORT", "8443") or 8443),
                   help="HTTPS port (env WFBOOST_SIDESTORE_PORT)")
    s.add_argument("--metrics-port", type=int, default=0, help="plain-HTTP /healthz /readyz /metrics (0: none)")
    add_redis_option(s, help="Redis/Valkey URL of the metadata (and of the default backend); the forms of "
                     "wfboost serve --redis-url (env WFBOOST_REDIS_URL)")
    s.add_argument("--backend", default="redis", help="redis | file:///path | s3://bucket?endpoint=…")
    s.add_argument("--large-backend", default=None, help="where blobs over --threshold and multipart uploads go")
    s.add_argument("--threshold", type=int, default=StoreSettings.threshold_bytes, help="bytes (default 4 MiB)")
    s.add_argument("--cert-dir", type=Path, default=None, help="directory with tls.crt and tls.key")
    s.add_argument("--client-ca", default=None, help="CA bundle for client certificates (enables mTLS)")
    s.add_argument("--insecure-http", action="store_true", help="serve plain HTTP (local experiments only)")
    clients = env_default("WFBOOST_SIDESTORE_CLIENTS", "/etc/wfboost/sidestore/clients.yaml") or ""
    s.add_argument("--clients", type=Path, default=Path(clients), help="clients file (tokens → namespaces)")
    s.add_argument("--policy", default=env_default("WFBOOST_POLICY"), help="policy file (quotas)")
    s.add_argument("--kube-url", default=None, help="API server URL (default: in-cluster or kubeconfig)")
    s.add_argument("--kubeconfig", default=None,
                   help="kubeconfig for the list+watch of Workflows (default: in-cluster)")
    s.add_argument("--gc-interval", type=float, default=300.0, help="seconds between sweeps (0: only on request)")
    grace = StoreSettings.grace_seconds
    s.add_argument("--grace", type=float, default=grace, help="seconds an unreferenced blob is kept")
    s.add_argument("--upload-ttl", type=float, default=StoreSettings.upload_ttl_seconds,
                   help="seconds an unfinished multipart upload is kept")
    s.add_argument("--zstd-level", type=int, default=StoreSettings.level, help="compression level of blobs at rest")
    s.set_defaults(handler=run_serve)

    for name, help_text in (
        ("ls", "list a namespace's blobs"),
        ("stat", "one blob: size, backend, references"),
        ("gc", "run the sweeper now"),
        ("show", "print the value a wfboost-ref:… reference stands for (as kubectl get -o yaml shows it)"),
    ):
        c = commands.add_parser(name, help=help_text)
        c.add_argument("--url", default=env_default("WFBOOST_SIDESTORE_URL"), help="env WFBOOST_SIDESTORE_URL")
        c.add_argument("--token-file", default=env_default("WFBOOST_SIDESTORE_TOKEN_FILE"),
                       help="file holding the bearer token (env WFBOOST_SIDESTORE_TOKEN_FILE; or the token itself "
                            "in WFBOOST_SIDESTORE_TOKEN)")
        c.add_argument("--ca-file", default=env_default("WFBOOST_SIDESTORE_CA"),
                       help="CA bundle of the service's certificate (env WFBOOST_SIDESTORE_CA)")
        if name != "show":
            c.add_argument("--json", action="store_true", help="print the service's JSON answer")
        if name in ("ls", "stat", "show"):
            c.add_argument("namespace", help="the namespace whose blobs")
        if name == "stat":
            c.add_argument("digest", help="the blob's digest (sha256:…)")
        if name == "show":
            c.add_argument("reference", help="wfboost-ref:v1:<size>:<sha256>, an argument table's reference, or one "
                                             "of its cells (…#<row>[<input>])")
        if name == "ls":
            c.add_argument("--limit", type=int, default=1000, help="at most this many blobs")
        if name == "gc":
            c.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
        c.set_defaults(handler=run_client, action=name)


def run_serve(args: argparse.Namespace) -> int:
    if not args.redis_url:
        return _fail("serve", "--redis-url (or WFBOOST_REDIS_URL) is required: Redis holds the blob metadata")
    cert_dir: Path | None = args.cert_dir
    # Plain HTTP carries bearer tokens in the clear: only on loopback unless an address is asked for.
    args.host = args.host or ("127.0.0.1" if args.insecure_http else "0.0.0.0")
    config = SideStoreConfig(
        redis_url=args.redis_url,
        clients_file=args.clients,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        backend=args.backend,
        large_backend=args.large_backend,
        tls_cert=cert_dir / "tls.crt" if cert_dir else None,
        tls_key=cert_dir / "tls.key" if cert_dir else None,
        client_ca=args.client_ca,
        insecure_http=args.insecure_http,
        policy_path=Path(args.policy) if args.policy else None,
        kube_url=args.kube_url,
        kubeconfig=args.kubeconfig,
        gc_interval=args.gc_interval,
        store=StoreSettings(
            threshold_bytes=args.threshold,
            grace_seconds=args.grace,
            upload_ttl_seconds=args.upload_ttl,
            level=args.zstd_level,
        ),
    )
    try:
        asyncio.run(serve(config))
    except (AuthConfigError, ServiceFailed, ValueError) as exc:
        return _fail("serve", str(exc))
    except OSError as exc:
        return _fail("serve", f"cannot start on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


def run_client(args: argparse.Namespace) -> int:
    if not args.url:
        return _fail(args.action, "--url (or WFBOOST_SIDESTORE_URL) is required")
    actions: dict[str, Callable[[SideStoreClient, argparse.Namespace], Awaitable[Any]]] = {
        "ls": _ls,
        "stat": _stat,
        "gc": _gc,
        "show": _show,
    }

    async def go() -> Any:
        token = None if args.token_file else os.environ.get("WFBOOST_SIDESTORE_TOKEN") or None
        async with SideStoreClient(args.url, token=token, token_file=args.token_file, ca_file=args.ca_file) as client:
            return await actions[args.action](client, args)

    try:
        result = asyncio.run(go())
    except SideStoreClientError as exc:
        return _fail(args.action, exc.message if exc.status else str(exc.message))
    except (OSError, ValueError) as exc:
        return _fail(args.action, str(exc))
    if args.action == "show":
        sys.stdout.write(result)
    elif args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        print(_render(args.action, result))
    if args.action == "gc" and result.get("skipped"):
        return _fail("gc", f"nothing was swept: {result['skipped']}")
    return 0


async def _ls(client: SideStoreClient, args: argparse.Namespace) -> Any:
    blobs: list[Any] = []
    after: str | None = None
    while len(blobs) < args.limit:
        page = await client.list(args.namespace, after=after, limit=min(1000, args.limit - len(blobs)))
        blobs += page["blobs"]
        after = page["next"]
        if after is None:
            break
    return {"namespace": args.namespace, "blobs": blobs}


async def _stat(client: SideStoreClient, args: argparse.Namespace) -> Any:
    return await client.info(args.namespace, args.digest)


async def _show(client: SideStoreClient, args: argparse.Namespace) -> Any:
    try:
        parse_viewed(args.reference)  # said here, before any connection
    except BadRequest as exc:
        raise ValueError(exc.message) from None
    return await client.view(args.namespace, args.reference)


async def _gc(client: SideStoreClient, args: argparse.Namespace) -> Any:
    return await client.gc(dry_run=args.dry_run)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _render(action: str, result: Any) -> str:
    if action == "ls":
        lines = [f"{'DIGEST':<71} {'SIZE':>10} {'STORED':>10} BACKEND CREATED"]
        for b in result["blobs"]:
            lines.append(
                f"{b['digest']:<71} {format_bytes(b['size']):>10} {format_bytes(b['stored']):>10} "
                f"{b['backend']:<7} {_when(b['created'])}"
            )
        return "\n".join(lines)
    if action == "stat":
        lines = [
            f"digest:  {result['digest']}",
            f"size:    {result['size']} ({format_bytes(result['size'])})",
            f"stored:  {result['stored']} ({format_bytes(result['stored'])}) on {result['backend']}",
            f"created: {_when(result['created'])}",
            "refs:    " + (", ".join(r["ref"] for r in result.get("refs", [])) or "none"),
        ]
        return "\n".join(lines)
    if result["skipped"]:
        return f"gc skipped: {result['skipped']}"
    verb = "would delete" if result["dry_run"] else "deleted"
    lines = [f"{verb} {len(result['deleted'])} of {result['examined']} blobs; kept {result['kept']}"]
    lines += [f"  {d['namespace']}/{d['digest']} {format_bytes(d['size'])}: {d['reason']}" for d in result["deleted"]]
    lines.append(f"expired uploads: {result['uploads_expired']}; abandoned objects: {result['pending_reclaimed']}")
    return "\n".join(lines)


def _fail(action: str, message: str) -> int:
    print(f"wfboost sidestore {action}: {message}", file=sys.stderr)
    return 1
