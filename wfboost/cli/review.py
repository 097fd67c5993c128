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
    Reviewed,
    offline_admission,
    review_all,
)


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
    for result in results:
        shown = result.patched_object if args.show_object else result.outcome.review
        sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
        note = f"{result.route}: {result.outcome.outcome}"
        if result.outcome.fail_open:
            note += f" ({result.outcome.fail_open.value}: {result.outcome.detail})"
        print(f"wfboost review: {note}", file=sys.stderr)
    for doc in docs:
        for line in _shrink_summary(doc, policy):
            print(f"wfboost review: {line}", file=sys.stderr)
    return 0


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
    lines += [f"shrink: kept inline: {name}: {reason}" for name, reason in sorted(plan.kept.items())]
    return lines


async def _review(docs: list[dict[str, Any]], policy: Policy, args: argparse.Namespace) -> list[Reviewed]:
    async with offline_admission(policy, args.redis_url) as admission:
        return await review_all(docs, admission, namespace=args.namespace)
