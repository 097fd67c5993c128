"""The configuration of one admission server, as one dataclass (from CLI options and environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wfboost.kube import KubeConfig

# The API server refuses request bodies over 3 MiB, and an UPDATE's AdmissionReview carries the object and the old
# object: up to twice that, plus the review around them. Anything larger is not from it.
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class WebhookConfig:
    host: str = "0.0.0.0"
    port: int = 8443
    # Plain-HTTP port for /healthz, /readyz and /metrics (probes and Prometheus without TLS); 0 disables it.
    metrics_port: int = 0
    cert_dir: Path = Path("/etc/wfboost/tls")
    cert_file: str = "tls.crt"
    key_file: str = "tls.key"
    policy_path: Path | None = None
    own_namespace: str = "wfboost"
    redis_url: str | None = None
    webhook_timeout: float = 10.0  # the MutatingWebhookConfiguration's timeoutSeconds
    reload_interval: float = 10.0  # how often certificate and policy files are re-read
    tally_interval: float = 10.0  # how often hit and miss counts go to Redis (wfboost.cache.tally)
    max_body_bytes: int = MAX_BODY_BYTES
    shutdown_timeout: float = 5.0
    # The Kubernetes API, for the rare admission-time read (an offloaded Argo template); None: no access.
    kube_config: KubeConfig | None = None
    # The side store, for shrinking: values moved at Workflow CREATE, restored at pod CREATE. None: not configured
    # (shrinking fails open, counted as sidestore_unavailable; pods holding references are refused with 429).
    sidestore_url: str | None = None
    sidestore_token_file: Path | None = None  # a bearer token, re-read when it changes (a mounted Secret)
    sidestore_ca_file: Path | None = None  # the CA that signed the side store's certificate (https://)
    # The CA of the client certificate the API server presents (its AdmissionConfiguration kubeconfig): when set, a
    # TLS client without a certificate from it is refused at the handshake (docs/tls.md, "Authenticating the API
    # server"). None: any client may send reviews.
    client_ca_file: Path | None = None
    # As one of several worker processes (webhook/workers.py): the admission port is shared (SO_REUSEPORT) and the
    # status routes are served to the parent on this Unix socket instead of metrics_port.
    reuse_port: bool = False
    status_socket: str | None = None
