"""A shrunk Workflow (or CronWorkflow, WorkflowTemplate) made whole again, for inspection or for taking it out of the
cluster (`wfboost restore`).

The inverse of what the webhook (and `wfboost shrink`) does to a Workflow: every reference in the object's strings is
replaced by its value, the `wfboost.io/restore` label shrinking put on templates is taken off (with the `labels` map
it may have created, when that is left empty), each call that passes a row of an argument table gets its own
parameters back and each tabled template its original (both kept in the table, wfboost.shrink.tables), and
`status.compressedNodes` becomes `status.nodes` again. The nodes of a tabled template's pods that ran keep, in the
status, the `wfboost-row` input the controller saw. The result
is the original as every consumer reads it (a template's `metadata: {}` that shrinking had to create stays). Pure:
the caller fetches the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from wfboost.argo.workflow_status import node_statuses
from wfboost.shrink.bundling import BUNDLE_INPUT
from wfboost.shrink.refs import MARK, TABLE_PATTERN, Reference, references_in, replace_references
from wfboost.shrink.restore import TEMPLATE_REFS_LABEL
from wfboost.shrink.tables import ArgumentTable, TableError, parse_table
from wfboost.shrink.workflow import RESTORE_LABEL, workflow_spec_of

__all__ = ["object_references", "restored_workflow"]


def object_references(obj: Mapping[str, Any]) -> set[Reference]:
    return references_in(orjson.dumps(obj).decode())


def restored_workflow(workflow: Mapping[str, Any], values: Mapping[Reference, str]) -> dict[str, Any]:
    """The Workflow with every value back (a table's value is its JSON); KeyError for a reference without a value,
    TableError for a table that does not hold what a call names."""
    restored: dict[str, Any] = orjson.loads(orjson.dumps(workflow))
    tables = {reference: parse_table(reference, text) for reference, text in values.items() if reference.table}
    spec = workflow_spec_of(restored)
    if tables and isinstance(spec, dict):
        _untabled(spec, tables)
    restored = _replaced(restored, values)
    spec = workflow_spec_of(restored)
    for template in (spec.get("templates") or [] if isinstance(spec, dict) else []):
        metadata = template.get("metadata") if isinstance(template, dict) else None
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        if isinstance(labels, dict) and labels.pop(RESTORE_LABEL, None) is not None:
            labels.pop(TEMPLATE_REFS_LABEL, None)
            if not labels:
                del metadata["labels"]  # type: ignore[union-attr]
    status = restored.get("status")
    if isinstance(status, dict) and status.get("compressedNodes") and not status.get("nodes"):
        status["nodes"] = _replaced(node_statuses(restored), values)
        del status["compressedNodes"]
    return restored


def _untabled(spec: dict[str, Any], tables: Mapping[Reference, ArgumentTable]) -> None:
    """Calls given their parameters back from their rows (the table named in the template each calls), tabled
    templates their originals, and the copies made for other workflow arguments taken away."""
    named = {t.get("name"): TABLE_PATTERN.search(orjson.dumps(t).decode())
             for t in spec.get("templates") or [] if isinstance(t, dict)}  # the table each tabled template names
    originals: dict[str, dict[str, Any]] = {}
    copies: set[str] = set()
    for template in spec.get("templates") or []:
        if not isinstance(template, dict):
            continue
        calls = [t for t in (template.get("dag") or {}).get("tasks") or []]
        calls += [s for group in template.get("steps") or [] if isinstance(group, list) for s in group]
        for call in calls:
            arguments = call.get("arguments") if isinstance(call, dict) else None
            parameters = arguments.get("parameters") if isinstance(arguments, dict) else None
            row = next((p for p in parameters or [] if isinstance(p, dict) and p.get("name") == BUNDLE_INPUT), None)
            match = named.get(call.get("template")) if row is not None else None
            if match is None or not str(row.get("value")).isdigit():  # type: ignore[union-attr]
                continue
            assert isinstance(arguments, dict) and isinstance(parameters, list) and row is not None
            reference = Reference(int(match[1]), match[2], table=True)
            table = tables[reference]
            number = int(row["value"])
            if not 0 <= number < len(table["rows"]):
                raise TableError(f"{reference.text} has no row {number}")
            rebuilt = [p for p in parameters if p is not row]
            for position, parameter, index in sorted(table["rows"][number]["removed"], key=lambda r: int(r[0])):
                rebuilt.insert(int(position), {**parameter, "value": table["strings"][int(index)]})
            call["template"] = table["template"]
            form = table["rows"][number].get("form", 2)
            if rebuilt or form == 2:
                arguments["parameters"] = rebuilt
            else:
                del arguments["parameters"]
                if form == 0 and not arguments:
                    del call["arguments"]
            originals[table["template"]] = table["original"]
            copies.update(table["copies"])
    spec["templates"] = [originals.get(str(t.get("name")), t) if isinstance(t, dict) else t
                         for t in spec.get("templates") or []
                         if not (isinstance(t, dict) and t.get("name") in copies)]


def _replaced(node: Any, values: Mapping[Reference, str]) -> Any:
    if isinstance(node, str):
        return replace_references(node, values) if MARK in node else node
    if isinstance(node, dict):
        return {key: _replaced(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_replaced(item, values) for item in node]
    return node
