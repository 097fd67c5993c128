"""`wfboost sidestore ls|stat|gc` against the real service over HTTPS; errors are one line and exit 1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore, sha
from wfboost.cli import main
from wfboost.sidestore.store import StoreSettings
from wfboost_dev.demo.processes import RedisProcess, free_port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def test_ls_stat_gc(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKENS["admin"])
    async with run_sidestore(valkey, tls, tmp_path, settings=StoreSettings(grace_seconds=10)) as ss:
        async with ss.client("admin") as client:
            await client.put("team-a", b"kept", refs=[{"kind": "workflow", "id": "wf-1"}])
            await client.put("team-a", b"orphan")
        ss.server.live.replace([{"metadata": {"uid": "wf-1"}}], "1")
        ss.clock[0] += 11
        common = ["--url", ss.url, "--token-file", str(token), "--ca-file", str(tls.ca_file)]

        assert await asyncio.to_thread(main, ["sidestore", "ls", *common, "team-a"]) == 0
        out = capsys.readouterr().out
        assert sha(b"kept") in out and sha(b"orphan") in out and "redis" in out
        # the token itself in the environment, for a shell without a file to point at
        os.environ["WFBOOST_SIDESTORE_TOKEN"] = TOKENS["admin"]
        try:
            by_env = ["--url", ss.url, "--ca-file", str(tls.ca_file)]
            assert await asyncio.to_thread(main, ["sidestore", "ls", *by_env, "team-a"]) == 0
            assert sha(b"kept") in capsys.readouterr().out
        finally:
            del os.environ["WFBOOST_SIDESTORE_TOKEN"]

        assert await asyncio.to_thread(main, ["sidestore", "stat", *common, "team-a", sha(b"kept")]) == 0
        out = capsys.readouterr().out
        assert "refs:    workflow:wf-1" in out and "size:    4 (4 B)" in out

        assert await asyncio.to_thread(main, ["sidestore", "gc", *common, "--dry-run", "--json"]) == 0
        report = orjson.loads(capsys.readouterr().out)
        assert report["dry_run"] and [d["digest"] for d in report["deleted"]] == [sha(b"orphan")]
        assert await ss.store.info("team-a", sha(b"orphan"))  # still there

        assert await asyncio.to_thread(main, ["sidestore", "gc", *common]) == 0
        assert "deleted 1 of 2 blobs; kept 1" in capsys.readouterr().out

        code = await asyncio.to_thread(main, ["sidestore", "stat", *common, "team-a", sha(b"orphan")])
        captured = capsys.readouterr()
        assert code == 1
        assert captured.err.strip() == f"wfboost sidestore stat: no blob {sha(b'orphan')} in namespace 'team-a'"

        ss.server.live.mark_unsynced()  # the view of live Workflows is not in sync: a sweep does nothing
        code = await asyncio.to_thread(main, ["sidestore", "gc", *common])
        captured = capsys.readouterr()
        assert code == 1 and captured.err.startswith("wfboost sidestore gc: nothing was swept: the view of live")


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    assert main(["sidestore", "ls", "--url", url, "team-a"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wfboost sidestore ls: ") and "\n" not in err and "Traceback" not in err
    assert (
        main(["sidestore", "serve", "--redis-url", "redis://127.0.0.1:1/0", "--clients", str(tmp_path / "none")]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("wfboost sidestore serve: ") and "\n" not in err
