"""`wfboost certs`: create or renew the webhook's certificates and publish its CA (see wfboost/certs/reconcile.py).

Meant to be run again and again (a CronJob, a Helm hook, by hand): it changes only what is due and prints
one line per thing it looked at.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import sys
from pathlib import Path
from typing import Any

from wfboost.certs.reconcile import CertsConfig, CertsError, InstallResult, install_certificates
from wfboost.kube import KubeClient, KubeConfig, KubeError
from wfboost.tls.certs import CertificateError

log = logging.getLogger(__name__)


def _days(text: str) -> datetime.timedelta:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if days <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return datetime.timedelta(days=days)


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "certs",
        help="create/renew TLS certificates and set the webhook's caBundle",
        description=(
            "Create a CA and a serving certificate for the webhook Service (or reuse them while valid), "
            "keep them in a directory and/or a kubernetes.io/tls Secret, and set caBundle on the named "
            "MutatingWebhookConfigurations, keeping older CAs there until they expire. "
            "Safe to run repeatedly."
        ),
    )
    p.add_argument("--service", default="wfboost", help="the webhook Service's name (default: wfboost)")
    p.add_argument("--namespace", default="wfboost", help="the Service's and the Secret's namespace")
    p.add_argument("--out-dir", type=Path, help="write ca.crt, ca.key, tls.crt, tls.key here")
    p.add_argument("--secret", help="keep the certificates in this kubernetes.io/tls Secret (in --namespace)")
    p.add_argument(
        "--webhook-config",
        action="append",
        default=[],
        metavar="NAME",
        help="MutatingWebhookConfiguration whose webhooks get the caBundle (repeatable)",
    )
    p.add_argument("--extra-dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    p.add_argument(
        "--extra-ip",
        action="append",
        default=[],
        metavar="IP",
        help="extra IP SAN, e.g. 127.0.0.1 (repeatable)",
    )
    p.add_argument("--ca-days", type=_days, default=_days("3650"), help="CA validity in days (default 3650)")
    p.add_argument("--cert-days", type=_days, default=_days("365"), help="serving certificate validity (365)")
    p.add_argument("--renew-before-days", type=_days, default=_days("30"), help="renew this long before expiry (30)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace) -> CertsConfig:
    return CertsConfig(
        service=args.service,
        namespace=args.namespace,
        out_dir=args.out_dir,
        secret=args.secret,
        webhook_configs=tuple(args.webhook_config),
        extra_dns=tuple(args.extra_dns),
        extra_ips=tuple(args.extra_ip),
        ca_validity=args.ca_days,
        cert_validity=args.cert_days,
        renew_before=args.renew_before_days,
    )


async def _install(options: CertsConfig, kubeconfig: str | None, context: str | None) -> InstallResult:
    if not options.needs_api:
        return await install_certificates(options)
    config = KubeConfig.load(kubeconfig, context)
    async with KubeClient(config) as kube:
        return await install_certificates(options, kube)


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
        result = asyncio.run(_install(options, args.kubeconfig, args.context))
    except (CertsError, KubeError, CertificateError, OSError) as exc:
        print(f"wfboost certs: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not a user error: still one line, with the traceback at debug level
        log.debug("wfboost certs failed", exc_info=True)
        print(f"wfboost certs: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for step in result.steps:
        print(step)
    if not result.changed:
        print("nothing to do")
    return 0
