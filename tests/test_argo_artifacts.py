"""`wfboost.argo.artifacts` against Argo's `ArtifactLocation` rules (pkg/apis/workflow/v1alpha1/workflow_types.go).

The expectations are Argo's, read at v3.5.14, v3.7.18 and v4.1.2; the ones taken from Argo's own
workflow_types_test.go say so.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wfboost.argo.artifacts import (
    ArtifactLocationError,
    driver_of,
    get_key,
    has_location,
    location_of,
    relocate,
    set_key,
)
from wfboost.argo.names import ARTIFACT_DRIVERS

SECRET = {"name": "creds", "key": "username"}

# One complete location per driver, with its key ('' for the keyless drivers).
COMPLETE: dict[str, tuple[dict[str, Any], str]] = {
    "s3": ({"s3": {"endpoint": "minio:9000", "bucket": "b", "key": "a/b"}}, "a/b"),
    "git": ({"git": {"repo": "https://github.com/argoproj/argo-workflows"}}, ""),
    "http": ({"http": {"url": "https://example.com/files/a.tgz"}}, "/files/a.tgz"),
    "artifactory": ({"artifactory": {"url": "https://af.example.com/repo/a", "usernameSecret": SECRET}}, "/repo/a"),
    "hdfs": ({"hdfs": {"addresses": ["nn:8020"], "path": "/data/a"}}, "/data/a"),
    "raw": ({"raw": {"data": "hello"}}, ""),
    "oss": ({"oss": {"endpoint": "oss.example.com", "bucket": "b", "key": "a/b"}}, "a/b"),
    "gcs": ({"gcs": {"bucket": "b", "key": "a/b"}}, "a/b"),
    "azure": ({"azure": {"endpoint": "https://acct.blob.core.windows.net", "container": "c", "blob": "a/b"}}, "a/b"),
    "plugin": ({"plugin": {"name": "my-plugin", "configuration": "bucket: b", "key": "a/b"}}, "a/b"),
}

# Locations one required field short of complete.
INCOMPLETE: list[tuple[str, dict[str, Any]]] = [
    ("s3 without endpoint", {"s3": {"bucket": "b", "key": "k"}}),
    ("s3 without bucket", {"s3": {"endpoint": "e", "key": "k"}}),
    ("s3 without key", {"s3": {"endpoint": "e", "bucket": "b"}}),
    ("s3 with an empty key", {"s3": {"endpoint": "e", "bucket": "b", "key": ""}}),
    ("s3 key only", {"s3": {"key": "k"}}),
    ("git without repo", {"git": {"revision": "main"}}),
    ("http without url", {"http": {"headers": [{"name": "a", "value": "b"}]}}),
    ("artifactory without usernameSecret", {"artifactory": {"url": "https://af/x"}}),
    ("artifactory with a null usernameSecret", {"artifactory": {"url": "https://af/x", "usernameSecret": None}}),
    ("artifactory without url", {"artifactory": {"usernameSecret": SECRET}}),
    ("hdfs without addresses", {"hdfs": {"path": "/p"}}),
    ("hdfs with no addresses", {"hdfs": {"addresses": [], "path": "/p"}}),
    ("oss without endpoint", {"oss": {"bucket": "b", "key": "k"}}),
    ("oss without bucket", {"oss": {"endpoint": "e", "key": "k"}}),
    ("oss without key", {"oss": {"endpoint": "e", "bucket": "b"}}),
    ("gcs without bucket", {"gcs": {"key": "k"}}),
    ("gcs without key", {"gcs": {"bucket": "b"}}),
    ("azure without endpoint", {"azure": {"container": "c", "blob": "k"}}),
    ("azure without container", {"azure": {"endpoint": "e", "blob": "k"}}),
    ("azure without blob", {"azure": {"endpoint": "e", "container": "c"}}),
    ("plugin without name", {"plugin": {"configuration": "x", "key": "k"}}),
    ("plugin without configuration", {"plugin": {"name": "p", "key": "k"}}),
    ("plugin without key", {"plugin": {"name": "p", "configuration": "x"}}),
    ("no driver", {"name": "out", "path": "/tmp/out"}),
    ("only archiveLogs", {"archiveLogs": True}),
    ("a null driver", {"s3": None}),
]


# --- driver_of --------------------------------------------------------------------------------------------------


def test_every_driver_is_covered() -> None:
    assert set(COMPLETE) == set(ARTIFACT_DRIVERS)


@pytest.mark.parametrize("driver", ARTIFACT_DRIVERS)
def test_driver_of_names_the_driver(driver: str) -> None:
    location, _ = COMPLETE[driver]
    assert driver_of({"name": "out", "path": "/tmp/out", "archiveLogs": True, **location}) == driver


def test_driver_of_none_and_null_drivers() -> None:
    assert driver_of(None) is None
    assert driver_of({}) is None
    assert driver_of({"name": "out", "s3": None}) is None, "JSON null is a nil pointer in Go, like an absent key"
    assert driver_of({"s3": None, "gcs": {"bucket": "b"}}) == "gcs"


def test_driver_of_refuses_several_drivers() -> None:
    with pytest.raises(ArtifactLocationError, match="s3, gcs"):
        driver_of({"s3": {"key": "k"}, "gcs": {"key": "k"}})


# --- has_location -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ARTIFACT_DRIVERS)
def test_complete_locations(driver: str) -> None:
    location, _ = COMPLETE[driver]
    assert has_location(location)
    assert has_location({"name": "out", "path": "/tmp/out", **location}), "an artifact inlines its location"


@pytest.mark.parametrize(("case", "location"), INCOMPLETE, ids=[case for case, _ in INCOMPLETE])
def test_incomplete_locations(case: str, location: dict[str, Any]) -> None:
    assert not has_location(location)


def test_has_location_of_nothing() -> None:
    assert not has_location(None)  # TestArtifactLocation_HasLocation: a nil location


def test_raw_is_complete_even_when_empty() -> None:
    assert has_location({"raw": {}})  # RawArtifact.HasLocation is `r != nil`


def test_git_artifact_argo_vector() -> None:
    # TestGitArtifact: complete with a repo, and no key.
    assert has_location({"git": {"repo": "my-repo"}})


def test_a_malformed_body_is_an_error() -> None:
    with pytest.raises(ArtifactLocationError, match="`s3` must be an object"):
        has_location({"s3": "bucket/key"})
    with pytest.raises(ArtifactLocationError, match=re.escape("`s3.key` must be a string")):
        has_location({"s3": {"endpoint": "e", "bucket": "b", "key": 3}})


# --- get_key / set_key ------------------------------------------------------------------------------------------

KEYED = [driver for driver in ARTIFACT_DRIVERS if driver not in ("git", "raw")]


@pytest.mark.parametrize("driver", KEYED)
def test_get_key(driver: str) -> None:
    location, key = COMPLETE[driver]
    assert get_key(location) == key


@pytest.mark.parametrize(
    ("driver", "new_key", "field", "stored"),
    [
        ("s3", "x/y", "key", "x/y"),
        ("oss", "x/y", "key", "x/y"),
        ("gcs", "x/y", "key", "x/y"),
        ("azure", "x/y", "blob", "x/y"),
        ("hdfs", "/x/y", "path", "/x/y"),
        ("plugin", "x/y", "key", "x/y"),
        ("http", "/x/y", "url", "https://example.com/x/y"),
        ("artifactory", "/x/y", "url", "https://af.example.com/x/y"),
    ],
)
def test_set_key(driver: str, new_key: str, field: str, stored: str) -> None:
    location, _ = COMPLETE[driver]
    before = copy.deepcopy(location)
    changed = set_key(location, new_key)
    assert changed[driver][field] == stored
    assert get_key(changed) == new_key
    assert location == before, "set_key returns a new dict"
    others = {name: value for name, value in changed[driver].items() if name != field}
    assert others == {name: value for name, value in location[driver].items() if name != field}


@pytest.mark.parametrize("driver", ["git", "raw"])
def test_keyless_drivers(driver: str) -> None:
    location, _ = COMPLETE[driver]
    with pytest.raises(ArtifactLocationError, match="does not have a key"):
        get_key(location)
    with pytest.raises(ArtifactLocationError, match="does not have a key"):
        set_key(location, "k")


def test_no_driver_has_no_key() -> None:
    for location in ({}, None, {"name": "out"}):
        with pytest.raises(ArtifactLocationError, match="no driver"):
            get_key(location)
        with pytest.raises(ArtifactLocationError, match="no driver"):
            set_key(location, "k")


def test_empty_key_fields_read_as_empty() -> None:
    assert get_key({"s3": {}}) == ""
    assert get_key({"s3": {"key": None}}) == ""
    assert get_key({"http": {}}) == ""


# URL keys follow Go's net/url: `Path` is decoded, `String` adds a slash between host and path, escapes `?` and
# non-ASCII, keeps the query and the fragment.
URL_KEYS = [
    ("http://my-host", "my-key", "http://my-host/my-key", "/my-key"),  # TestHTTPArtifact / TestArtifactoryArtifact
    ("https://h/old", "/new", "https://h/new", "/new"),
    ("https://h/old?x=1#frag", "/a b", "https://h/a%20b?x=1#frag", "/a b"),
    ("https://h/old", "/what?why#how", "https://h/what%3Fwhy%23how", "/what?why#how"),
    ("https://h/old", "/grüß", "https://h/gr%C3%BC%C3%9F", "/grüß"),
    ("https://h/old", "/a+b;c=d@e:f", "https://h/a+b;c=d@e:f", "/a+b;c=d@e:f"),
    ("https://h/a%2Fb", "/a/b", "https://h/a%2Fb", "/a/b"),  # the written form is kept while it still fits
    ("HTTPS://user:pw@h:8443/old", "/new", "https://user:pw@h:8443/new", "/new"),  # the scheme is lowercased
    ("https://h/old", "", "https://h", ""),
    ("https://h/old", "*", "https://h/*", "/*"),
    ("/relative/old", "c:d", "./c:d", "./c:d"),  # no scheme and no host: Go protects the colon
    ("mailto:someone", "/new", "mailto:someone", ""),  # opaque URLs have no path
]


@pytest.mark.parametrize(("url", "key", "written", "read_back"), URL_KEYS)
@pytest.mark.parametrize("driver", ["http", "artifactory"])
def test_url_keys(driver: str, url: str, key: str, written: str, read_back: str) -> None:
    changed = set_key({driver: {"url": url, "usernameSecret": SECRET}}, key)
    assert changed[driver]["url"] == written
    assert get_key(changed) == read_back


def test_artifactory_argo_vector() -> None:
    # TestArtifactoryArtifact: a URL without usernameSecret is not complete; the key gains a leading slash.
    location = {"artifactory": {"url": "http://my-host"}}
    assert not has_location(location)
    changed = set_key(location, "my-key")
    assert changed == {"artifactory": {"url": "http://my-host/my-key"}}
    assert get_key(changed) == "/my-key"


def test_url_keys_are_decoded() -> None:
    assert get_key({"http": {"url": "https://h/a%20b/c%3Fd?e=f%20g#h"}}) == "/a b/c?d"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://h/%zz", "invalid URL escape"),
        ("https://h/%4", "invalid URL escape"),
        ("https://h/a\nb", "invalid control character"),
        ("://h/a", "missing protocol scheme"),
        ("https://h:port/a", "invalid port"),
        ("https://a b/c", "invalid character"),
        ("https://[::1/a", "missing ']'"),
        ("a:b:c/d", None),  # a scheme `a`, opaque: no error
        ("1a:b/c", "first path segment in URL cannot contain colon"),
    ],
)
def test_urls_go_cannot_parse(url: str, error: str | None) -> None:
    location = {"http": {"url": url}}
    if error is None:
        assert get_key(location) == ""
        return
    with pytest.raises(ArtifactLocationError, match=error):
        get_key(location)
    with pytest.raises(ArtifactLocationError, match=error):
        set_key(location, "/k")


# --- relocate ---------------------------------------------------------------------------------------------------

MINIO: dict[str, Any] = {
    "archiveLogs": False,
    "s3": {"endpoint": "minio:9000", "bucket": "my-bucket", "insecure": True, "key": "wf/pod",
           "accessKeySecret": {"name": "my-minio-cred", "key": "accesskey"},
           "secretKeySecret": {"name": "my-minio-cred", "key": "secretkey"}},
}
GCS: dict[str, Any] = {"archiveLogs": True, "gcs": {"bucket": "gcs-bucket", "key": "wf/pod",
                                    "serviceAccountKeySecret": {"name": "sa", "key": "json"}}}
OUTPUT: dict[str, Any] = {
    "name": "model", "path": "/tmp/model", "mode": 420, "from": "", "globalName": "g", "optional": True,
    "archive": {"none": {}}, "subPath": "sub", "recurseMode": True, "artifactGC": {"strategy": "OnWorkflowDeletion"},
    "deleted": False, "s3": {"key": "wf/pod/model.tgz"},
}
NON_LOCATION = {name: value for name, value in OUTPUT.items() if name != "s3"}


def test_relocate_keeps_a_complete_location() -> None:
    artifact = {"name": "in", "path": "/tmp/in", **COMPLETE["s3"][0]}
    assert relocate(artifact, GCS) == artifact
    assert relocate(artifact, None) == artifact, "a complete location needs no archive location"


def test_relocate_argo_vectors() -> None:
    # TestArtifactLocation_Relocate / HasLocation: a complete location stays.
    complete = {"s3": {"bucket": "my-bucket", "endpoint": "my-endpoint", "key": "my-key"}}
    assert relocate(complete, {"s3": {"bucket": "other-bucket"}}) == complete
    # NotHasLocation: the bucket comes from the archive location, the key stays.
    relocated = relocate({"s3": {"key": "my-key"}}, {"s3": {"bucket": "my-bucket", "key": "other-key"}})
    assert relocated == {"s3": {"bucket": "my-bucket", "key": "my-key"}}


def test_relocate_a_key_only_artifact_same_driver() -> None:
    relocated = relocate(OUTPUT, MINIO)
    assert relocated["s3"] == {**MINIO["s3"], "key": "wf/pod/model.tgz"}
    assert has_location(relocated)
    assert {name: value for name, value in relocated.items() if name not in ("s3", "archiveLogs")} == NON_LOCATION


def test_relocate_a_key_only_artifact_to_another_driver() -> None:
    relocated = relocate(OUTPUT, GCS)
    assert driver_of(relocated) == "gcs"
    assert "s3" not in relocated
    assert relocated["gcs"] == {**GCS["gcs"], "key": "wf/pod/model.tgz"}
    assert has_location(relocated)
    assert {name: value for name, value in relocated.items() if name not in ("gcs", "archiveLogs")} == NON_LOCATION


def test_relocate_to_a_url_driver_roots_the_key() -> None:
    archive = {"artifactory": {"url": "https://af.example.com/artifactory/repo/wf/pod", "usernameSecret": SECRET}}
    relocated = relocate(OUTPUT, archive)
    assert relocated["artifactory"]["url"] == "https://af.example.com/wf/pod/model.tgz"
    assert get_key(relocated) == "/wf/pod/model.tgz", "Go's URL.String adds the slash between host and path"


def test_relocate_drops_the_artifacts_own_driver_fields() -> None:
    # `*a = *l.DeepCopy()`: the artifact's partial location is replaced, not merged.
    artifact = {"name": "x", "s3": {"key": "k", "bucket": "mine", "region": "eu-west-1"}}
    relocated = relocate(artifact, {"s3": {"endpoint": "e", "bucket": "theirs"}})
    assert relocated == {"name": "x", "s3": {"endpoint": "e", "bucket": "theirs", "key": "k"}}


def test_relocate_copies_archive_logs_from_the_archive_location() -> None:
    assert relocate(OUTPUT, GCS)["archiveLogs"] is True
    assert relocate(OUTPUT, MINIO)["archiveLogs"] is False
    own = relocate({**OUTPUT, "archiveLogs": True}, {"s3": MINIO["s3"]})
    assert "archiveLogs" not in own, "the artifact's own archiveLogs is replaced with the archive location's (none)"
    kept = relocate({**COMPLETE["s3"][0], "archiveLogs": True}, GCS)
    assert kept["archiveLogs"] is True, "a complete location is not touched at all"


def test_relocate_ignores_non_location_fields_of_the_archive_location() -> None:
    relocated = relocate(OUTPUT, {**MINIO, "name": "not-copied", "path": "/nope"})
    assert relocated["name"] == "model"
    assert relocated["path"] == "/tmp/model"


@pytest.mark.parametrize(
    ("artifact", "archive", "error"),
    [
        (OUTPUT, None, "template artifact location not set"),
        ({"name": "x"}, None, "template artifact location not set"),
        ({"name": "x"}, MINIO, "no driver"),
        ({}, {}, "no driver"),
        (OUTPUT, {}, "no driver"),
        (OUTPUT, {"archiveLogs": True}, "no driver"),
        (OUTPUT, {"s3": None}, "no driver"),
        (OUTPUT, {"git": {"repo": "r"}}, "does not have a key"),
        (OUTPUT, {"raw": {"data": "d"}}, "does not have a key"),
        ({"git": {"revision": "main"}}, MINIO, "does not have a key"),
        ({"s3": {}}, {}, "no driver"),  # TestArtifactLocation_Relocate / Error
        (OUTPUT, {"s3": {"key": "k"}, "gcs": {"key": "k"}}, "several drivers"),
    ],
)
def test_relocate_errors(artifact: dict[str, Any], archive: dict[str, Any] | None, error: str) -> None:
    with pytest.raises(ArtifactLocationError, match=error):
        relocate(artifact, archive)


def test_relocate_with_an_empty_key() -> None:
    # An `s3: {}` output has the key '' (no error in Go); relocated, it is still not complete.
    relocated = relocate({"name": "x", "s3": {}}, MINIO)
    assert relocated["s3"]["key"] == ""
    assert not has_location(relocated)


def test_relocate_shares_nothing_with_its_inputs() -> None:
    artifact, archive = copy.deepcopy(OUTPUT), copy.deepcopy(MINIO)
    relocated = relocate(artifact, archive)
    relocated["s3"]["accessKeySecret"]["name"] = "changed"
    relocated["archive"]["none"]["x"] = 1
    assert artifact == OUTPUT
    assert archive == MINIO


# --- location_of ------------------------------------------------------------------------------------------------


def test_location_of() -> None:
    artifact = {**NON_LOCATION, "archiveLogs": True, **COMPLETE["gcs"][0]}
    assert location_of(artifact) == COMPLETE["gcs"][0]
    assert location_of({"name": "x"}) == {}
    location = location_of(artifact)
    location["gcs"]["bucket"] = "changed"
    assert artifact["gcs"]["bucket"] == "b", "a copy"


def test_location_of_refuses_several_drivers() -> None:
    with pytest.raises(ArtifactLocationError):
        location_of({"s3": {}, "raw": {}})


# --- properties -------------------------------------------------------------------------------------------------

_names = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?", fullmatch=True)
_url_paths = st.lists(_names, max_size=3).map(lambda parts: "".join(f"/{part}" for part in parts))
_urls = st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}", st.sampled_from(["http", "https"]),
                  _hosts, _url_paths)
_secrets = st.fixed_dictionaries({"name": _names, "key": _names})

# Complete archive locations for every driver that has a key; their own keys are there to be replaced.
_archives = st.one_of(
    st.builds(lambda e, b, k, s: {"s3": {"endpoint": e, "bucket": b, "key": k, "accessKeySecret": s}},
              _names, _names, _names, _secrets),
    st.builds(lambda e, b, k: {"oss": {"endpoint": e, "bucket": b, "key": k}}, _names, _names, _names),
    st.builds(lambda b, k: {"gcs": {"bucket": b, "key": k}}, _names, _names),
    st.builds(lambda e, c, k: {"azure": {"endpoint": e, "container": c, "blob": k}}, _names, _names, _names),
    st.builds(lambda a, k: {"hdfs": {"addresses": a, "path": k}}, st.lists(_hosts, min_size=1, max_size=3), _names),
    st.builds(lambda n, c, k: {"plugin": {"name": n, "configuration": c, "key": k}}, _names, _names, _names),
    st.builds(lambda u: {"http": {"url": u}}, _urls),
    st.builds(lambda u, s: {"artifactory": {"url": u, "usernameSecret": s}}, _urls, _secrets),
).flatmap(lambda location: st.sampled_from([location, {**location, "archiveLogs": True},
                                            {**location, "archiveLogs": False}]))

# Key-only output artifacts: a key in a driver that is otherwise empty, as a template's outputs usually are.
_KEY_ONLY_FIELDS = {"s3": "key", "oss": "key", "gcs": "key", "azure": "blob", "hdfs": "path", "plugin": "key"}


def key_only(driver: str, key: str) -> dict[str, Any]:
    return {"name": "out", "path": "/tmp/out", "optional": True, driver: {_KEY_ONLY_FIELDS[driver]: key}}


def expected_key(archive: dict[str, Any], key: str) -> str:
    """The key read back: as given, except that a URL driver roots it (Go's `URL.String` adds `/` after the host)."""
    if driver_of(archive) in ("http", "artifactory") and not key.startswith("/"):
        return f"/{key}"
    return key


@given(key=st.text(min_size=1), driver=st.sampled_from(sorted(_KEY_ONLY_FIELDS)), archive=_archives)
def test_relocated_key_only_artifacts_keep_their_key_and_are_complete(key: str, driver: str,
                                                                     archive: dict[str, Any]) -> None:
    artifact = key_only(driver, key)
    relocated = relocate(artifact, archive)
    assert get_key(relocated) == expected_key(archive, key)
    assert has_location(relocated)
    assert driver_of(relocated) == driver_of(archive)
    assert relocated.get("archiveLogs") == archive.get("archiveLogs")
    assert {name: relocated[name] for name in ("name", "path", "optional")} == {
        "name": "out", "path": "/tmp/out", "optional": True}


@given(key=st.text().map(lambda text: f"/{text}"), archive=_archives)
def test_rooted_keys_survive_every_driver_unchanged(key: str, archive: dict[str, Any]) -> None:
    assert get_key(relocate(key_only("s3", key), archive)) == key


@given(key=st.text(), driver=st.sampled_from(sorted(_KEY_ONLY_FIELDS)), archive=_archives,
       complete=st.booleans())
def test_relocate_never_mutates_its_inputs(key: str, driver: str, archive: dict[str, Any], complete: bool) -> None:
    artifact = key_only(driver, key) if not complete else {"name": "in", **archive}
    artifact_before, archive_before = copy.deepcopy(artifact), copy.deepcopy(archive)
    relocate(artifact, archive)
    assert artifact == artifact_before
    assert archive == archive_before


@given(key=st.text(), archive=_archives)
def test_set_key_then_get_key(key: str, archive: dict[str, Any]) -> None:
    before = copy.deepcopy(archive)
    assert get_key(set_key(archive, key)) == (expected_key(archive, key) if key else "")
    assert archive == before
