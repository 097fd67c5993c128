"""Where the API server is and how to authenticate to it.

The `kubernetes` package is used only to read kubeconfig files (contexts, exec plugins, embedded
certificates): its generated HTTP client is synchronous and heavy, and wfboost talks to the API through
`KubeClient` instead.
In-cluster configuration is read directly because it is three well-known paths and two environment
variables, and because the service-account token is a projected volume that the kubelet rotates (about
hourly): it must be re-read on every request, not once at start-up as the package's loader does.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """Anything that stopped a call to the API server (defined here, the lowest module, so that configuration
    errors met while sending a request are caught by the same `except KubeError`)."""


class KubeConfigError(KubeError):
    """No usable configuration: not in a cluster, no kubeconfig, or a kubeconfig that cannot be read."""


@dataclass(frozen=True)
class KubeConfig:
    """Everything `KubeClient` needs to reach one API server.

    Credentials come from exactly one of: `token_provider` (kubeconfig exec plugins and other refreshable
    sources; returns the whole `Authorization` header value), `token_file` (re-read on every request),
    `token`; client certificates may be combined with any of them.
    """

    server: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    token: str | None = None
    token_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    namespace: str | None = None  # the context's or the pod's namespace, for callers that need a default
    token_provider: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_url(cls, url: str, *, token: str | None = None, ca_file: str | None = None) -> KubeConfig:
        """A bare URL: plain HTTP for test servers, or HTTPS with an explicit CA."""
        return cls(server=url.rstrip("/"), token=token, ca_file=ca_file)

    @classmethod
    def from_in_cluster(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
    ) -> KubeConfig:
        """The pod's own service account, as every in-cluster client finds it."""
        env = os.environ if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise KubeConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
        sa_dir = Path(service_account_dir)
        token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
        for path in (token_file, ca_file):
            if not path.is_file():
                raise KubeConfigError(f"in-cluster configuration incomplete: {path} is missing")
        ns_file = sa_dir / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.is_file() else None
        netloc = f"[{host}]" if ":" in host else host  # IPv6 service IPs need brackets
        return cls(
            server=f"https://{netloc}:{port}",
            ca_file=str(ca_file),
            token_file=str(token_file),
            namespace=namespace,
        )

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None, context: str | None = None) -> KubeConfig:
        """A kubeconfig context (the current one unless named), read by the `kubernetes` package's loader so
        that auth providers, exec plugins and `*-data` fields behave exactly as with kubectl."""
        from kubernetes import client as k8s_client  # imported lazily: slow, and only the CLI needs it
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

        where = str(path) if path is not None else os.environ.get("KUBECONFIG") or "~/.kube/config"
        target = k8s_client.Configuration()
        try:
            # The merger reads every file of a `KUBECONFIG=a:b` list; the loader applies one context of it.
            merged = KubeConfigMerger(where)  # type: ignore[no-untyped-call]
            if merged.config is None:
                raise ConfigException("no such file, or no configuration in it")
            loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
                config_dict=merged.config, active_context=context, config_base_path=None
            )
            loader.load_and_set(target)  # type: ignore[no-untyped-call]
            namespace = loader.current_context.get("context", {}).get("namespace")
        except (ConfigException, OSError, TypeError, KeyError, ValueError) as exc:
            raise KubeConfigError(f"cannot load kubeconfig {where}: {exc}") from None

        def authorization() -> str | None:
            # The loader installs a hook that re-runs exec plugins and auth providers once a token expires.
            if target.refresh_api_key_hook is not None:
                target.refresh_api_key_hook(target)
            value = target.api_key.get("BearerToken") or target.api_key.get("authorization")
            return str(value) if value else None

        has_token = bool(target.api_key)
        return cls(
            server=str(target.host).rstrip("/"),
            ca_file=target.ssl_ca_cert or None,
            client_cert_file=target.cert_file or None,
            client_key_file=target.key_file or None,
            insecure_skip_tls_verify=not target.verify_ssl,
            tls_server_name=getattr(target, "tls_server_name", None) or None,
            namespace=namespace,
            token_provider=authorization if has_token else None,
        )

    @classmethod
    def load(cls, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> KubeConfig:
        """What a command should use: an explicit kubeconfig or context wins; otherwise the pod's service
        account when running in a cluster (Jobs, CronJobs); otherwise the user's default kubeconfig."""
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.from_in_cluster()
        return cls.from_kubeconfig(kubeconfig, context)

    def authorization(self) -> str | None:
        """The `Authorization` header value for the next request, read fresh from its source."""
        if self.token_provider is not None:
            return self.token_provider()
        if self.token_file is not None:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeConfigError(f"cannot read token file {self.token_file}: {exc.strerror}") from None
            return f"Bearer {token}" if token else None
        if self.token:
            return f"Bearer {self.token}"
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None for plain HTTP."""
        if not self.server.startswith("https://"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_file:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context
