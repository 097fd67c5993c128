"""The policy: defaults, every section, errors that name the field, durations, scoping, and hot reload."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import textwrap
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from wfboost.policy import (
    DurationError,
    EffectiveMemoize,
    Features,
    LabelRequirement,
    LabelSelector,
    LatchOverride,
    LatchSettings,
    MemoizeOverride,
    MemoizeSettings,
    NamespaceOverride,
    NamespaceScope,
    Policy,
    PolicyError,
    PolicyWatcher,
    ReplayResources,
    ReplaySettings,
    ShrinkSettings,
    SideStoreSettings,
    dump_policy,
    format_duration,
    load_policy,
    parse_duration,
    policy_from_document,
    policy_schema,
    policy_to_document,
)
from wfboost.policy.quantity import parse_quantity

ROOT = Path(__file__).resolve().parents[1]
HEADER = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\n"


def policy_text(body: str) -> str:
    return HEADER + textwrap.dedent(body)


def all_features(policy: Policy, *, memoize: bool = True) -> Policy:
    """The policy with every switch on. Files may not turn on features that are not built yet (shrinking task
    results), but the model's rules for them are tested already."""
    return dataclasses.replace(policy, features=Features(memoize, True, True, True, True))


def errors_of(body: str) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_text(body))
    return caught.value.messages


# --- defaults -------------------------------------------------------------------------------------------------


def test_default_policy_turns_every_feature_off() -> None:
    policy = Policy.default()
    assert policy.features == Features(memoize=False, latch=False, shrink_workflows=False, shrink_task_results=False)
    assert policy.namespace_in_scope("team-a")
    assert not policy.memoize_settings_for("team-a").enabled
    assert not policy.latch_settings_for("team-a").enabled
    assert not policy.shrink_workflows_in("team-a")
    assert not policy.shrink_task_results_in("team-a")


def test_a_file_with_only_the_header_is_the_default_policy() -> None:
    assert load_policy(HEADER) == Policy.default()


def test_default_values_match_the_documented_ones() -> None:
    policy = Policy.default()
    assert policy.memoize.max_staleness == timedelta(days=7)
    assert policy.memoize.max_staleness_limit is None
    assert not policy.memoize.share_across_namespaces
    assert not policy.memoize.allow_writable_volumes
    assert not policy.memoize.trust_image_tags  # only images pinned by digest are memoized by default
    assert not policy.memoize.trust_config_maps_and_secrets and not policy.memoize.trust_read_only_volumes
    assert not policy.memoize.opt_in
    assert policy.latch == LatchSettings(timedelta(seconds=30), timedelta(seconds=10), timedelta(hours=1))
    assert policy.shrink == ShrinkSettings(4096, 65536, 3)
    assert policy.side_store == SideStoreSettings(None, 10 * 1024**3)
    assert policy.memoize.replay.resources.as_kubernetes() == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "50m", "memory": "64Mi"},
    }


# --- every section --------------------------------------------------------------------------------------------

FULL = """
namespaces:
  include: ["team-*", "ml"]
  exclude: ["team-secret"]
  selector:
    matchLabels: {env: prod}
features: {memoize: true, latch: false, shrinkWorkflows: false, shrinkTaskResults: false}
memoize:
  namespaces: ["team-a", "ml"]
  namespaceSelector:
    matchExpressions:
      - {key: example.com/cache, operator: In, values: ["on", "yes"]}
      - {key: legacy, operator: DoesNotExist}
  maxStaleness: P2D
  maxStalenessLimit: P2W
  shareAcrossNamespaces: true
  allowWritableVolumes: true
  optIn: true
  trustImageTags: true
  trustConfigMapsAndSecrets: true
  trustReadOnlyVolumes: true
  replay:
    image: registry.example.com/replay@sha256:0123
    imagePullPolicy: Always
    resources:
      requests: {memory: 8Mi, cpu: 5m}
      limits: {cpu: "1", memory: 32Mi, ephemeral-storage: 1Gi}
latch:
  leaseTTL: PT1M
  heartbeat: PT15S
  followerWait: PT3H
shrink:
  valueThresholdBytes: 1024
  objectThresholdBytes: 0
  compressionLevel: 9
sideStore:
  url: https://sidestore.wfboost.svc:8443
  namespaceQuotaBytes: null
overrides:
  - namespaces: ["team-b*"]
    memoize: {enabled: true, maxStaleness: PT6H}
  - namespaceSelector: {matchLabels: {tier: experimental}}
    memoize: {maxStalenessLimit: P1D, allowWritableVolumes: false, trustImageTags: false}
    latch: {enabled: false, leaseTTL: PT2M, heartbeat: PT20S, followerWait: PT10M}
"""


def test_every_section_is_parsed() -> None:
    policy = load_policy(policy_text(FULL))
    assert policy == Policy(
        namespaces=NamespaceScope(
            include=("team-*", "ml"), exclude=("team-secret",), selector=LabelSelector(match_labels=(("env", "prod"),))
        ),
        features=Features(memoize=True, latch=False, shrink_workflows=False, shrink_task_results=False),
        memoize=MemoizeSettings(
            namespaces=("team-a", "ml"),
            namespace_selector=LabelSelector(
                match_expressions=(
                    LabelRequirement("example.com/cache", "In", ("on", "yes")),
                    LabelRequirement("legacy", "DoesNotExist"),
                )
            ),
            max_staleness=timedelta(days=2),
            max_staleness_limit=timedelta(weeks=2),
            share_across_namespaces=True,
            allow_writable_volumes=True,
            opt_in=True,
            trust_image_tags=True,
            trust_config_maps_and_secrets=True,
            trust_read_only_volumes=True,
            replay=ReplaySettings(
                image="registry.example.com/replay@sha256:0123",
                image_pull_policy="Always",
                resources=ReplayResources(
                    requests=(("cpu", "5m"), ("memory", "8Mi")),
                    limits=(("cpu", "1"), ("ephemeral-storage", "1Gi"), ("memory", "32Mi")),
                ),
            ),
        ),
        latch=LatchSettings(timedelta(minutes=1), timedelta(seconds=15), timedelta(hours=3)),
        shrink=ShrinkSettings(value_threshold_bytes=1024, object_threshold_bytes=0, compression_level=9),
        side_store=SideStoreSettings(url="https://sidestore.wfboost.svc:8443", namespace_quota_bytes=None),
        overrides=(
            NamespaceOverride(
                namespaces=("team-b*",), memoize=MemoizeOverride(enabled=True, max_staleness=timedelta(hours=6))
            ),
            NamespaceOverride(
                namespace_selector=LabelSelector(match_labels=(("tier", "experimental"),)),
                memoize=MemoizeOverride(
                    max_staleness_limit=timedelta(days=1),
                    allow_writable_volumes=False,
                    trust_image_tags=False,
                ),
                latch=LatchOverride(
                    enabled=False,
                    lease_ttl=timedelta(minutes=2),
                    heartbeat=timedelta(seconds=20),
                    follower_wait=timedelta(minutes=10),
                ),
            ),
        ),
    )


def test_requests_without_limits_keep_the_default_limits() -> None:
    policy = load_policy(policy_text("memoize: {replay: {resources: {requests: {cpu: 20m}}}}"))
    assert policy.memoize.replay.resources == ReplayResources(
        requests=(("cpu", "20m"),), limits=ReplayResources().limits
    )


def test_example_policy_in_deploy_loads_and_means_what_its_comments_say() -> None:
    policy = load_policy((ROOT / "deploy" / "policy.example.yaml").read_text(), own_namespace="wfboost")
    assert policy.features == Features(memoize=True, compress_status=True)
    assert policy.compress_status_in("ml-team") and policy.shrink.status_threshold_bytes == 65536
    assert not policy.namespace_in_scope("wfboost")
    assert not policy.namespace_in_scope("argo")
    assert not policy.namespace_in_scope("monitoring-eu")
    assert policy.memoize_settings_for("ml-team").enabled
    assert not policy.memoize_settings_for("default").enabled
    assert policy.memoize_settings_for("default", {"wfboost.io/memoize": "enabled"}).enabled
    nightly = policy.memoize_settings_for("data-nightly")
    assert nightly.enabled and nightly.max_staleness == timedelta(days=14)
    experimental = {"tier": "experimental"}
    assert policy.memoize_settings_for("data-x", experimental).max_staleness == timedelta(0)
    assert policy.memoize_settings_for("data-x", experimental).staleness(timedelta(days=3)) == timedelta(days=3)
    assert not policy.latch_settings_for("data-x").enabled  # the example leaves latching off
    assert policy.memoize_settings_for("data-x").staleness(timedelta(days=90)) == timedelta(days=30)


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("memoize: {maxStaleness: P7X}", "memoize.maxStaleness: 'P7X' is not an ISO-8601 duration"),
        ("memoize: {maxStaleness: P1M}", "memoize.maxStaleness: 'P1M' is not an ISO-8601 duration (years and months"),
        ("memoize: {maxStaleness: 7}", "memoize.maxStaleness: expected a string, got 7"),
        ("memoize: {maxStalenessLimit: 7}", "memoize.maxStalenessLimit: expected a string or null, got 7"),
        ("features: {latch: 1}", "features.latch: expected true or false, got 1"),
        (
            "memoize: {namespaceSelector: {matchLabels: {a: 1}}}",
            "memoize.namespaceSelector.matchLabels.a: expected a string, got 1",
        ),
        ("namespaces: {include: [Team-A]}", "namespaces.include[0]: 'Team-A' is not a namespace glob"),
        ("namespaces: {include: team-a}", "namespaces.include: expected a list, got 'team-a'"),
        ("latch: {followerWait: P0D}", "latch.followerWait: 'P0D' must be longer than zero"),
        ("latch: {leaseTTL: PT10S, heartbeat: PT20S}", "latch.heartbeat: PT20S must be shorter than latch.leaseTTL"),
        ("shrink: {compressionLevel: 25}", "shrink.compressionLevel: 25 is above the maximum 19"),
        ("shrink: {valueThresholdBytes: 0}", "shrink.valueThresholdBytes: 0 is below the minimum 256"),
        ("shrink: {valueThresholdBytes: 100}", "shrink.valueThresholdBytes: 100 is below the minimum 256"),
        ("sideStore: {url: ftp://host}", "sideStore.url: 'ftp://host' is not an http:// or https:// URL"),
        ("memoize: {replay: {imagePullPolicy: Sometimes}}", "memoize.replay.imagePullPolicy: 'Sometimes' is not one"),
        ("memoize: {replay: {image: 'a b'}}", "memoize.replay.image: 'a b' is not an image reference"),
        (
            "memoize: {replay: {resources: {limits: {nvidia.com/gpu: '1'}}}}",
            "memoize.replay.resources.limits: 'nvidia.com/gpu' is not one of cpu, memory, ephemeral-storage",
        ),
        (
            "memoize: {replay: {resources: {requests: {cpu: lots}}}}",
            "memoize.replay.resources.requests.cpu: 'lots' is not a Kubernetes quantity",
        ),
        (
            "memoize: {replay: {resources: {requests: {cpu: '2'}}}}",
            "memoize.replay.resources.requests.cpu: 2 is more than the limit 50m",
        ),
        (
            "memoize: {namespaceSelector: {matchLabels: {example.com/team: 'a b'}}}",
            "memoize.namespaceSelector.matchLabels[\"example.com/team\"]: 'a b' is not a label value",
        ),
        (
            "memoize: {namespaceSelector: {matchExpressions: [{key: team, operator: Exists, values: [a]}]}}",
            "memoize.namespaceSelector.matchExpressions[0].values: Exists and DoesNotExist take no values",
        ),
        (
            "memoize: {namespaceSelector: {matchExpressions: [{key: team, operator: In}]}}",
            "memoize.namespaceSelector.matchExpressions[0].values: required field is missing",
        ),
        ("overrides: [{memoize: {maxStaleness: P1D}}]", "overrides[0]: needs namespaces or namespaceSelector"),
        (
            "overrides: [{namespaces: [a], latch: {heartbeat: PT1M}}]",
            "overrides[0].latch.heartbeat: PT1M must be shorter than the lease it renews (PT30S)",
        ),
    ],
)
def test_errors_name_the_field_and_the_reason(body: str, expected: str) -> None:
    messages = errors_of(body)
    assert any(message.startswith(expected) for message in messages), messages


def test_wrong_api_version_and_kind_are_named() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("apiVersion: v1\nkind: ConfigMap\ndata: {policy.yaml: ''}\n")
    assert caught.value.messages[0] == "apiVersion: must be 'wfboost.io/v1alpha1', got 'v1'"
    assert "kind: must be 'Policy', got 'ConfigMap'" in caught.value.messages
    assert any(message.startswith("data: unknown field;") for message in caught.value.messages)


def test_missing_header_fields_are_named() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("features: {memoize: true}\n")
    assert caught.value.messages == (
        "apiVersion: required field is missing",
        "kind: required field is missing",
    )


def test_all_errors_are_reported_at_once_sorted_by_field() -> None:
    messages = errors_of(
        """
        memoize: {maxStaleness: P7X, shareAcrossNamespaces: maybe}
        latch: {leaseTTL: 5}
        shrink: {compressionLevel: 0}
        """
    )
    assert [message.split(":")[0] for message in messages] == [
        "latch.leaseTTL",
        "memoize.maxStaleness",
        "memoize.shareAcrossNamespaces",
        "shrink.compressionLevel",
    ]
    assert str(PolicyError(messages)).startswith("latch.leaseTTL: expected a string, got 5; ")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("memoize: {maxStaleneess: P1D}", "memoize.maxStaleneess: unknown field (did you mean 'maxStaleness'?)"),
        ("memoize: {max_staleness: P1D}", "memoize.max_staleness: unknown field (did you mean 'maxStaleness'?)"),
        ("latch: {leasettl: PT1M}", "latch.leasettl: unknown field (did you mean 'leaseTTL'?)"),
        ("feature: {memoize: true}", "feature: unknown field (did you mean 'features'?)"),
        (
            "overrides: [{namespaces: [a], memoise: {}}]",
            "overrides[0].memoise: unknown field (did you mean 'memoize'?)",
        ),
        ("shrink: {zstd: 3}", "shrink.zstd: unknown field; known fields here: compressionLevel, controllerVersion,"),
    ],
)
def test_unknown_fields_are_rejected_with_a_suggestion_when_close(body: str, expected: str) -> None:
    messages = errors_of(body)
    assert any(message.startswith(expected) for message in messages), messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "(top level): the policy is empty"),
        ("- a\n- b\n", "(top level): expected a mapping, got a list"),
        (HEADER + "memoize: [\n", "line 4, column 1:"),
        (HEADER + "memoize: {}\nmemoize: {}\n", "line 4, column 1: the key 'memoize' appears twice"),
        (HEADER + "---\n" + HEADER, "(top level): expected one YAML document, found 2"),
    ],
)
def test_unusable_text_is_refused_with_a_reason(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    assert caught.value.messages[0].startswith(expected), caught.value.messages


def test_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(policy_schema())


def _schema_field_paths(schema: Mapping[str, Any], prefix: str, defs: Mapping[str, Any]) -> list[str]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    for branch in schema.get("anyOf", []):
        if "$ref" in branch and "properties" in defs[branch["$ref"].rsplit("/", 1)[1]]:
            schema = defs[branch["$ref"].rsplit("/", 1)[1]]
    paths = []
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        refs = [child.get("$ref", ""), *(branch.get("$ref", "") for branch in child.get("anyOf", []))]
        if any(ref.endswith("/labelSelector") for ref in refs) or name in ("requests", "limits"):
            continue  # documented as a whole (a Kubernetes label selector, a resource list)
        paths.extend(_schema_field_paths(child, path, defs))
    if schema.get("type") == "array" and "items" in schema:
        paths.extend(_schema_field_paths(schema["items"], prefix + "[]", defs))
    return paths


def test_every_schema_field_is_documented() -> None:
    schema = policy_schema()
    documented = (ROOT / "docs" / "policy.md").read_text()
    paths = _schema_field_paths(schema, "", schema["$defs"])
    assert "overrides[].latch.heartbeat" in paths
    missing = [path for path in paths if f"`{path}`" not in documented]
    assert not missing, f"fields of the policy schema missing from docs/policy.md: {missing}"


# --- durations ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P0D", timedelta(0)),
        ("PT0S", timedelta(0)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("P1W2D", timedelta(days=9)),
        ("PT12H", timedelta(hours=12)),
        ("PT36H", timedelta(hours=36)),
        ("PT90M", timedelta(minutes=90)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1,25S", timedelta(seconds=1.25)),
        ("PT0.0000004S", timedelta(0)),
        ("PT0.0000006S", timedelta(microseconds=1)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected PnWnDTnHnMnS"),
        ("P", "expected PnWnDTnHnMnS"),
        ("PT", "expected PnWnDTnHnMnS"),
        ("P1DT", "expected PnWnDTnHnMnS"),
        ("7D", "expected PnWnDTnHnMnS"),
        ("P7X", "expected PnWnDTnHnMnS"),
        ("P1.5D", "expected PnWnDTnHnMnS"),
        ("PT1.5M", "expected PnWnDTnHnMnS"),
        ("P1D2W", "expected PnWnDTnHnMnS"),
        ("P 1D", "expected PnWnDTnHnMnS"),
        ("p7d", "designators must be upper case"),
        ("P1M", "years and months have no fixed length"),
        ("P1Y2M3D", "years and months have no fixed length"),
        ("-P1D", "negative durations are not allowed"),
        ("P9999999999999D", "too large"),
    ],
)
def test_bad_durations_say_why(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).startswith(f"{text!r} is not an ISO-8601 duration ({reason}")


def test_months_are_fine_after_t() -> None:
    assert parse_duration("PT1M") == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "P0D"),
        (timedelta(days=7), "P7D"),
        (timedelta(days=1, hours=1), "P1DT1H"),
        (timedelta(minutes=1, microseconds=5), "PT1M0.000005S"),
        (timedelta(seconds=1.5), "PT1.5S"),
    ],
)
def test_durations_format_canonically(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_negative_durations_cannot_be_formatted() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(st.timedeltas(min_value=timedelta(0)))
def test_duration_round_trip_from_timedelta(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@st.composite
def duration_texts(draw: st.DrawFn) -> str:
    number = st.integers(min_value=0, max_value=10**5)
    weeks, days = draw(st.none() | number), draw(st.none() | number)
    hours, minutes = draw(st.none() | number), draw(st.none() | number)
    seconds = draw(st.none() | st.from_regex(r"[0-9]{1,5}([.,][0-9]{1,9})?", fullmatch=True))
    date = (f"{weeks}W" if weeks is not None else "") + (f"{days}D" if days is not None else "")
    time = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if value is not None
    )
    if not date and not time:
        date = "0D"
    return "P" + date + (f"T{time}" if time else "")


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(duration_texts())
def test_duration_texts_reparse_to_the_same_value(text: str) -> None:
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


# --- namespaces, selectors, effective settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        (LabelRequirement("t", "In", ("a", "b")), {"t": "a"}, True),
        (LabelRequirement("t", "In", ("a",)), {"t": "c"}, False),
        (LabelRequirement("t", "In", ("a",)), {}, False),
        (LabelRequirement("t", "NotIn", ("a",)), {"t": "c"}, True),
        (LabelRequirement("t", "NotIn", ("a",)), {}, True),
        (LabelRequirement("t", "NotIn", ("a",)), {"t": "a"}, False),
        (LabelRequirement("t", "Exists"), {"t": ""}, True),
        (LabelRequirement("t", "Exists"), {}, False),
        (LabelRequirement("t", "DoesNotExist"), {}, True),
        (LabelRequirement("t", "DoesNotExist"), {"t": "x"}, False),
    ],
)
def test_label_requirements_follow_kubernetes(
    requirement: LabelRequirement, labels: dict[str, str], expected: bool
) -> None:
    assert requirement.matches(labels) is expected


def test_selectors_need_known_labels() -> None:
    assert LabelSelector().matches({})
    assert not LabelSelector().matches(None)
    selector = LabelSelector(match_labels=(("team", "a"),), match_expressions=(LabelRequirement("x", "Exists"),))
    assert selector.matches({"team": "a", "x": "1"})
    assert not selector.matches({"team": "a"})


@pytest.mark.parametrize("namespace", ["kube-system", "wfboost-system"])
def test_always_excluded_namespaces_stay_out_whatever_the_file_says(namespace: str) -> None:
    text = policy_text(
        """
        namespaces: {include: ["*", kube-system, wfboost-system]}
        features: {memoize: true}
        memoize: {namespaces: ["*"]}
        overrides: [{namespaces: ["*"], memoize: {enabled: true}, latch: {enabled: true}}]
        """
    )
    policy = all_features(load_policy(text, own_namespace="wfboost-system"))
    assert not policy.namespace_in_scope(namespace)
    assert not policy.memoize_settings_for(namespace).enabled
    assert not policy.latch_settings_for(namespace).enabled
    assert not policy.shrink_workflows_in(namespace)
    assert not policy.shrink_task_results_in(namespace)
    assert policy.namespace_in_scope("team-a") and policy.memoize_settings_for("team-a").enabled
    assert not Policy.default("wfboost-system").namespace_in_scope(namespace)


def test_scope_include_exclude_and_selector() -> None:
    policy = load_policy(
        policy_text("namespaces: {include: [team-*], exclude: [team-x*], selector: {matchLabels: {env: prod}}}")
    )
    assert policy.namespace_in_scope("team-a", {"env": "prod"})
    assert not policy.namespace_in_scope("team-a", {"env": "dev"})
    assert not policy.namespace_in_scope("team-a")  # labels unknown: out
    assert not policy.namespace_in_scope("team-xy", {"env": "prod"})
    assert not policy.namespace_in_scope("other", {"env": "prod"})
    assert not policy.namespace_in_scope("")


@pytest.mark.parametrize("garbage", [True, 5, None, ["team-a"], {"name": "team-a"}])
def test_helpers_answer_no_for_a_namespace_that_is_not_a_string(garbage: Any) -> None:
    """The webhook passes namespaces from untrusted requests: a mangled one is out of scope, never an exception."""
    policy = all_features(load_policy(policy_text("features: {memoize: true}\nmemoize: {namespaces: ['*']}")))
    assert not policy.namespace_in_scope(garbage)
    assert not policy.memoize_settings_for(garbage).enabled
    assert not policy.latch_settings_for(garbage, labels=garbage).enabled
    assert not policy.shrink_workflows_in(garbage)


def test_memoize_needs_the_switch_the_scope_and_a_namespace_rule() -> None:
    on = load_policy(policy_text("features: {memoize: true}\nmemoize: {namespaces: [team-*]}"))
    assert on.memoize_settings_for("team-a").enabled
    assert not on.memoize_settings_for("other").enabled
    off = load_policy(policy_text("memoize: {namespaces: [team-*]}"))
    assert not off.memoize_settings_for("team-a").enabled
    scoped_out = load_policy(
        policy_text("features: {memoize: true}\nnamespaces: {exclude: [team-a]}\nmemoize: {namespaces: ['*']}")
    )
    assert not scoped_out.memoize_settings_for("team-a").enabled


def test_overrides_apply_in_file_order_later_wins() -> None:
    policy = all_features(load_policy(
        policy_text(
            """
            features: {memoize: true}
            memoize: {namespaces: ["*"], maxStaleness: P7D}
            overrides:
              - namespaces: [team-*]
                memoize: {maxStaleness: P1D, allowWritableVolumes: true}
                latch: {followerWait: PT5M}
              - namespaces: [team-b]
                memoize: {maxStaleness: PT1H, enabled: false}
              - namespaceSelector: {matchLabels: {fast: "yes"}}
                latch: {leaseTTL: PT9S, heartbeat: PT3S}
              - namespaceSelector: {matchLabels: {slow-beat: "yes"}}
                latch: {heartbeat: PT20S}
            """
        )
    ))
    team_a = policy.memoize_settings_for("team-a")
    assert (team_a.enabled, team_a.max_staleness, team_a.allow_writable_volumes) == (True, timedelta(days=1), True)
    team_b = policy.memoize_settings_for("team-b")
    assert (team_b.enabled, team_b.max_staleness, team_b.allow_writable_volumes) == (False, timedelta(hours=1), True)
    assert not policy.latch_settings_for("team-b").enabled  # latching follows memoization
    assert policy.latch_settings_for("team-a").follower_wait == timedelta(minutes=5)
    fast = policy.latch_settings_for("team-a", {"fast": "yes"})
    assert (fast.lease_ttl, fast.heartbeat) == (timedelta(seconds=9), timedelta(seconds=3))
    # Each override is valid alone; layered, the heartbeat (PT20S) outlives the lease (PT9S): it becomes a third.
    both = policy.latch_settings_for("team-a", {"fast": "yes", "slow-beat": "yes"})
    assert (both.lease_ttl, both.heartbeat) == (timedelta(seconds=9), timedelta(seconds=3))
    assert policy.latch_settings_for("team-a", {"slow-beat": "yes"}).heartbeat == timedelta(seconds=20)


def test_latch_needs_memoize() -> None:
    policy = all_features(load_policy(policy_text("memoize: {namespaces: ['*']}")), memoize=False)
    assert not policy.latch_settings_for("team-a").enabled


def test_staleness_is_clamped_by_the_admin_limit() -> None:
    settings = EffectiveMemoize(
        enabled=True,
        max_staleness=timedelta(days=40),
        max_staleness_limit=timedelta(days=30),
        share_across_namespaces=False,
        allow_writable_volumes=False,
        trust_image_tags=False,
        replay=ReplaySettings(),
    )
    assert settings.staleness(None) == timedelta(days=30)
    assert settings.staleness(timedelta(days=2)) == timedelta(days=2)
    assert settings.staleness(timedelta(days=365)) == timedelta(days=30)
    assert settings.staleness(timedelta(0)) == timedelta(0)


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", "0.1"), ("0.1", "0.1"), ("64Mi", str(64 * 2**20)), ("1k", "1000"), ("1e3", "1000"), ("5n", "5e-9")],
)
def test_quantities(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


# --- dump and reload round trip (property) -------------------------------------------------------------------

globs = st.lists(st.from_regex(r"[a-z0-9*?-]{1,12}", fullmatch=True), max_size=3).map(tuple)
label_names = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650))
positive_durations = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=30))
selectors = st.builds(
    LabelSelector,
    match_labels=st.dictionaries(label_names, label_names, max_size=2).map(lambda d: tuple(sorted(d.items()))),
    match_expressions=st.lists(
        st.one_of(
            st.builds(
                LabelRequirement,
                key=label_names,
                operator=st.sampled_from(["In", "NotIn"]),
                values=st.lists(label_names, min_size=1, max_size=2).map(tuple),
            ),
            st.builds(LabelRequirement, key=label_names, operator=st.sampled_from(["Exists", "DoesNotExist"])),
        ),
        max_size=2,
    ).map(tuple),
)


@st.composite
def lease_pairs(draw: st.DrawFn) -> tuple[timedelta, timedelta]:
    lease = draw(st.timedeltas(min_value=timedelta(microseconds=2), max_value=timedelta(days=1)))
    heartbeat = draw(st.timedeltas(min_value=timedelta(microseconds=1), max_value=lease - timedelta(microseconds=1)))
    return lease, heartbeat


@st.composite
def latch_overrides(draw: st.DrawFn) -> LatchOverride:
    pair = draw(st.none() | lease_pairs())
    return LatchOverride(
        enabled=draw(st.none() | st.booleans()),
        lease_ttl=None if pair is None else pair[0],
        heartbeat=None if pair is None else pair[1],
        follower_wait=draw(st.none() | positive_durations),
    )


@st.composite
def overrides(draw: st.DrawFn) -> NamespaceOverride:
    namespaces = draw(globs)
    selector = draw(selectors) if not namespaces else draw(st.none() | selectors)
    return NamespaceOverride(
        namespaces=namespaces,
        namespace_selector=selector,
        memoize=draw(
            st.builds(
                MemoizeOverride,
                enabled=st.none() | st.booleans(),
                max_staleness=st.none() | durations,
                max_staleness_limit=st.none() | durations,
                allow_writable_volumes=st.none() | st.booleans(),
                opt_in=st.none() | st.booleans(),
                trust_image_tags=st.none() | st.booleans(),
                trust_config_maps_and_secrets=st.none() | st.booleans(),
                trust_read_only_volumes=st.none() | st.booleans(),
            )
        ),
        latch=draw(latch_overrides()),
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    lease, heartbeat = draw(lease_pairs())
    cpu_request = draw(st.integers(min_value=1, max_value=500))
    return Policy(
        namespaces=NamespaceScope(include=draw(globs), exclude=draw(globs), selector=draw(st.none() | selectors)),
        features=Features(memoize=draw(st.booleans())),  # the other switches are refused until built
        memoize=MemoizeSettings(
            namespaces=draw(globs),
            namespace_selector=draw(st.none() | selectors),
            max_staleness=draw(durations),
            max_staleness_limit=draw(st.none() | durations),
            share_across_namespaces=draw(st.booleans()),
            allow_writable_volumes=draw(st.booleans()),
            opt_in=draw(st.booleans()),
            trust_image_tags=draw(st.booleans()),
            trust_config_maps_and_secrets=draw(st.booleans()),
            trust_read_only_volumes=draw(st.booleans()),
            replay=ReplaySettings(
                image=draw(st.from_regex(r"[a-z0-9][a-z0-9./:@-]{0,30}", fullmatch=True)),
                image_pull_policy=draw(st.sampled_from(["Always", "IfNotPresent", "Never"])),
                resources=ReplayResources(
                    requests=(("cpu", f"{cpu_request}m"),),
                    limits=(("cpu", f"{cpu_request + draw(st.integers(0, 500))}m"), ("memory", "64Mi")),
                ),
            ),
        ),
        latch=LatchSettings(lease_ttl=lease, heartbeat=heartbeat, follower_wait=draw(positive_durations)),
        shrink=ShrinkSettings(
            value_threshold_bytes=draw(st.integers(min_value=256, max_value=2**40)),
            object_threshold_bytes=draw(st.integers(min_value=0, max_value=2**40)),
            compression_level=draw(st.integers(min_value=1, max_value=19)),
        ),
        side_store=SideStoreSettings(
            url=draw(st.none() | st.sampled_from(["http://s:8080", "https://side.example.com/v1"])),
            namespace_quota_bytes=draw(st.none() | st.integers(min_value=0, max_value=2**50)),
        ),
        overrides=tuple(draw(st.lists(overrides(), max_size=3))),
    )


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(policies())
def test_policy_dump_and_load_round_trip(policy: Policy) -> None:
    assert policy_from_document(policy_to_document(policy)) == policy
    assert load_policy(dump_policy(policy)) == policy


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(policies(), st.sampled_from(["kube-system", "own-ns"]), st.none() | st.dictionaries(label_names, label_names))
def test_no_policy_acts_in_an_always_excluded_namespace(
    policy: Policy, namespace: str, labels: dict[str, str] | None
) -> None:
    policy = policy.with_own_namespace("own-ns")
    assert not policy.namespace_in_scope(namespace, labels)
    assert not policy.memoize_settings_for(namespace, labels).enabled
    assert not policy.latch_settings_for(namespace, labels).enabled
    assert not policy.shrink_workflows_in(namespace, labels)


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(policies(), label_names)
def test_effective_heartbeat_is_always_shorter_than_the_lease(policy: Policy, namespace: str) -> None:
    latch = policy.latch_settings_for(namespace, {})
    assert latch.heartbeat < latch.lease_ttl


# --- the watcher ----------------------------------------------------------------------------------------------

GOOD = HEADER + "features: {memoize: true}\nmemoize: {namespaces: [team-*]}\n"
GOOD_2 = HEADER + "features: {memoize: true}\nmemoize: {namespaces: [other-*]}\n"
BAD = HEADER + "memoize: {maxStaleness: P7X}\n"


def test_watcher_without_a_file_uses_the_default_policy() -> None:
    watcher = PolicyWatcher(None, own_namespace="wfboost")
    assert watcher.loaded
    assert watcher.current == Policy.default("wfboost")
    assert watcher.check_now() is False
    assert (watcher.reloads, watcher.errors, watcher.last_error) == (0, 0, None)


async def test_watcher_run_returns_at_once_without_a_file() -> None:
    await asyncio.wait_for(PolicyWatcher(None).run(), timeout=5)


def test_watcher_good_then_bad_then_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    changes: list[Policy] = []
    watcher = PolicyWatcher(path, own_namespace="wfboost", interval=0.01, on_change=changes.append)
    assert watcher.loaded and watcher.reloads == 1 and watcher.last_error is None
    good = watcher.current
    assert good.memoize_settings_for("team-a").enabled
    assert not good.namespace_in_scope("wfboost")

    path.write_text(BAD)
    with caplog.at_level(logging.WARNING, logger="wfboost.policy.watcher"):
        assert watcher.check_now() is False
        assert watcher.check_now() is False  # the same bad content is reported once
    assert watcher.current is good
    assert watcher.errors == 1
    assert watcher.last_error is not None
    assert watcher.last_error.startswith("memoize.maxStaleness: 'P7X' is not an ISO-8601 duration")
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "keeping the last good policy" in warnings[0] and "memoize.maxStaleness" in warnings[0]
    assert "\n" not in warnings[0]

    path.write_text(GOOD_2)
    assert watcher.check_now() is True
    assert watcher.current.memoize_settings_for("other-a").enabled
    assert not watcher.current.memoize_settings_for("team-a").enabled
    assert (watcher.reloads, watcher.errors, watcher.last_error) == (2, 1, None)
    assert changes == [watcher.current]  # the constructor's first load does not call back


def test_watcher_same_content_is_not_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    changes: list[Policy] = []
    watcher = PolicyWatcher(path, on_change=changes.append)
    path.write_text(GOOD)
    os.utime(path, (1, 1))
    assert watcher.check_now() is False
    assert (watcher.reloads, changes) == (1, [])


def test_watcher_with_a_bad_file_at_start_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD)
    watcher = PolicyWatcher(path, own_namespace="wfboost")
    assert not watcher.loaded
    assert watcher.current == Policy.default("wfboost")
    assert watcher.errors == 1
    path.write_text(GOOD)
    assert watcher.check_now() and watcher.loaded


def test_watcher_keeps_the_last_good_policy_when_the_file_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    watcher = PolicyWatcher(path)
    good = watcher.current
    path.unlink()
    assert watcher.check_now() is False
    assert watcher.current is good and watcher.loaded
    assert watcher.errors == 1
    assert watcher.last_error is not None and "cannot read" in watcher.last_error
    assert watcher.check_now() is False and watcher.errors == 1
    path.write_text(GOOD)  # the same content as before comes back
    assert watcher.check_now() is True
    assert watcher.last_error is None and watcher.current == good


def test_watcher_refuses_files_that_are_not_policies(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"\xff\xfe not utf-8")
    watcher = PolicyWatcher(path)
    assert watcher.last_error is not None and watcher.last_error.startswith("(top level): not UTF-8 text")
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    watcher.check_now()
    assert watcher.last_error is not None and "larger than" in watcher.last_error
    assert watcher.errors == 2 and not watcher.loaded


def kubelet_write(mount: Path, content: str, version: int) -> None:
    """Update a ConfigMap volume the way the kubelet's atomic writer does: write a new timestamped directory,
    point a temporary symlink at it, rename that over `..data`, remove the old directory."""
    new_dir = mount / f"..2024_01_01_00_00_0{version}.{version:09d}"
    new_dir.mkdir()
    (new_dir / "policy.yaml").write_text(content)
    data = mount / "..data"
    old_target = os.readlink(data) if data.is_symlink() else None
    temporary = mount / "..data_tmp"
    temporary.symlink_to(new_dir.name)
    temporary.replace(data)
    user_visible = mount / "policy.yaml"
    if not user_visible.is_symlink():
        user_visible.symlink_to("..data/policy.yaml")
    if old_target is not None:
        old_dir = mount / old_target
        for child in old_dir.iterdir():
            child.unlink()
        old_dir.rmdir()


def test_watcher_follows_a_kubelet_symlink_swap(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    kubelet_write(mount, GOOD, 1)
    watcher = PolicyWatcher(mount / "policy.yaml")
    assert watcher.current.memoize_settings_for("team-a").enabled
    kubelet_write(mount, GOOD_2, 2)
    assert watcher.check_now() is True
    assert watcher.current.memoize_settings_for("other-b").enabled
    kubelet_write(mount, BAD, 3)
    assert watcher.check_now() is False
    assert watcher.current.memoize_settings_for("other-b").enabled and watcher.errors == 1
    kubelet_write(mount, GOOD, 4)
    assert watcher.check_now() is True
    assert watcher.current.memoize_settings_for("team-a").enabled


async def test_watcher_run_picks_up_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    changed = asyncio.Event()
    watcher = PolicyWatcher(path, interval=0.01, on_change=lambda _: changed.set())
    task = asyncio.create_task(watcher.run())
    try:
        path.write_text(GOOD_2)
        await asyncio.wait_for(changed.wait(), timeout=10)
        assert watcher.current.memoize_settings_for("other-a").enabled
        assert watcher.reloads == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_watcher_survives_a_failing_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)

    def explode(_: Policy) -> None:
        raise RuntimeError("listener bug")

    watcher = PolicyWatcher(path, on_change=explode)
    path.write_text(GOOD_2)
    with caplog.at_level(logging.ERROR, logger="wfboost.policy.watcher"):
        assert watcher.check_now() is True
    assert watcher.current.memoize_settings_for("other-a").enabled
    assert any(re.search("on_change callback failed", record.getMessage()) for record in caplog.records)


@settings(max_examples=300)
@given(asks=st.lists(st.tuples(st.sampled_from(["team-a", "team-b1", "ml", "team-secret", "other", ""]),
                               st.none() | st.dictionaries(st.sampled_from(["env", "tier"]),
                                                           st.sampled_from(["prod", "experimental", "dev"]),
                                                           max_size=2)),
                     min_size=1, max_size=12))
def test_kept_answers_are_the_answers_computed_afresh(asks: list[tuple[str, dict[str, str] | None]]) -> None:
    """Effective settings are kept per policy, namespace and label set: asked again, in any order, with the labels
    changed, they are what the policy says when computed anew."""
    policy = load_policy(policy_text(FULL))
    for namespace, labels in asks + asks[::-1]:
        assert policy.memoize_settings_for(namespace, labels) == policy._memoize_settings_for(namespace, labels)
        assert policy.latch_settings_for(namespace, labels) == policy._latch_settings_for(namespace, labels)


def test_a_reloaded_policy_answers_for_itself() -> None:
    prod = {"env": "prod"}
    before = load_policy(policy_text(FULL))
    assert before.memoize_settings_for("team-b1", prod).enabled
    assert not before.memoize_settings_for("team-b1", {"env": "dev"}).enabled  # other labels, another answer
    after = load_policy(policy_text(FULL).replace("memoize: {enabled: true, maxStaleness: PT6H}",
                                                  "memoize: {enabled: false}"))
    assert not after.memoize_settings_for("team-b1", prod).enabled
    assert before.memoize_settings_for("team-b1", prod).enabled
