"""`wfboost policy schema|validate|show`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from wfboost.cli import main
from wfboost.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
HEADER = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_schema_is_printed_and_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "schema")
    schema = orjson.loads(out)
    Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((ROOT / "deploy" / "policy.example.yaml").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(example))
    assert code == 0


def test_validate_prints_every_problem_on_a_line_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HEADER + "features: {memoize: true}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        HEADER + "features: {shrinkTaskResults: 1}\n"
        "memoize: {maxStaleness: P1M, replay: {resources: {limits: {cpu: 1}}}}\n"
    )
    code, out, err = run(capsys, "policy", "validate", str(good), str(bad))
    assert code == 1
    assert out == f"{good}: valid\n"
    assert err.splitlines() == [
        f"{bad}: features.shrinkTaskResults: expected true or false, got 1",
        f"{bad}: memoize.maxStaleness: 'P1M' is not an ISO-8601 duration (years and months have no fixed length; "
        "write days instead, e.g. P30D or P365D)",
    ]  # `cpu: 1` is a quantity Kubernetes accepts, and so does the policy


def test_show_prints_the_policy_in_force_and_a_namespace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        HEADER + "features: {memoize: true}\nmemoize: {namespaceSelector: {matchLabels: {cache: 'on'}}}\n"
    )
    code, out, _ = run(capsys, "policy", "show", "--policy", str(policy), "--namespace", "ml", "--label", "cache=on")
    assert code == 0
    shown, namespace = out.split("---\n")
    assert load_policy(shown) == load_policy(policy.read_text())
    assert yaml.safe_load(namespace)["memoize"]["enabled"] is True
    code, out, _ = run(capsys, "policy", "show", "--policy", str(policy), "--namespace", "ml")
    assert yaml.safe_load(out.split("---\n")[1])["memoize"]["enabled"] is False  # labels unknown: selector says no


def test_show_of_a_bad_policy_is_refused_with_each_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(HEADER + "memoize: {maxStaleness: 7, namespaces: Team}\n")
    code, out, err = run(capsys, "policy", "show", "--policy", str(policy))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"wfboost policy show: {policy} is invalid:",
        "  memoize.maxStaleness: expected a string, got 7",
        "  memoize.namespaces: expected a list, got 'Team'",
    ]


def test_the_configmap_that_carries_the_policy_is_read_like_the_mounted_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "wfboost-policy"},
        "data": {"policy.yaml": HEADER + "features: {memoize: true}\nmemoize: {maxStaleness: P1M}\n"},
    }
    carried = tmp_path / "cm.yaml"
    carried.write_text(yaml.safe_dump(manifest))
    code, _, err = run(capsys, "policy", "validate", str(carried))
    assert code == 1 and err.startswith(f"{carried}: memoize.maxStaleness: 'P1M' is not an ISO-8601 duration")

    manifest["data"] = {"other.yaml": HEADER}
    carried.write_text(yaml.safe_dump(manifest))
    code, _, err = run(capsys, "policy", "validate", str(carried))
    assert (code, err) == (1, f"{carried}: a ConfigMap without a data key 'policy.yaml' (the key the webhook mounts)\n")

    manifest["data"] = {"policy.yaml": HEADER + "features: {memoize: true}\n"}
    carried.write_text(yaml.safe_dump(manifest))
    code, out, _ = run(capsys, "policy", "show", "--policy", str(carried))
    assert code == 0 and yaml.safe_load(out)["features"]["memoize"] is True
