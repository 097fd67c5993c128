"""`wfboost review FILE|-`: what the webhook would do to a pod, Workflow or task result, offline."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from wfboost.cli.inputs import InputError, read_text
from wfboost.cli.options import add_policy_option, add_redis_option
from wfboost.cli.policy_file import read_policy
from wfboost.policy import Policy, PolicyError
from wfboost.shrink.workflow import plan_workflow_shrink
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
            "Reads a pod, Workflow or WorkflowTaskResult (a bare object is wrapped as a CREATE review) or an "
            "AdmissionReview, JSON or YAML, from FILE or stdin ('-'), runs the same admission pipeline as the "
            "server and prints the AdmissionReview response (one per document)."
        ),
    )
    p.add_argument("file", metavar="FILE", help="input file, or - for stdin")
    p.add_argument("--show-object", action="store_true", help="print the patched object instead of the response")
    p.add_argument("--explain", action="store_true",
                   help="say per document what would happen and why, with the patch decoded, instead of the response")
    p.add_argument("--namespace", default=None, help="namespace for bare objects without metadata.namespace")
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
        results = asyncio.run(_review(docs, policy, args))
    except OSError as exc:
        print(f"wfboost review: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ReviewInputError, DocumentError, InputError) as exc:
        print(f"wfboost review: {exc}", file=sys.stderr)
        return 1
    for index, (doc, result) in enumerate(zip(docs, results, strict=True), 1):
        if args.explain:
            sys.stdout.write(_explained(index, doc, result))
        else:
            shown = result.patched_object if args.show_object else result.outcome.review
            sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
        note = f"{_what(index, doc)}: {result.route}: {result.outcome.outcome}"
        if doc.get("kind") in CREATES_WORKFLOWS:
            note += " (reviewed as the Workflow it creates)"
        if result.outcome.fail_open:
            note += f" ({result.outcome.fail_open.value}: {result.outcome.detail})"
        print(f"wfboost review: {note}", file=sys.stderr)
    for doc in docs:
        for line in _shrink_summary(doc, policy):
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


def _shrink_summary(doc: dict[str, Any], policy: Policy) -> list[str]:
    """What shrinking would do to a Workflow at CREATE (review has no side store, so its admission fails open)."""
    namespace = (doc.get("metadata") or {}).get("namespace") or ""
    if doc.get("kind") != "Workflow" or not policy.features.shrink_workflows:
        return []
    if namespace and not policy.shrink_workflows_in(namespace):
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


async def _review(docs: list[dict[str, Any]], policy: Policy, args: argparse.Namespace) -> list[Reviewed]:
    async with offline_admission(policy, args.redis_url) as admission:
        return await review_all(docs, admission, namespace=args.namespace)
