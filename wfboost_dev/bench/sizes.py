"""Shrinking's before/after bytes: every corpus object the webhook shrinks, and Kubeflow-shaped workflows of 100 to
5,000 tasks, with the policy's default thresholds, as `plan_workflow_shrink` plans them at CREATE."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.workflow import SHRUNK_KINDS, plan_workflow_shrink
from wfboost_dev.argosim.kubeflow import kubeflow_compiled

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
TASKS = (100, 500, 1000, 2000, 3000, 5000)


# The defaults; argument tables, which need a controller that reads offloaded arguments (3.7.10+); every threshold
# at its lowest (what could move).
DEFAULTS = ShrinkSettings()
TABLES = ShrinkSettings(controller_version="3.7.10")
LOWEST = ShrinkSettings(value_threshold_bytes=1, object_threshold_bytes=0)


def measure() -> dict[str, Any]:
    return {"corpus": {"defaults": _corpus(DEFAULTS), "lowest": _corpus(LOWEST)},
            "kubeflow": [_kubeflow(tasks) for tasks in TASKS]}


def _kubeflow(tasks: int) -> dict[str, Any]:
    workflow = kubeflow_compiled(tasks, namespace="bench")
    before = len(orjson.dumps(workflow))
    found: dict[str, Any] = {"tasks": tasks, "before": before}
    for name, settings in (("defaults", DEFAULTS), ("tables", TABLES)):
        started = time.perf_counter()
        plan = plan_workflow_shrink(workflow, settings)
        found[f"{name}_s"] = time.perf_counter() - started
        found[name] = before if isinstance(plan, str) else plan.size_after
    return found


def _corpus(settings: ShrinkSettings) -> dict[str, Any]:
    if not CORPUS.is_dir():
        return {"present": False, "path": str(CORPUS)}
    folders: dict[str, dict[str, int]] = {}
    for path in sorted(CORPUS.rglob("*.yaml")):
        folder = path.relative_to(CORPUS).parts[0]
        tally = folders.setdefault(folder, {"objects": 0, "shrunk": 0, "before": 0, "after": 0})
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") not in SHRUNK_KINDS:
                continue
            document = orjson.loads(orjson.dumps(document))
            document.setdefault("metadata", {})["namespace"] = "bench"
            size = len(orjson.dumps(document))
            plan = plan_workflow_shrink(document, settings)
            tally["objects"] += 1
            if isinstance(plan, str):
                tally["before"] += size
                tally["after"] += size
            else:
                tally["shrunk"] += 1
                tally["before"] += plan.size_before
                tally["after"] += plan.size_after
    return {"present": True, "folders": folders}
