"""wfboost.webhook.patch_check against jsonpatch, the reference: the same result (byte for byte, key order
included) or a failure for both, on any document and patch; the original and the patch's values are never
changed; only the containers on a patch's paths are new."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from wfboost.webhook.patch_check import PatchFailed, apply_patch

KEYS = st.sampled_from(["a", "b", "c", "metadata", "labels", "x/y", "t~1", "~", "-", "0", "01", "", "é"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=4)
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                         max_leaves=20)
REFERENCE_ERRORS = (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError)


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointers(doc: Any, prefix: str = "") -> list[str]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += pointers(value, f"{prefix}/{escape(key)}")
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += pointers(value, f"{prefix}/{index}")
    return found


@st.composite
def documents_and_patches(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]]]:
    doc = draw(st.dictionaries(KEYS, DOCUMENTS, max_size=5) | DOCUMENTS)
    ops: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        existing = pointers(doc)
        base = draw(st.sampled_from(existing)) if existing and draw(st.booleans()) else ""
        tail = draw(st.sampled_from(["", "", "", "/-", "/0", "/1", "/5", "/01", "/new", "/x~1y", "/~2", "/-/a"]))
        path = base + tail if base + tail else draw(st.sampled_from(["/", "/a", "", "/-"]))
        kind = draw(st.sampled_from(["add", "add", "replace", "remove", "test", "move"]))
        op: dict[str, Any] = {"op": kind, "path": path}
        if kind in ("add", "replace", "test"):
            op["value"] = draw(DOCUMENTS)
        if kind == "move":
            op["from"] = draw(st.sampled_from(existing or ["/a"]))
        ops.append(op)
    return doc, ops


def reference(doc: Any, patch: list[dict[str, Any]]) -> bytes | None:
    try:
        return orjson.dumps(jsonpatch.JsonPatch(copy.deepcopy(patch)).apply(copy.deepcopy(doc)))
    except REFERENCE_ERRORS:
        return None


@settings(max_examples=800)
@given(documents_and_patches())
def test_the_patch_check_agrees_with_jsonpatch(case: tuple[Any, list[dict[str, Any]]]) -> None:
    doc, patch = case
    doc_before, patch_before = orjson.dumps(doc), orjson.dumps(patch)
    expected = reference(doc, patch)
    try:
        got: bytes | None = orjson.dumps(apply_patch(doc, patch))  # type: ignore[arg-type]
    except PatchFailed:
        got = None
    assert got == expected
    event("the fast path" if all(op["op"] in ("add", "replace", "remove") and op["path"] for op in patch)
          else "jsonpatch")
    event("applies" if got is not None else "fails")
    assert orjson.dumps(doc) == doc_before  # the object as received is never changed
    assert orjson.dumps(patch) == patch_before  # nor the patch that goes back to the API server


def test_only_the_containers_on_the_path_are_copied() -> None:
    pod = {"metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}},
           "spec": {"containers": [{"name": "main", "env": [{"name": "X", "value": "1"}]}]}}
    patched = apply_patch(pod, [{"op": "add", "path": "/metadata/labels/c", "value": "3"},
                                {"op": "replace", "path": "/spec/containers/0/env/0/value", "value": "2"}])
    assert patched["metadata"]["labels"] == {"a": "1", "c": "3"} and pod["metadata"]["labels"] == {"a": "1"}
    assert patched["spec"]["containers"][0]["env"][0]["value"] == "2"
    assert pod["spec"]["containers"][0]["env"][0]["value"] == "1"
    assert patched["metadata"]["annotations"] is pod["metadata"]["annotations"]  # untouched: shared


def test_a_later_operation_into_an_added_value_leaves_the_patch_as_sent() -> None:
    """jsonpatch inserts an op's value itself and mutates it when a later op goes inside it; the patch sent back
    to the API server must stay what it was."""
    patch: list[Any] = [{"op": "add", "path": "/metadata/labels", "value": {}},
                        {"op": "add", "path": "/metadata/labels/a", "value": "1"}]
    assert apply_patch({"metadata": {}}, patch) == {"metadata": {"labels": {"a": "1"}}}
    assert patch[0]["value"] == {}


@pytest.mark.parametrize(("patch", "reason"), [
    ([{"op": "remove", "path": "/metadata/labels/missing"}], "no member 'missing' to remove"),
    ([{"op": "add", "path": "/metadata/nothing/here", "value": 1}], "no member 'nothing'"),
    ([{"op": "add", "path": "/spec/containers/3", "value": {}}], "index 3 is outside the array of 1"),
    ([{"op": "replace", "path": "/spec/containers/01", "value": {}}], "'01' is not an array index"),
])
def test_a_patch_that_does_not_apply_says_where(patch: list[Any], reason: str) -> None:
    pod = {"metadata": {"labels": {}}, "spec": {"containers": [{"name": "main"}]}}
    with pytest.raises(PatchFailed) as failed:
        apply_patch(pod, patch)
    assert reason in str(failed.value)
