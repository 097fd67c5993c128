"""`wfboost shrink` and `wfboost restore`: what the webhook does to a Workflow, done to a file.

`shrink` is for Workflows the webhook never sees: the API server refuses request bodies over 3 MiB before any webhook
runs, so such a Workflow must be made smaller before it is submitted. It moves the same values the webhook would
(wfboost.shrink.workflow, the policy's thresholds), to the same side store, and stores large node statuses compressed
(wfboost.shrink.status); it prints the object, and its sizes before and after on stderr. `restore` is the inverse
(wfboost.shrink.inverse): every reference replaced by its value, read from the side store and checked, for reading a
stored Workflow or taking it out of the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

from wfboost.blobs.client import SideStoreClient, SideStoreClientError
from wfboost.cli.inputs import InputError, read_text
from wfboost.cli.options import env_default
from wfboost.cli.policy_file import read_policy
from wfboost.policy import Policy, PolicyError
from wfboost.shrink.inverse import object_references, restored_workflow
from wfboost.shrink.refs import Reference, ReferenceMismatch, value_of
from wfboost.shrink.status import compress_status, status_nodes_json
from wfboost.shrink.tables import TableError
from wfboost.shrink.workflow import SHRUNK_KINDS, malformed, plan_workflow_shrink
from wfboost.structs.documents import DocumentError, parse_documents


class ShrinkError(Exception):
    """One line for the user: what could not be done, and why."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("shrink", "move a Workflow's bulky values to the side store, as the webhook would (for Workflows over the "
                   "API server's 3 MiB limit); prints the object, sizes on stderr"),
        ("restore", "put every value of a shrunk Workflow back, from the side store; prints the object"),
    ):
        p = subparsers.add_parser(name, help=help_text)
        p.add_argument("file", metavar="FILE|-",
                       help="a Workflow, CronWorkflow or WorkflowTemplate (JSON or YAML), '-' for stdin")
        p.add_argument("--sidestore-url", default=env_default("WFBOOST_SIDESTORE_URL"),
                       help="the side store (env WFBOOST_SIDESTORE_URL)")
        p.add_argument("--sidestore-token-file", default=env_default("WFBOOST_SIDESTORE_TOKEN_FILE"),
                       help="file holding a bearer token for the side store (env WFBOOST_SIDESTORE_TOKEN_FILE; or "
                            "the token itself in WFBOOST_SIDESTORE_TOKEN)")
        p.add_argument("--sidestore-ca", default=env_default("WFBOOST_SIDESTORE_CA"),
                       help="CA bundle of the side store's certificate (env WFBOOST_SIDESTORE_CA)")
        p.add_argument("--namespace", "-n", help="the namespace the values belong to (default: the object's own)")
        p.add_argument("--output", "-o", choices=("yaml", "json"), help="default: the input's format")
        if name == "shrink":
            p.add_argument("--policy", default=env_default("WFBOOST_POLICY"),
                           help="policy file or its ConfigMap, for the thresholds (default: the built-in ones)")
            p.add_argument("--dry-run", action="store_true",
                           help="print the sizes only; write nothing to the side store and print no object")
        p.set_defaults(handler=run, command=name)


def run(args: argparse.Namespace) -> int:
    try:
        text = read_text(args.file)
        source = "stdin" if args.file == "-" else args.file
        docs = parse_documents(text, source)
        if len(docs) != 1 or docs[0].get("kind") not in SHRUNK_KINDS:
            kinds = ", ".join(str(d.get("kind")) for d in docs)
            raise ShrinkError(f"{source}: expected one Workflow, CronWorkflow or WorkflowTemplate, found {kinds}")
        workflow = docs[0]
        why = malformed(workflow)
        if why:
            raise ShrinkError(f"{source}: not a {workflow['kind']} the API server would store: {why}")
        namespace = args.namespace or (workflow.get("metadata") or {}).get("namespace")
        if not namespace:
            raise ShrinkError(f"{source}: the {workflow['kind']} names no namespace; give --namespace (its values "
                              "belong to one)")
        if args.command == "shrink":
            policy = read_policy(args.policy)
            result = asyncio.run(_shrink(workflow, namespace, policy, args))
        else:
            result = asyncio.run(_restore(workflow, namespace, args))
    except (InputError, DocumentError, PolicyError, ShrinkError) as exc:
        return _fail(args.command, str(exc))
    except SideStoreClientError as exc:
        return _fail(args.command, f"the side store: {exc.message}")
    except OSError as exc:
        return _fail(args.command, str(exc))
    if result is not None:
        json_out = args.output == "json" or (args.output is None and text.lstrip().startswith("{"))
        sys.stdout.write(
            orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n" if json_out
            else yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=2**31)
        )
    return 0


async def _shrink(
    workflow: dict[str, Any], namespace: str, policy: Policy, args: argparse.Namespace
) -> dict[str, Any] | None:
    settings = policy.shrink
    # The user asked for this object to be shrunk: the object threshold (for the webhook's many small Workflows)
    # does not apply to it.
    plan = plan_workflow_shrink(workflow, replace(settings, object_threshold_bytes=0))
    ops = [] if isinstance(plan, str) else list(plan.ops)
    shrunk = jsonpatch.JsonPatch(ops).apply(orjson.loads(orjson.dumps(workflow))) if ops else workflow
    chosen = status_nodes_json(shrunk, settings.status_threshold_bytes)
    if isinstance(chosen, bytes):
        shrunk = jsonpatch.JsonPatch(compress_status(chosen, settings.status_compression).ops).apply(shrunk)
    before, after = len(orjson.dumps(workflow)), len(orjson.dumps(shrunk))
    moved = [] if isinstance(plan, str) else plan.moved
    tables = [] if isinstance(plan, str) else plan.tables
    blobs = [] if isinstance(plan, str) else plan.blobs()
    if blobs and not args.dry_run:  # stored first: the object printed must never point at values that are not
        async with _client(args) as client:
            await asyncio.gather(*(client.put(namespace, data) for data in blobs))
    what = f"{workflow['kind']} {namespace}/{_name(workflow)}"
    status_note = ", status.nodes compressed" if isinstance(chosen, bytes) else ""
    table_note = "".join(f", {t.calls} call(s) of {t.template} in an argument table ({', '.join(t.inputs)})"
                         for t in tables)
    print(f"{what}: {before:,} -> {after:,} bytes ({len(moved)} value(s) moved{table_note}{status_note})",
          file=sys.stderr)
    if isinstance(plan, str) and plan not in ("workflow_small",):
        print(f"{what}: no value moved ({plan.replace('_', ' ')})", file=sys.stderr)
    elif not isinstance(plan, str):
        for name, reason in sorted(plan.kept.items()):
            print(f"  kept inline: {name}: {reason}", file=sys.stderr)
    return None if args.dry_run else dict(shrunk)


async def _restore(workflow: dict[str, Any], namespace: str, args: argparse.Namespace) -> dict[str, Any]:
    references = object_references(workflow)
    values: dict[Reference, str] = {}
    if references:
        async with _client(args) as client:
            for reference in sorted(references, key=lambda r: r.sha256):
                values[reference] = await _fetched(client, namespace, reference)
    try:
        restored = restored_workflow(workflow, values)
    except TableError as exc:
        raise ShrinkError(str(exc)) from None
    print(f"{workflow['kind']} {namespace}/{_name(workflow)}: {len(orjson.dumps(workflow)):,} -> "
          f"{len(orjson.dumps(restored)):,} bytes ({len(references)} value(s) restored)", file=sys.stderr)
    return restored


async def _fetched(client: SideStoreClient, namespace: str, reference: Reference) -> str:
    try:
        data = await client.get(namespace, reference.digest)
    except SideStoreClientError as exc:
        if exc.status == 404:
            raise ShrinkError(f"{reference.text} is not in the side store for namespace {namespace}") from None
        raise
    try:
        return value_of(reference, data)
    except ReferenceMismatch as exc:
        raise ShrinkError(str(exc)) from None


def _client(args: argparse.Namespace) -> SideStoreClient:
    if not args.sidestore_url:
        raise ShrinkError("--sidestore-url (or WFBOOST_SIDESTORE_URL) is required: the values live there")
    token_file = Path(args.sidestore_token_file) if args.sidestore_token_file else None
    token = None if token_file else os.environ.get("WFBOOST_SIDESTORE_TOKEN") or None
    return SideStoreClient(args.sidestore_url, token=token, token_file=token_file, ca_file=args.sidestore_ca)


def _name(workflow: dict[str, Any]) -> str:
    metadata = workflow.get("metadata") or {}
    return str(metadata.get("name") or (metadata.get("generateName") or "") + "(generated)")


def _fail(command: str, message: str) -> int:
    print(f"wfboost {command}: {message}", file=sys.stderr)
    return 1


__all__: Sequence[str] = ["register", "run"]
