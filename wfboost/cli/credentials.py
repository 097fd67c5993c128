"""`wfboost credentials`: fill in the install's empty credential Secrets (see wfboost/certs/credentials.py).

Run by the install's certificate Job after `wfboost certs` made the side store's certificate; safe to run again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from wfboost.certs.credentials import CredentialsConfig, SideStoreSecrets, ensure_credentials
from wfboost.certs.reconcile import CertsError, Step
from wfboost.kube import KubeClient, KubeConfig, KubeError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "credentials",
        help="fill in the Redis passwords and side store tokens of an install",
        description=(
            "Fill in what is missing in the install's credential Secrets (shipped empty): per-user Redis passwords "
            "and the Redis ACL file, the webhook's side store token and CA, the side store's clients file. "
            "A value already there is never replaced. Safe to run repeatedly."
        ),
    )
    p.add_argument("--namespace", default="wfboost", help="the Secrets' namespace")
    p.add_argument("--redis-secret", help="the bundled Redis's Secret: passwords and users.acl (omit: external Redis)")
    p.add_argument("--sidestore-tls-secret", help="the side store's TLS Secret, made by `wfboost certs` (read only)")
    p.add_argument("--sidestore-clients-secret", default="wfboost-sidestore-clients",
                   help="the side store's clients Secret (key clients.yaml)")
    p.add_argument("--webhook-sidestore-secret", default="wfboost-webhook-sidestore",
                   help="the webhook's side store client Secret (keys token, ca.crt)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace) -> CredentialsConfig:
    sidestore = None
    if args.sidestore_tls_secret:
        sidestore = SideStoreSecrets(args.sidestore_tls_secret, args.sidestore_clients_secret,
                                     args.webhook_sidestore_secret)
    return CredentialsConfig(namespace=args.namespace, redis_secret=args.redis_secret or None, sidestore=sidestore)


async def _ensure(config: CredentialsConfig, kubeconfig: str | None, context: str | None) -> tuple[Step, ...]:
    async with KubeClient(KubeConfig.load(kubeconfig, context)) as kube:
        return await ensure_credentials(config, kube)


def run(args: argparse.Namespace) -> int:
    try:
        steps = asyncio.run(_ensure(options_from_args(args), args.kubeconfig, args.context))
    except (CertsError, KubeError, OSError) as exc:
        print(f"wfboost credentials: {exc}", file=sys.stderr)
        return 1
    for step in steps:
        print(step)
    if not any(step.changed for step in steps):
        print("nothing to do")
    return 0
