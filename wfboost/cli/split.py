"""`wfboost split`: what the webhook's DAG split does (docs/split.md), done to a file.

For a Workflow, CronWorkflow, WorkflowTemplate or ClusterWorkflowTemplate whose DAGs Argo 4's full CRDs refuse
(more than 200 tasks): prints the object with every such DAG rewritten into nested groups, and on stderr each
DAG's groups, its size before and after and the parallelism kept. When a DAG cannot be split without changing what
the workflow does, nothing is printed and the reason is (exit 2). An object that is also over the API server's
size limit is piped on: `wfboost split pipeline.yaml | wfboost shrink -`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import yaml

from wfboost.cli.inputs import InputError, read_text
from wfboost.split import TASK_LIMIT, spec_of, split_spec
from wfboost.structs.documents import DocumentError, parse_documents

SPLIT_KINDS = ("Workflow", "CronWorkflow", "WorkflowTemplate", "ClusterWorkflowTemplate")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "split", help="rewrite DAGs over Argo 4's 200-task limit into nested groups that keep the workflow's "
                      "meaning; prints the object, the groups on stderr")
    p.add_argument("file", metavar="FILE|-",
                   help="a Workflow, CronWorkflow, WorkflowTemplate or ClusterWorkflowTemplate (JSON or YAML), "
                        "'-' for stdin")
    p.add_argument("--max-tasks", type=int, default=TASK_LIMIT,
                   help=f"tasks allowed per DAG (default {TASK_LIMIT}, Argo 4's full CRDs)")
    p.add_argument("--output", "-o", choices=("yaml", "json"), help="default: the input's format")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source = "stdin" if args.file == "-" else args.file
    try:
        if args.max_tasks < 2:
            raise InputError("--max-tasks must be at least 2")
        text = read_text(args.file)
        docs = parse_documents(text, source)
    except (InputError, DocumentError) as exc:
        print(f"wfboost split: {exc}", file=sys.stderr)
        return 1
    if len(docs) != 1 or docs[0].get("kind") not in SPLIT_KINDS:
        kinds = ", ".join(str(d.get("kind")) for d in docs) or "nothing"
        print(f"wfboost split: {source}: expected one of {', '.join(SPLIT_KINDS)}, found {kinds}", file=sys.stderr)
        return 1
    obj = docs[0]
    spec, where = spec_of(obj)
    if spec is None:
        print(f"wfboost split: {source}: the {obj['kind']} has no spec", file=sys.stderr)
        return 1
    result = split_spec(spec, task_limit=args.max_tasks)
    for dag in result.dags:
        print(f"{'.'.join(where)}: {dag.summary()}", file=sys.stderr)
    if result.refused:
        return 2
    out = obj if result.spec is None else _with_spec(obj, where, result.spec)
    if result.spec is None:
        print(f"{source}: no DAG over {args.max_tasks} tasks; unchanged", file=sys.stderr)
    else:
        print(f"{source}: {len(orjson.dumps(obj)):,} -> {len(orjson.dumps(out)):,} bytes", file=sys.stderr)
    json_out = args.output == "json" or (args.output is None and text.lstrip().startswith("{"))
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n" if json_out
                     else yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=2**31))
    return 0


def _with_spec(obj: dict[str, Any], where: Sequence[str], spec: dict[str, Any]) -> dict[str, Any]:
    if list(where) == ["spec"]:
        return {**obj, "spec": spec}
    return {**obj, "spec": {**obj["spec"], "workflowSpec": spec}}


__all__: Sequence[str] = ["register", "run"]
