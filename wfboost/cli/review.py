"""`wfboost review FILE|-`: what the webhook would do to a pod, Workflow or task result, offline."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from wfboost.cli.forecast import memoize_forecast
from wfboost.cli.inputs import InputError, read_text
from wfboost.cli.options import add_policy_option, add_redis_option
from wfboost.cli.policy_file import read_policy
from wfboost.cli.split import SPLIT_KINDS
from wfboost.policy import Policy, PolicyError
from wfboost.shrink.workflow import SHRUNK_KINDS, plan_workflow_shrink
from wfboost.split import spec_of, split_spec
from wfboost.structs.documents import DocumentError, parse_documents
from wfboost.webhook.errors import ReviewInputError
from wfboost.webhook.review import (
    CREATES_WORKFLOWS,
    Reviewed,
    offline_admission,
    review_all,
)
from wfboost.webhook.wire import decode_patch


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "review",
        help="run the admission pipeline on an object or AdmissionReview and print the answer",
        description=(
            "Reads a pod, Workflow, WorkflowTemplate, CronWorkflow or WorkflowTaskResult (a bare object is wrapped "
            "as a CREATE review) or an AdmissionReview, JSON or YAML, from FILE or stdin ('-'), runs the same "
            "admission pipeline as the server and prints the AdmissionReview response (one per document). For "
            "objects holding templates it also says which steps would be memoized, and why not (a forecast: the "
            "webhook decides on each pod). A ClusterWorkflowTemplate is reviewed as the Workflow it creates."
        ),
    )
    p.add_argument("file", metavar="FILE", help="input file, or - for stdin")
    p.add_argument("--show-object", action="store_true", help="print the patched object instead of the response")
    p.add_argument("--explain", action="store_true",
                   help="say per document what would happen and why, with the patch decoded, instead of the response")
    p.add_argument("--namespace", default=None, help="namespace for bare objects without metadata.namespace")
    p.add_argument("--namespace-label", action="append", default=[], metavar="KEY=VALUE", type=_label,
                   help="a label of the namespace, for policy namespaceSelectors (repeatable; default: labels unknown, "
                        "so selectors match nothing)")
    p.add_argument("--configmap", action="append", default=[], metavar="FILE",
                   help="a ConfigMap (or a List of them, JSON or YAML) that Argo offloaded a pod's template or "
                        "arguments to, named after the pod: read where the webhook would read it from the API server "
                        "(repeatable; default: none, so such a pod is admitted unchanged)")
    add_redis_option(p)
    add_policy_option(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        text, source = read_text(args.file), "stdin" if args.file == "-" else args.file
        docs = parse_documents(text, source)
        try:
            policy = read_policy(args.policy)
        except PolicyError as exc:
            raise ReviewInputError(f"policy {args.policy} is invalid: {exc}") from None
        labels = dict(args.namespace_label) if args.namespace_label else None
        configmaps = [c for path in args.configmap for c in _configmaps(path)] if args.configmap else None
        results = asyncio.run(_review(docs, policy, args, labels, configmaps))
    except OSError as exc:
        print(f"wfboost review: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ReviewInputError, DocumentError, InputError) as exc:
        print(f"wfboost review: {exc}", file=sys.stderr)
        return 1
    for index, (doc, result) in enumerate(zip(docs, results, strict=True), 1):
        forecast = memoize_forecast(doc, policy, args.namespace, labels)
        if args.explain:
            sys.stdout.write(_explained(index, doc, result) + "".join(f"  {line}\n" for line in forecast))
        else:
            shown = result.patched_object if args.show_object else result.outcome.review
            sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
        note = f"{_what(index, doc)}: {result.route}: {result.outcome.outcome}"
        if doc.get("kind") in CREATES_WORKFLOWS:
            note += " (not admitted itself: reviewed as the Workflow it creates)"
        if result.outcome.fail_open:
            note += f" ({result.outcome.fail_open.value}: {result.outcome.detail})"
            if result.outcome.fail_open.value == "kube_unavailable" and "offloaded" in result.outcome.detail:
                note += "; give Argo's ConfigMap named after the pod with --configmap FILE"
        print(f"wfboost review: {note}", file=sys.stderr)
        if not args.explain:
            for line in forecast:
                print(f"wfboost review: {_what(index, doc)}: {line}", file=sys.stderr)
    for doc in docs:
        for line in _split_summary(doc, policy, args.namespace, labels) + _shrink_summary(doc, policy, args.namespace,
                                                                                         labels):
            print(f"wfboost review: {line}", file=sys.stderr)
    return 0


def _what(index: int, doc: dict[str, Any]) -> str:
    """`document 2 (Pod ml/train-x)`: which document a line is about."""
    found: Any = (doc.get("request") or {}).get("object") if doc.get("kind") == "AdmissionReview" else doc
    obj: dict[str, Any] = found if isinstance(found, dict) else {}
    metadata: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") or metadata.get("generateName") or "?"
    return f"document {index} ({obj.get('kind', '?')} {metadata.get('namespace') or '-'}/{name})"


def _explained(index: int, doc: dict[str, Any], result: Reviewed) -> str:
    """What the webhook would do to one document, and why, in words: the outcome, the annotations it sets, the
    patch decoded (long values shortened), warnings, a refusal."""
    response: Any = result.outcome.review.get("response") or {}
    lines = [f"{_what(index, doc)}, route {result.route}: {result.outcome.outcome}"]
    if result.outcome.fail_open:
        lines.append(f"  admitted unchanged because {result.outcome.fail_open.value}: {result.outcome.detail}")
    if response.get("allowed") is False:
        status = response.get("status") or {}
        lines.append(f"  refused ({status.get('code')} {status.get('reason')}): {status.get('message')}")
    annotations = ((result.patched_object or {}).get("metadata") or {}).get("annotations") or {}
    for key in sorted(k for k in annotations if k.startswith("wfboost.io/")):
        lines.append(f"  {key}: {_shortened(str(annotations[key]), 160)}")
    ops = decode_patch(response)
    lines.append(f"  patch: {len(ops)} operation(s)" if ops else "  patch: none")
    for op in ops:
        value = "" if op.get("op") == "remove" else " = " + _shortened(orjson.dumps(op.get("value")).decode(), 100)
        lines.append(f"    {op.get('op')} {op.get('path')}{value}")
    for warning in response.get("warnings") or []:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines) + "\n"


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}… ({len(text)} characters)"


def _split_summary(doc: dict[str, Any], policy: Policy, namespace: str | None,
                   labels: dict[str, str] | None) -> list[str]:
    """What the DAG split (its own route, split.wfboost.io, called before the others) would do; `wfboost split`
    prints the result."""
    kind = doc.get("kind")
    if kind not in SPLIT_KINDS or not policy.splits_dags:
        return []
    namespace = "" if kind == "ClusterWorkflowTemplate" else (doc.get("metadata") or {}).get("namespace") or namespace
    if not policy.split_dags_in(namespace or "", labels):
        return [f"split: not in scope for namespace {namespace}"]
    spec, _ = spec_of(doc)
    if spec is None:
        return []
    result = split_spec(spec, task_limit=policy.split.max_tasks)
    return [f"split: {dag.summary()}" + ("" if dag.refused else " (wfboost split FILE prints it)")
            for dag in result.dags]


def _shrink_summary(doc: dict[str, Any], policy: Policy, namespace: str | None,
                    labels: dict[str, str] | None) -> list[str]:
    """What shrinking would do to a Workflow, WorkflowTemplate or CronWorkflow at CREATE (review has no side store,
    so its admission fails open)."""
    namespace = (doc.get("metadata") or {}).get("namespace") or namespace or ""
    if doc.get("kind") not in SHRUNK_KINDS or not policy.features.shrink_workflows:
        return []
    if namespace and not policy.shrink_workflows_in(namespace, labels):
        return [f"shrink: not in scope for namespace {namespace}"]
    plan = plan_workflow_shrink(doc, policy.shrink)
    if isinstance(plan, str):
        return [f"shrink: nothing would move ({plan.replace('_', ' ')})"]
    lines = [f"shrink: would move {len(plan.moved)} value(s) to the side store, {plan.size_before:,} -> "
             f"{plan.size_after:,} bytes: " + ", ".join(m.name for m in plan.moved)]
    lines += [f"shrink: argument table for {t.template}: {t.calls} call(s) pass {', '.join(t.inputs)} as one row, "
              f"{t.saved:,} bytes saved" for t in plan.tables]
    lines += [f"shrink: kept inline: {name}: {reason}" for name, reason in sorted(plan.kept.items())]
    lines += [f"shrink: no argument table for {name}: {reason}" for name, reason in sorted(plan.untabled.items())]
    return lines


def _label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _configmaps(path: str) -> list[dict[str, Any]]:
    try:
        docs = parse_documents(read_text(path), path)
    except OSError as exc:
        raise ReviewInputError(f"--configmap {path}: {exc.strerror or exc}") from None
    for index, doc in enumerate(docs, 1):
        if doc.get("kind") != "ConfigMap" or not isinstance(doc.get("metadata"), dict) or not isinstance(
                doc.get("data", {}), dict):
            raise ReviewInputError(f"--configmap {path}: document {index} is not a ConfigMap with metadata and data")
    return docs


async def _review(docs: list[dict[str, Any]], policy: Policy, args: argparse.Namespace,
                  labels: dict[str, str] | None, configmaps: list[dict[str, Any]] | None) -> list[Reviewed]:
    async with offline_admission(policy, args.redis_url, labels, configmaps) as admission:
        return await review_all(docs, admission, namespace=args.namespace)
