"""Reading a reference (wfboost.sidestore.view): what `kubectl get -o yaml` shows, given to the side store over real
HTTPS, answers the text it replaced; same authentication and namespace scope as any blob; `wfboost sidestore show`
prints it; bad input gets one line."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore
from wfboost.blobs.client import SideStoreClientError
from wfboost.cli import main
from wfboost.shrink.refs import reference_for
from wfboost_dev.argosim.kubeflow import kubeflow_compiled
from wfboost_dev.demo.processes import RedisProcess


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def test_a_reference_reads_as_the_text_it_replaced(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wfboost.policy.model import ShrinkSettings
    from wfboost.shrink.workflow import WorkflowShrink, plan_workflow_shrink

    value = '{"executorLabel": "exec-train", "note": "<script>alert(1)</script> é"}\n' * 50
    reference = reference_for(value)
    lowest = ShrinkSettings(value_threshold_bytes=1, object_threshold_bytes=0)
    plan = plan_workflow_shrink(kubeflow_compiled(12), lowest)
    assert isinstance(plan, WorkflowShrink) and plan.tables
    table = plan.tables[0]
    token = tmp_path / "token"
    token.write_text(TOKENS["team-a"])
    async with run_sidestore(valkey, tls, tmp_path) as ss:
        async with ss.client("admin") as client:
            await client.put("team-a", value.encode())
            await client.put("team-a", table.data)
            await client.put("team-b", b"other team")
        async with ss.client("team-a") as client:
            assert await client.view("team-a", reference.text) == value
            assert await client.view("team-a", f"  {reference.text}\n") == value  # as pasted
            whole = orjson.loads(await client.view("team-a", table.reference.text))
            assert whole["template"] == table.template and len(whole["rows"]) == table.calls
            cell = await client.view("team-a", f"{table.reference.text}#3[task-name]")
            assert cell == orjson.loads(table.data)["strings"][whole["rows"][3]["cells"][
                whole["inputs"].index("task-name")]]
            with pytest.raises(SideStoreClientError) as refused:
                await client.view("team-a", f"{table.reference.text}#9999[task-name]")
            assert refused.value.status == 404 and "no row 9999" in refused.value.message
            with pytest.raises(SideStoreClientError) as refused:
                await client.view("team-b", reference_for("other team").text)  # another namespace's value
            assert refused.value.status == 403
            with pytest.raises(SideStoreClientError) as refused:
                await client.view("team-a", "wfboost-ref:v1:12:" + "0" * 64)
            assert refused.value.status == 404
            with pytest.raises(SideStoreClientError) as refused:
                await client.view("team-a", "not-a-reference")
            assert refused.value.status == 400 and "is not a wfboost reference: expected" in refused.value.message
            wrong_size = f"wfboost-ref:v1:{reference.size + 1}:{reference.sha256}"
            with pytest.raises(SideStoreClientError) as refused:
                await client.view("team-a", wrong_size)  # names the blob, but not its size: not that value
            assert refused.value.status == 422

        # a browser is shown text and runs none of it
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(tls.ca_file)))
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"{ss.url}/v1/namespaces/team-a/view/{quote(reference.text, safe='')}"
            async with session.get(url, headers={"Authorization": f"Bearer {TOKENS['team-a']}"},
                                   server_hostname=ss.client().server_hostname) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert "sandbox" in response.headers["Content-Security-Policy"]
                assert (await response.read()).decode() == value
            async with session.get(url, server_hostname=ss.client().server_hostname) as response:
                assert response.status == 401  # no token, no value

        common = ["--url", ss.url, "--token-file", str(token), "--ca-file", str(tls.ca_file)]
        assert await asyncio.to_thread(main, ["sidestore", "show", *common, "team-a", reference.text]) == 0
        assert capsys.readouterr().out == value
        assert await asyncio.to_thread(main, ["sidestore", "show", *common, "team-a", "wfboost-ref:v1:x"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("wfboost sidestore show: ") and err.count("\n") == 1 and "Traceback" not in err
