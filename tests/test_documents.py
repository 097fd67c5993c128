"""The one reader of user-given objects: JSON or YAML, several documents, `kind: List`, one-line errors."""

from __future__ import annotations

import orjson
import pytest
import yaml

from wfboost.structs.documents import DocumentError, parse_documents

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}


@pytest.mark.parametrize(
    "text",
    [
        orjson.dumps([POD, CM]).decode(),
        yaml.safe_dump_all([POD, CM]),
        "---\n" + yaml.safe_dump_all([POD, None, CM]),
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [POD, CM]}),  # kubectl get -o yaml
        orjson.dumps({"apiVersion": "v1", "kind": "List", "items": [POD, CM]}).decode(),
        "{apiVersion: v1, kind: Pod, metadata: {name: p}}\n---\n" + yaml.safe_dump(CM),  # YAML flow style
    ],
)
def test_every_form_users_have_gives_the_same_objects(text: str) -> None:
    assert parse_documents(text, "in") == [POD, CM]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Pod\n  bad: indent\n", "in: neither JSON nor YAML (line 2, column 6: "),
        ("{not: [valid", "in: neither JSON nor YAML (line 1, column 13: "),
        ("", "in: no document found"),
        ("---\n---\n", "in: no document found"),
        ("- a\n- b\n", "in: document 1 is a string, not an object"),
        ("42\n", "in: document 1 is a number, not an object"),
    ],
)
def test_bad_input_is_one_line_naming_the_place(text: str, message: str) -> None:
    with pytest.raises(DocumentError) as raised:
        parse_documents(text, "in")
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
