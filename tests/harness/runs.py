"""What a miss may change in a pod: nothing but where its outputs are uploaded (wfboost.cache.runs)."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.argo_source.taskresult import kubelet_expand

SEGMENT = "wfboost-run-"


def assert_runs_as_it_was(original: dict[str, Any], admitted: dict[str, Any]) -> None:
    """The admitted pod runs the step exactly as the controller built it, except that every copy of the executor's
    template uploads under the run's own segment of the archive key (when it has output artifacts at all)."""
    run_id = admitted["metadata"]["annotations"]["wfboost.io/run"]
    assert len(run_id) == 32 and int(run_id, 16) >= 0
    before, after = _templates(original), _templates(admitted)
    assert before.keys() == after.keys()
    for slot, template in before.items():
        expected = copy.deepcopy(template)
        if (template.get("outputs") or {}).get("artifacts"):
            location = expected["archiveLocation"]
            driver = next(k for k in location if k != "archiveLogs")
            location[driver]["key"] = f"{location[driver]['key']}/{SEGMENT}{run_id}"
        assert after[slot] == expected, slot
    assert _without_templates(admitted["spec"]) == _without_templates(original["spec"])


def _templates(pod: dict[str, Any]) -> dict[tuple[str, int, int], Any]:
    found = {}
    for field in ("initContainers", "containers"):
        for i, container in enumerate(pod["spec"].get(field) or []):
            defined: dict[str, str] = {}
            for j, env in enumerate(container.get("env") or []):
                value = kubelet_expand(str(env.get("value", "")), defined)
                if env["name"] == "ARGO_TEMPLATE" and value != "offloaded":
                    found[(field, i, j)] = json.loads(value)
                defined[env["name"]] = value
    return found


def _without_templates(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            for env in container.get("env") or []:
                if env["name"] == "ARGO_TEMPLATE":
                    env["value"] = "…"
    return spec
