"""Options shared by several commands, each also readable from an environment variable."""

from __future__ import annotations

import argparse
import os

from wfboost.cache import redis_client


def env_default(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


REDIS_URL_HELP = ("Redis/Valkey URL: redis://host:6379/0, rediss:// for TLS, ?cluster=true for Redis Cluster, "
                  "redis+sentinel://sentinel:26379,.../master/0 for Sentinel (docs/redis.md; env WFBOOST_REDIS_URL)")


def redis_url(text: str) -> str:
    """argparse's type for Redis URLs: a bad one is refused before anything starts, with the reason."""
    try:
        return redis_client.check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_redis_option(parser: argparse.ArgumentParser, help: str = REDIS_URL_HELP) -> None:
    """Where cache entries live (and the side store's metadata)."""
    parser.add_argument("--redis-url", type=redis_url, default=env_default("WFBOOST_REDIS_URL"), help=help)


def add_policy_option(parser: argparse.ArgumentParser, *, mounted: bool = False) -> None:
    """The policy file: as the webhook and recorder read it from their volume (`mounted`), or, for the offline
    commands, also the ConfigMap manifest that carries it."""
    what = "policy YAML file" if mounted else "policy YAML file, or a ConfigMap carrying it as key policy.yaml"
    parser.add_argument(
        "--policy",
        default=env_default("WFBOOST_POLICY"),
        help=f"{what} (env WFBOOST_POLICY); without it, the built-in default policy (every feature off)",
    )


def add_service_options(parser: argparse.ArgumentParser, who: str) -> None:
    """What every long-running wfboost process takes: its own namespace (never acted on) and a plain-HTTP port
    for probes and Prometheus."""
    parser.add_argument(
        "--namespace",
        default=env_default("POD_NAMESPACE", "wfboost"),
        help=f"the {who}'s own namespace, never acted on (env POD_NAMESPACE)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env_default("WFBOOST_METRICS_PORT", "0") or 0),
        help="plain-HTTP port for /healthz, /readyz, /metrics (env WFBOOST_METRICS_PORT; 0: none)",
    )
