"""Write-once keys as text: what counts as a run's own segment, and what never does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wfboost.cache.runs import run_key, written_by, written_once

RUN = "0123456789abcdef" * 2
OTHER = "fedcba9876543210" * 2


@given(prefix=st.text(alphabet="abcz019-_./", max_size=30))
def test_a_run_key_is_written_by_its_run_only(prefix: str) -> None:
    key = run_key(prefix, RUN) + "/model.tgz"
    if ".." in key.split("/"):
        assert not written_once(key)
    else:
        assert written_by(key, RUN) and written_once(key) and not written_by(key, OTHER)


@pytest.mark.parametrize(
    "key",
    [
        f"models/wfboost-run-{RUN}/../../shared/model.bin",  # parent steps out of the segment
        f"models%2Fwfboost-run-{RUN}%2Fmodel.bin",  # a URL whose slashes are escaped
        f"models/wfboost-run-{RUN}/%2e%2e/x",
        f"models\\wfboost-run-{RUN}\\model.bin",
        f"models/wfboost-run-{RUN}x/model.bin",  # not a whole segment
        f"models/xwfboost-run-{RUN}/model.bin",
    ],
)
def test_keys_whose_text_could_name_another_object_never_count(key: str) -> None:
    assert not written_once(key) and not written_by(key, RUN)


def test_adjacent_segments_both_count() -> None:
    key = f"a/wfboost-run-{OTHER}/wfboost-run-{RUN}/model.bin"
    assert written_by(key, RUN) and written_by(key, OTHER)
