"""Checks of a rendered install, each a function from objects to problems (`where: what`), empty when it passes.

- `pod_security`: every pod template meets Pod Security "restricted" (the Pod Security Standards, latest version),
  written from the standard's tables, since the admission plugin's Go code is not at hand: a pod that fails is
  refused in the install's own namespace (namespace.yaml enforces restricted) and sits uncreated.
- `unknown_secrets`: every Secret a pod mounts or reads, and every key it names, is one the install creates (and
  its certificate Job fills in), or one the chart documents as the user's to provide.
- `redis_without_credentials`: every Redis/Valkey the install runs loads an ACL file from a Secret the install
  creates, and every component connects with a user and a password from a Secret; a NetworkPolicy admits only
  pods of this namespace.
- `rbac_writers`: who may write webhook configurations, Secrets or pods, or escalate, from the rendered Roles and
  bindings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any

from wfboost.certs.credentials import ACL_FILE, CLIENTS_FILE, REDIS_USERS, TOKEN
from wfboost.certs.reconcile import CA_CERT, CA_KEY, TLS_CERT, TLS_KEY

from .objects import Obj, containers, label, pod_specs, selects

# --- Pod Security "restricted" --------------------------------------------------------------------------------

_RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
})
_VOLUME_META = frozenset({"name"})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})


def _pod_problems(pod: Obj) -> Iterator[str]:
    """The standard's controls, baseline then restricted, for one pod spec."""
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            yield f"{host} is true (baseline: host namespaces)"
    pod_sc: Mapping[str, Any] = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - _VOLUME_META
        if "hostPath" in kinds:
            yield f"volume {volume.get('name')}: hostPath (baseline)"
        elif not kinds <= _RESTRICTED_VOLUMES:
            yield f"volume {volume.get('name')}: {sorted(kinds - _RESTRICTED_VOLUMES)} is not a restricted volume type"
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')} is not a safe sysctl (baseline)"
    yield from _security_context_problems("pod", pod_sc)
    if pod_sc.get("runAsUser") == 0:
        yield "pod runAsUser is 0 (restricted: no root)"
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_OK:
        yield f"pod seccompProfile {pod_seccomp} (restricted: RuntimeDefault or Localhost)"
    for container in containers(pod):
        name = f"container {container.get('name')}"
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        yield from (f"{name}: {problem}" for problem in _security_context_problems(name, sc))
        if sc.get("privileged"):
            yield f"{name}: privileged (baseline)"
        if (sc.get("procMount") or "Default") != "Default":
            yield f"{name}: procMount {sc.get('procMount')} (baseline: Default)"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{name}: hostPort {port['hostPort']} (baseline)"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation is not false (restricted)"
        capabilities: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{name}: capabilities do not drop ALL (restricted)"
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"{name}: adds capabilities {sorted(added)} (restricted: only NET_BIND_SERVICE)"
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            yield f"{name}: runAsNonRoot is not true, in the container or the pod (restricted)"
        if sc.get("runAsUser") == 0:
            yield f"{name}: runAsUser is 0 (restricted: no root)"
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in _SECCOMP_OK:
            yield f"{name}: seccompProfile {seccomp} (restricted: RuntimeDefault or Localhost)"
        if seccomp is None and pod_seccomp is None:
            yield f"{name}: no seccompProfile, in the container or the pod (restricted)"


def _security_context_problems(where: str, sc: Mapping[str, Any]) -> Iterator[str]:
    """Controls that apply alike to the pod's and each container's securityContext (baseline)."""
    selinux: Mapping[str, Any] = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES:
        yield f"seLinuxOptions.type {selinux['type']} (baseline)"
    for field in ("user", "role"):
        if selinux.get(field):
            yield f"seLinuxOptions.{field} is set (baseline)"
    if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        yield "appArmorProfile Unconfined (baseline)"
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        yield "windowsOptions.hostProcess (baseline)"


def pod_security(objects: Iterable[Obj]) -> list[str]:
    problems: list[str] = []
    for where, pod in pod_specs(objects):
        problems.extend(f"{where}: {problem}" for problem in _pod_problems(pod))
    return problems


# --- Secrets --------------------------------------------------------------------------------------------------

# The keys the certificate Job writes into the Secrets the install ships empty (wfboost certs, wfboost credentials).
SERVING_KEYS = frozenset({TLS_CERT, TLS_KEY, CA_CERT, CA_KEY})
FILLED_IN: Mapping[str, frozenset[str]] = {
    "wfboost-tls": SERVING_KEYS,
    "wfboost-sidestore-tls": SERVING_KEYS,
    "wfboost-sidestore-clients": frozenset({CLIENTS_FILE}),
    "wfboost-webhook-sidestore": frozenset({TOKEN, CA_CERT}),
    "wfboost-redis-credentials": frozenset({*REDIS_USERS, ACL_FILE}),
}


@dataclass(frozen=True)
class SecretUse:
    where: str
    namespace: str
    name: str
    key: str | None  # None: the whole Secret


def secret_uses(objects: Iterable[Obj]) -> Iterator[SecretUse]:
    """Every Secret (and key) a pod template or ServiceAccount of `objects` refers to."""
    objects = list(objects)
    namespaces = {label(o): str((o.get("metadata") or {}).get("namespace") or "") for o in objects}
    for where, pod in pod_specs(objects):
        ns = namespaces[where]
        for ref in pod.get("imagePullSecrets") or []:
            yield SecretUse(f"{where} imagePullSecrets", ns, ref["name"], None)
        for volume in pod.get("volumes") or []:
            sources = [volume] + [s for s in (volume.get("projected") or {}).get("sources") or []]
            for source in sources:
                secret = source.get("secret")
                if secret is None:
                    continue
                name = secret.get("secretName") or secret.get("name")
                items = secret.get("items") or []
                at = f"{where} volume {volume.get('name')}"
                if not items:
                    yield SecretUse(at, ns, name, None)
                yield from (SecretUse(at, ns, name, item["key"]) for item in items)
        for container in containers(pod):
            at = f"{where} container {container.get('name')}"
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    yield SecretUse(f"{at} env {env.get('name')}", ns, ref["name"], ref["key"])
            for source in container.get("envFrom") or []:
                if source.get("secretRef"):
                    yield SecretUse(f"{at} envFrom", ns, source["secretRef"]["name"], None)
    for obj in objects:
        if obj.get("kind") == "ServiceAccount":
            for ref in [*(obj.get("secrets") or []), *(obj.get("imagePullSecrets") or [])]:
                yield SecretUse(label(obj), namespaces[label(obj)], ref["name"], None)


def unknown_secrets(objects: Iterable[Obj], user_provided: Set[str] = frozenset()) -> list[str]:
    """Secrets referred to that the install does not create, and keys its certificate Job does not write.

    `user_provided`: Secret names the chart documents as the operator's (external Redis credentials, pull secrets).
    A cert-manager Certificate counts as creating its Secret.
    """
    objects = list(objects)
    created = {(str(o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o
               for o in objects if o.get("kind") == "Secret"}
    for certificate in objects:  # cert-manager writes a Certificate's Secret: tls.crt, tls.key, ca.crt
        if certificate.get("kind") == "Certificate" and str(certificate["apiVersion"]).startswith("cert-manager.io/"):
            key = (str(certificate["metadata"].get("namespace") or ""), certificate["spec"]["secretName"])
            created[key] = {"data": dict.fromkeys((TLS_CERT, TLS_KEY, CA_CERT), "")}
    problems: list[str] = []
    for use in secret_uses(objects):
        if use.name in user_provided:
            continue
        secret = created.get((use.namespace, use.name))
        if secret is None:
            problems.append(f"{use.where}: Secret {use.name} is neither created by the install nor user-provided")
            continue
        if use.key is None:
            continue
        keys = {*(secret.get("data") or {}), *(secret.get("stringData") or {}), *FILLED_IN.get(use.name, ())}
        if use.key not in keys:
            problems.append(f"{use.where}: key {use.key} of Secret {use.name} is written by nothing")
    return problems


# --- Redis ----------------------------------------------------------------------------------------------------

# user:$(PASSWORD)@, the user literal (an ACL user of the bundled Valkey) or read from a Secret too.
_URL_CREDENTIALS = re.compile(r"^rediss?://(?:[A-Za-z0-9_-]+|\$\([A-Z0-9_]+\)):\$\(([A-Z0-9_]+)\)@")


def _is_redis(container: Obj) -> bool:
    image = str(container.get("image", "")).rsplit("/", 1)[-1]
    return image.startswith(("redis", "valkey"))


def redis_without_credentials(objects: Iterable[Obj], user_provided: Set[str] = frozenset()) -> list[str]:
    objects = list(objects)
    problems: list[str] = []
    secrets = {o["metadata"]["name"] for o in objects if o.get("kind") == "Secret"} | set(user_provided)
    redis_pods: list[tuple[str, Obj]] = []
    for where, pod in pod_specs(objects):
        for container in containers(pod):
            at = f"{where} container {container.get('name')}"
            if _is_redis(container):
                redis_pods.append((where, pod))
                problems.extend(f"{at}: {p}" for p in _server_problems(pod, container, secrets))
            problems.extend(f"{at}: {p}" for p in _client_problems(container, secrets))
    problems.extend(_network_problems(objects, redis_pods))
    return problems


def _server_problems(pod: Obj, container: Obj, secrets: Set[str]) -> Iterator[str]:
    args = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    if "--aclfile" not in args:
        yield "runs Redis/Valkey without --aclfile: its default user needs no password"
        return
    path = args[args.index("--aclfile") + 1]
    if any(word in " ".join(args) for word in ("nopass", "--requirepass ''", '--requirepass ""')):
        yield "an argument grants access without a password"
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            secret = (volumes.get(mount["name"]) or {}).get("secret") or {}
            if secret.get("secretName") not in secrets:
                yield f"its ACL file {path} is not from a Secret the install creates"
            if secret.get("optional"):
                yield f"its ACL file {path} is optional: without it the server would start open"
            return
    yield f"its ACL file {path} is on no mounted volume"


def _client_problems(container: Obj, secrets: Set[str]) -> Iterator[str]:
    env = {e["name"]: e for e in container.get("env") or []}
    for name, entry in env.items():
        value = entry.get("value")
        if not isinstance(value, str) or not value.startswith(("redis://", "rediss://")):
            continue
        match = _URL_CREDENTIALS.match(value)
        if match is None:
            yield f"env {name}: a Redis URL without user:$(PASSWORD)@ credentials"
            continue
        password = env.get(match.group(1)) or {}
        ref = (password.get("valueFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") not in secrets:
            yield f"env {name}: the password ${match.group(1)} is not read from a known Secret"


def _network_problems(objects: list[Obj], redis_pods: list[tuple[str, Obj]]) -> Iterator[str]:
    """A NetworkPolicy must select each Redis pod and admit only pods of its namespace (no ipBlock, no
    namespaceSelector), and no other policy may open it wider (policies add up)."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    templates = {label(o): ((o.get("spec") or {}).get("template") or {}) for o in objects}
    for where, _ in redis_pods:
        labels = (templates.get(where, {}).get("metadata") or {}).get("labels") or {}
        selecting = [p for p in policies if selects(p["spec"].get("podSelector") or {}, labels)]
        if not selecting:
            yield f"{where}: no NetworkPolicy selects the Redis pods: any pod in the cluster can connect"
        for policy in selecting:
            for rule in policy["spec"].get("ingress") or [{}]:
                sources = rule.get("from")
                if not sources:
                    yield f"{label(policy)}: an ingress rule with no 'from' admits every pod and address"
                for source in sources or []:
                    if "ipBlock" in source or "namespaceSelector" in source or "podSelector" not in source:
                        yield f"{label(policy)}: admits sources beyond this namespace's pods: {source}"


# --- RBAC -----------------------------------------------------------------------------------------------------

_WRITE = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
_READ_ALL = frozenset({"get", "list", "watch", "*"})
_WEBHOOK_CONFIGS = frozenset({"mutatingwebhookconfigurations", "validatingwebhookconfigurations"})


@dataclass(frozen=True)
class Grant:
    subject: str  # "namespace/name" of a ServiceAccount, or "Group:name" / "User:name"
    role: str
    rule: Mapping[str, Any]
    namespace: str | None  # None: cluster-wide (ClusterRoleBinding)


def grants(objects: Iterable[Obj]) -> Iterator[Grant]:
    """Every (subject, rule) the rendered bindings grant; a binding to a role the install does not render, or to an
    aggregated ClusterRole, is granted `*` (what it allows cannot be seen here)."""
    objects = list(objects)
    roles = {(o["kind"], str(o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o
             for o in objects if o.get("kind") in ("Role", "ClusterRole")}
    unknown = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    for binding in objects:
        if binding.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ns = str(binding["metadata"].get("namespace") or "")
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"]))
        rules = [unknown] if role is None or role.get("aggregationRule") else role.get("rules") or []
        scope = None if binding["kind"] == "ClusterRoleBinding" else ns
        for subject in binding.get("subjects") or []:
            who = (f"{subject.get('namespace') or ns}/{subject['name']}" if subject["kind"] == "ServiceAccount"
                   else f"{subject['kind']}:{subject['name']}")
            for rule in rules:
                yield Grant(who, f"{ref['kind']}/{ref['name']}", rule, scope)


def _matches(rule: Mapping[str, Any], group: str, resources: Set[str]) -> bool:
    groups = set(rule.get("apiGroups") or [])
    named = set(rule.get("resources") or [])
    return bool(groups & {group, "*"}) and bool(named & (set(resources) | {"*"}))


def rbac_writers(objects: Iterable[Obj]) -> dict[str, set[str]]:
    """What each subject may do that matters here: "webhook-configs" (write any webhook configuration), "secrets"
    (create any Secret, or read Secrets not named), "escalate" (escalate, bind, impersonate), "pods" (create or
    change pods, whose image and account then run as the writer chooses, or mint ServiceAccount tokens)."""
    powers: dict[str, set[str]] = {}
    for grant in grants(objects):
        verbs = set(grant.rule.get("verbs") or [])
        if _matches(grant.rule, "admissionregistration.k8s.io", _WEBHOOK_CONFIGS) and verbs & _WRITE:
            powers.setdefault(grant.subject, set()).add("webhook-configs")
        if _matches(grant.rule, "", {"secrets"}) and (
            verbs & {"create", "*"} or (verbs & _READ_ALL and not grant.rule.get("resourceNames"))
        ):
            powers.setdefault(grant.subject, set()).add("secrets")
        if verbs & {"escalate", "bind", "impersonate", "*"}:
            powers.setdefault(grant.subject, set()).add("escalate")
        if (_matches(grant.rule, "", {"pods", "pods/ephemeralcontainers"}) and verbs & {"create", *_WRITE}) or (
                _matches(grant.rule, "", {"serviceaccounts/token"}) and verbs & {"create", "*"}):
            powers.setdefault(grant.subject, set()).add("pods")
    return powers


def allowed(objects: Iterable[Obj], subject: str, verb: str, group: str, resource: str, namespace: str | None,
            name: str | None) -> bool:
    """Whether the rendered RBAC lets `subject` ("namespace/serviceaccount") do `verb` on one object (or a
    collection, `name` None): the rule's group, resource, verb and resourceNames, in the binding's scope."""
    for grant in grants(objects):
        rule = grant.rule
        if grant.subject != subject or (grant.namespace is not None and grant.namespace != namespace):
            continue
        verbs = set(rule.get("verbs") or [])
        names = rule.get("resourceNames") or []
        if (verbs & {verb, "*"} and _matches(rule, group, {resource}) and (not names or name in names)):
            return True
    return False
