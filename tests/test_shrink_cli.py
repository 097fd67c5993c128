"""`wfboost shrink` and `wfboost restore` as a user runs them: the CLI in a subprocess, a real side store (HTTPS,
Valkey) in this test's loop."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore
from tests.test_shrink_workflows import kubeflow_shaped, shrinking_policy, without_empty_metadata
from wfboost.shrink.refs import PATTERN

API_SERVER_LIMIT = 3_145_728  # bodies over this never reach a webhook


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


async def wfboost(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wfboost", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WFBOOST_SIDESTORE_URL": "", "WFBOOST_POLICY": ""},
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_workflow_over_the_api_servers_limit_is_shrunk_and_restored(
    valkey: Any, tls: SideStoreTls, tmp_path: Path
) -> None:
    workflow = kubeflow_shaped(20, 90_000)
    workflow["metadata"]["name"] = "big-pipeline"
    original = orjson.loads(orjson.dumps(workflow))
    assert len(orjson.dumps(workflow)) > API_SERVER_LIMIT
    source = tmp_path / "big.yaml"
    source.write_text(yaml.safe_dump(workflow, sort_keys=False, allow_unicode=True))
    token = tmp_path / "token"
    token.write_text(TOKENS["admin"])
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        store = ["--sidestore-url", sidestore.url, "--sidestore-token-file", str(token),
                 "--sidestore-ca", str(tls.ca_file)]
        code, out, err = await wfboost("shrink", str(source), "--dry-run", *store)
        assert code == 0 and out == "", err
        assert "Workflow ml/big-pipeline:" in err and "(40 value(s) moved)" in err
        async with sidestore.client() as client:
            assert (await client.list("ml"))["blobs"] == []  # a dry run writes nothing

        code, out, err = await wfboost("shrink", str(source), *store)
        assert code == 0, err
        shrunk = yaml.safe_load(out)
        size = len(orjson.dumps(shrunk))
        assert size < 100_000 and f"-> {size:,} bytes (40 value(s) moved)" in err
        assert sum(1 for p in shrunk["spec"]["arguments"]["parameters"] if PATTERN.fullmatch(p["value"])) == 40

        code, out, err = await wfboost("restore", "-", "-o", "json", *store, stdin=orjson.dumps(shrunk))
        assert code == 0, err
        assert orjson.loads(out) == original  # the inverse, exactly
        assert "(40 value(s) restored)" in err

        code, out, err = await wfboost("restore", "-", *store, "-n", "other", stdin=orjson.dumps(shrunk))
        assert code == 1 and out == ""
        assert err.startswith("wfboost restore: wfboost-ref:v1:")
        assert "is not in the side store for namespace other" in err
    code, _, err = await wfboost("shrink", str(source), *store)
    assert code == 1 and err.startswith("wfboost shrink: the side store: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        (b"kind: Pod\nmetadata: {name: p}\n", [],
         "wfboost shrink: stdin: expected one Workflow, CronWorkflow or WorkflowTemplate, found Pod\n"),
        (b"kind: Workflow\nmetadata: {name: w}\nspec: {}\n", [],
         "wfboost shrink: stdin: the Workflow names no namespace; give --namespace (its values belong to one)\n"),
        (b"{not yaml", [], None),
    ],
)
async def test_bad_input_gets_one_line(stdin: bytes, args: list[str], message: str | None) -> None:
    code, out, err = await wfboost("shrink", "-", *args, stdin=stdin)
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    if message is not None:
        assert err == message


async def test_shrinking_needs_the_side_store_only_when_something_moves(tmp_path: Path) -> None:
    small = b"kind: Workflow\nmetadata: {name: w, namespace: ml}\nspec: {entrypoint: m, templates: []}\n"
    code, out, err = await wfboost("shrink", "-", stdin=small)
    assert code == 0 and yaml.safe_load(out)["metadata"]["name"] == "w" and "(0 value(s) moved)" in err
    code, _, err = await wfboost("shrink", "-", stdin=orjson.dumps(kubeflow_shaped(2, 10_000) | {
        "metadata": {"name": "w", "namespace": "ml"}}))
    assert code == 1
    assert err == "wfboost shrink: --sidestore-url (or WFBOOST_SIDESTORE_URL) is required: the values live there\n"


async def test_a_2000_task_kubeflow_pipeline_is_shrunk_with_tables_and_restored_exactly(
    valkey: Any, tls: SideStoreTls, tmp_path: Path
) -> None:
    from wfboost_dev.argosim.kubeflow import kubeflow_compiled

    workflow = kubeflow_compiled(2000)
    workflow["metadata"]["name"] = "big-pipeline"
    source = tmp_path / "big.json"
    source.write_bytes(orjson.dumps(workflow))
    assert source.stat().st_size > API_SERVER_LIMIT
    policy, token = shrinking_policy(tmp_path, controller_version="4.1")
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        store = ["--sidestore-url", sidestore.url, "--sidestore-token-file", str(token),
                 "--sidestore-ca", str(tls.ca_file)]
        code, out, err = await wfboost("shrink", str(source), "--policy", str(policy), *store)
        assert code == 0, err
        shrunk = orjson.loads(out)
        size = len(orjson.dumps(shrunk))
        assert size < 1_572_864 and f"{source.stat().st_size:,} -> {size:,} bytes (1 value(s) moved, 2000 call(s) of " \
            "system-container-driver in an argument table" in err, err
        code, out, err = await wfboost("restore", "-", "-o", "json", *store, stdin=orjson.dumps(shrunk))
        assert code == 0, err
        assert without_empty_metadata(orjson.loads(out)) == without_empty_metadata(workflow)
