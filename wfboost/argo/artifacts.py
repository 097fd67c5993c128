"""Argo artifact locations, resolved the way Argo's controller and executor resolve them.

wfboost keys cached step outputs by where their artifacts live, and a replayed step must leave its outputs where Argo
would have put them. Both depend on three rules of `ArtifactLocation` in
`pkg/apis/workflow/v1alpha1/workflow_types.go`: when a location is complete (`HasLocation`), what a location's key is
(`GetKey`/`SetKey`), and where a key-only output artifact ends up (`Relocate` against the template's archive
location). Getting any of them slightly wrong would make a cache entry point at an object Argo never wrote, so this
module follows the Go rules, quirks included. It is pure: artifacts and locations are dicts as they appear in a
Workflow's JSON, and every function returns new dicts instead of changing the ones it is given.

An artifact and its location share one JSON object (`Artifact` inlines `ArtifactLocation`), so every function here
takes either. A location's driver is the one key of `ARTIFACT_DRIVERS` present with a non-null value (JSON `null`
decodes to a nil pointer in Go, the same as an absent key).

The behaviour is the same at v3.5.14, v3.7.18 and v4.1.2, except that the `plugin` driver exists only at v4.1.2 and
only v4.1.2 rejects a location with several drivers (a CEL rule on `ArtifactLocation`). The older releases accept one
and pick a driver in the order of `ArtifactLocation.Get`; wfboost refuses such a location instead of guessing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import orjson

from wfboost.argo.names import ARTIFACT_DRIVERS

# The fields of `ArtifactLocation`: the drivers and `archiveLogs`. `Relocate` replaces all of them at once.
LOCATION_FIELDS: Final = ("archiveLogs", *ARTIFACT_DRIVERS)

# Drivers whose key is one string field of their body.
_KEY_FIELDS: Final[Mapping[str, str]] = {
    "s3": "key", "oss": "key", "gcs": "key", "azure": "blob", "hdfs": "path", "plugin": "key",
}
# Drivers whose key is the path of their `url`.
_URL_DRIVERS: Final = frozenset({"http", "artifactory"})
# Drivers without a key.
_KEYLESS: Final = frozenset({"git", "raw"})
# The string fields each driver's `HasLocation` requires to be non-empty.
_REQUIRED_TEXT: Final[Mapping[str, tuple[str, ...]]] = {
    "s3": ("endpoint", "bucket", "key"),
    "git": ("repo",),
    "http": ("url",),
    "artifactory": ("url",),
    "oss": ("bucket", "endpoint", "key"),
    "gcs": ("bucket", "key"),
    "azure": ("endpoint", "container", "blob"),
    "plugin": ("name", "configuration", "key"),
}


class ArtifactLocationError(ValueError):
    """An artifact location Argo would refuse: several drivers, no driver, no key, or a URL Go cannot parse."""


def driver_of(location: Mapping[str, Any] | None) -> str | None:
    """The driver key of `location` (an artifact or an `ArtifactLocation`), or None when it has none.

    Mirrors `ArtifactLocation.Get` in pkg/apis/workflow/v1alpha1/workflow_types.go (checked at v3.5.14, v3.7.18 and
    v4.1.2), except that several drivers raise `ArtifactLocationError` instead of picking the first in `Get`'s order
    (artifactory, azure, git, gcs, hdfs, http, oss, raw, s3, plugin): v4.1.2 rejects such a location at admission,
    and a cache key must not depend on a tie-break.
    """
    if location is None:
        return None
    present = [driver for driver in ARTIFACT_DRIVERS if location.get(driver) is not None]
    if len(present) > 1:
        raise ArtifactLocationError(f"artifact location has several drivers: {', '.join(present)}")
    return present[0] if present else None


def has_location(location: Mapping[str, Any] | None) -> bool:
    """Whether `location` is complete: Argo reads and writes it as it is, without the archive location.

    Mirrors `ArtifactLocation.HasLocation` and each driver's `HasLocation` in
    pkg/apis/workflow/v1alpha1/workflow_types.go (checked at v3.5.14, v3.7.18 and v4.1.2; `PluginArtifact` only
    exists at v4.1.2): S3 needs `endpoint`, `bucket` and `key`; OSS `bucket`, `endpoint` and `key`; GCS `bucket` and
    `key`; Azure `endpoint`, `container` and `blob`; plugin `name`, `configuration` and `key`; HDFS a non-empty
    `addresses`; Artifactory a `url` and a `usernameSecret`; HTTP a `url`; git a `repo`; raw is always complete.
    No driver (or no location at all) is not complete.
    """
    driver = driver_of(location)
    if location is None or driver is None:
        return False
    body = _body(location, driver)
    if not all(_text(body, driver, field) for field in _REQUIRED_TEXT.get(driver, ())):
        return False
    if driver == "artifactory":
        return body.get("usernameSecret") is not None
    if driver == "hdfs":
        return len(_addresses(body)) > 0
    return True


def get_key(location: Mapping[str, Any] | None) -> str:
    """The key of `location`: where in its store the artifact is, relative to the driver's endpoint and bucket.

    Mirrors `ArtifactLocation.GetKey` and each driver's `GetKey` in pkg/apis/workflow/v1alpha1/workflow_types.go
    (checked at v3.5.14, v3.7.18 and v4.1.2): S3, OSS, GCS and plugin return `key`, Azure `blob`, HDFS `path`;
    HTTP and Artifactory return the decoded path of `url` as Go's `net/url` parses it (so `http://h/a%20b` has the
    key `/a b`, with its leading slash). Git and raw have no key, and neither has a location without a driver: those
    raise `ArtifactLocationError`, as Argo returns an error.
    """
    driver, body = _keyed_driver(location)
    if driver in _URL_DRIVERS:
        return _parse_url(_text(body, driver, "url")).path
    return _text(body, driver, _KEY_FIELDS[driver])


def set_key(location: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """A copy of `location` with its key replaced by `key`.

    Mirrors `ArtifactLocation.SetKey` and each driver's `SetKey` in pkg/apis/workflow/v1alpha1/workflow_types.go
    (checked at v3.5.14, v3.7.18 and v4.1.2). HTTP and Artifactory replace the path of `url` and write the URL back
    the way Go's `URL.String` does: a key without a leading slash gets one when the URL has a host (`my-key` on
    `http://my-host` gives `http://my-host/my-key`, whose key is then `/my-key`, as Argo's own tests expect), and
    characters a path cannot hold are percent-encoded. Git, raw and a location without a driver raise
    `ArtifactLocationError`.
    """
    driver, body = _keyed_driver(location)
    changed = _copied(body)
    if driver in _URL_DRIVERS:
        changed["url"] = _url_with_path(_text(body, driver, "url"), key)
    else:
        changed[_KEY_FIELDS[driver]] = key
    return {**_copied(location or {}), driver: changed}


def relocate(artifact: Mapping[str, Any], archive_location: Mapping[str, Any] | None) -> dict[str, Any]:
    """The artifact where Argo reads or writes it: its own location when complete, else the archive location's.

    Mirrors `ArtifactLocation.Relocate` in pkg/apis/workflow/v1alpha1/workflow_types.go (checked at v3.5.14, v3.7.18
    and v4.1.2), as the executor calls it on every artifact it loads or saves (`newDriverArt` in
    workflow/executor/executor.go) and the artifact GC pod on every artifact it deletes
    (cmd/argoexec/commands/artifact/delete.go). In order:

    - a complete location (`has_location`) is returned unchanged, even when `archive_location` is None;
    - a None `archive_location` raises `ArtifactLocationError` ("template artifact location not set");
    - the artifact's key is read (`get_key`, which raises for no driver and for git);
    - the whole `ArtifactLocation` is replaced by a deep copy of the archive location, and the key is set in it
      (`set_key`, which raises when the archive location has no driver or is git or raw). The driver may change
      (an `s3` key-only artifact relocated against a `gcs` archive location becomes a `gcs` artifact) and every other
      field of the artifact's own driver body is dropped.

    `archiveLogs` is a field of `ArtifactLocation`, so Go's `*a = *l.DeepCopy()` copies it too: the relocated artifact
    carries the archive location's `archiveLogs` (which the controller always sets on the template's archive
    location, `addArchiveLocation` in workflow/controller/workflowpod.go), and loses its own when the archive location
    has none. The artifact's other fields (`name`, `path`, `mode`, `from`, `archive`, `optional`, `artifactGC`, ...)
    are kept. The inputs are never changed.
    """
    if has_location(artifact):
        return _copied(artifact)
    if archive_location is None:
        raise ArtifactLocationError("template artifact location not set")
    key = get_key(artifact)
    relocated = {name: value for name, value in artifact.items() if name not in LOCATION_FIELDS}
    for name in LOCATION_FIELDS:
        if archive_location.get(name) is not None:
            relocated[name] = archive_location[name]
    return set_key(relocated, key)  # a deep copy: the inputs are shared by `relocated`, never changed


def location_of(artifact: Mapping[str, Any]) -> dict[str, Any]:
    """The location part of an artifact, its driver key and body only; empty when it has no driver.

    For cache keys: two artifacts stored at the same place have equal locations whatever their names, paths,
    `archiveLogs` or GC settings. Built on `driver_of`, so it mirrors `ArtifactLocation.Get` in
    pkg/apis/workflow/v1alpha1/workflow_types.go (checked at v3.5.14, v3.7.18 and v4.1.2) and raises
    `ArtifactLocationError` for several drivers.
    """
    driver = driver_of(artifact)
    if driver is None:
        return {}
    body = artifact[driver]
    return {driver: _copied(body) if isinstance(body, Mapping) else copy.deepcopy(body)}


def _keyed_driver(location: Mapping[str, Any] | None) -> tuple[str, Mapping[str, Any]]:
    """The driver and body of a location that must have a key; raises as Argo's `Get` and the keyless drivers'
    `GetKey`/`SetKey` do."""
    driver = driver_of(location)
    if location is None or driver is None:
        raise ArtifactLocationError("artifact storage is not configured: the location has no driver")
    if driver in _KEYLESS:
        raise ArtifactLocationError(f"key unsupported: a {driver} artifact does not have a key")
    return driver, _body(location, driver)


def _body(location: Mapping[str, Any], driver: str) -> Mapping[str, Any]:
    """The driver's object; anything else would fail Go's JSON decoding of the Workflow."""
    body = location[driver]
    if not isinstance(body, Mapping):
        raise ArtifactLocationError(f"`{driver}` must be an object, not {type(body).__name__}")
    return body


def _text(body: Mapping[str, Any], driver: str, field: str) -> str:
    """A string field of a driver's body; absent and null read as '' (Go's zero value)."""
    value = body.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ArtifactLocationError(f"`{driver}.{field}` must be a string, not {type(value).__name__}")
    return value


def _addresses(body: Mapping[str, Any]) -> list[Any]:
    value = body.get("addresses")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ArtifactLocationError(f"`hdfs.addresses` must be a list, not {type(value).__name__}")
    return value


# Go's net/url, as far as a URL's path is concerned. HTTP and Artifactory keys are `url.Parse(u).Path`, and `SetKey`
# assigns `Path` and writes the URL back with `URL.String`; Python's urllib splits and quotes differently (no
# `?` escaping, no `./` for a colon in the first segment, no leading slash added before a path on a host), so the
# parts that decide the path are rebuilt here, from net/url/url.go of the Go releases these tags build with (1.23 to
# 1.26). The authority (`userinfo@host`) is checked as Go checks it but kept as written, where Go re-escapes it; for
# the ASCII hosts and usernames of artifact repositories the two are the same.

_Mode = Literal["path", "fragment"]
_ALNUM: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_UNRESERVED: Final = _ALNUM | frozenset(b"-_.~")
_RESERVED: Final = frozenset(b"$&+,/:;=?@")
_VALID_ENCODED_EXTRA: Final = frozenset(b"!$&'()*+,;=:@[]%")
_HOST_EXTRA: Final = frozenset(b"-_.~!$&'()*+,;=:[]<>\"")
_USERINFO: Final = _UNRESERVED | frozenset(b":!$&'()*+,;=%@")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class _GoURL:
    """The fields of Go's `url.URL` that `URL.String` reads, as `url.Parse` sets them."""

    scheme: str = ""
    opaque: str = ""
    authority: str = ""  # `userinfo@host` as written
    host: str = ""
    has_user: bool = False
    omit_host: bool = False
    raw_path: str = ""  # the path as written
    path: str = ""  # decoded
    force_query: bool = False
    raw_query: str = ""
    raw_fragment: str = ""  # as written
    fragment: str = ""  # decoded


def _parse_url(raw: str) -> _GoURL:
    """Go's `url.Parse`, for the fields `String` needs; Go's parse errors raise `ArtifactLocationError`."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in raw):
        raise ArtifactLocationError(f"parse {raw!r}: net/url: invalid control character in URL")
    rest, _, raw_fragment = raw.partition("#")
    base = _GoURL(raw_fragment=raw_fragment, fragment=_unescape(raw_fragment, raw))
    if rest == "*":
        return replace(base, raw_path="*", path="*")
    scheme, rest = _split_scheme(rest, raw)
    force_query = rest.endswith("?") and rest.count("?") == 1
    if force_query:
        rest, raw_query = rest[:-1], ""
    else:
        rest, _, raw_query = rest.partition("?")
    base = replace(base, scheme=scheme, force_query=force_query, raw_query=raw_query)
    if not rest.startswith("/"):
        if scheme:
            return replace(base, opaque=rest)
        if ":" in rest.partition("/")[0]:
            raise ArtifactLocationError(f"parse {raw!r}: first path segment in URL cannot contain colon")
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        host, has_user = _check_authority(authority, raw)
        base = replace(base, authority=authority, host=host, has_user=has_user)
    elif scheme and rest.startswith("/"):
        base = replace(base, omit_host=True)
    return replace(base, raw_path=rest, path=_unescape(rest, raw))


def _split_scheme(rest: str, raw: str) -> tuple[str, str]:
    """Go's `getScheme`: `[a-zA-Z][a-zA-Z0-9+-.]*:`, lowercased; anything else leaves no scheme."""
    for index, char in enumerate(rest):
        if char.isascii() and char.isalpha():
            continue
        if char.isascii() and (char.isdigit() or char in "+-."):
            if index == 0:
                return "", rest
            continue
        if char == ":":
            if index == 0:
                raise ArtifactLocationError(f"parse {raw!r}: missing protocol scheme")
            return rest[:index].lower(), rest[index + 1:]
        return "", rest
    return "", rest


def _check_authority(authority: str, raw: str) -> tuple[str, bool]:
    """Go's `parseAuthority` checks (userinfo characters, port digits, host characters); returns host, has_user."""
    at = authority.rfind("@")
    host = authority[at + 1:]
    zoned = False
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            raise ArtifactLocationError(f"parse {raw!r}: missing ']' in host")
        _check_port(host[close + 1:], raw)
        zoned = "%25" in host[:close]
    elif (colon := host.rfind(":")) >= 0:
        _check_port(host[colon:], raw)
    if not zoned:  # an IPv6 zone (`[fe80::1%25en0]`) has laxer rules, not mirrored here
        _check_host_bytes(host, raw)
    if at >= 0:
        userinfo = authority[:at]
        if not all(byte in _USERINFO or byte >= 0x80 for byte in userinfo.encode()):
            raise ArtifactLocationError(f"parse {raw!r}: net/url: invalid userinfo")
        _unescape(userinfo, raw)
    return host, at >= 0


def _check_port(colon_port: str, raw: str) -> None:
    if colon_port and (colon_port[0] != ":" or not all("0" <= char <= "9" for char in colon_port[1:])):
        raise ArtifactLocationError(f"parse {raw!r}: invalid port {colon_port!r} after host")


def _check_host_bytes(host: str, raw: str) -> None:
    """Go's `unescape(host, encodeHost)`: ASCII only as itself, `%XX` only for non-ASCII bytes (and `%25`)."""
    data = host.encode()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x25:  # '%'
            escape = data[index:index + 3]
            if len(escape) < 3 or not (escape[1] in _HEX and escape[2] in _HEX):
                raise ArtifactLocationError(f"parse {raw!r}: invalid URL escape {escape.decode()!r}")
            if int(escape[1:2], 16) < 8 and escape != b"%25":
                raise ArtifactLocationError(f"parse {raw!r}: invalid URL escape {escape.decode()!r}")
            index += 3
            continue
        if byte < 0x80 and byte not in _ALNUM and byte not in _HOST_EXTRA:
            raise ArtifactLocationError(f"parse {raw!r}: invalid character {chr(byte)!r} in host name")
        index += 1


def _url_with_path(raw: str, path: str) -> str:
    """Go's `u.Path = path; u.String()` on `url.Parse(raw)`, which is what HTTP and Artifactory `SetKey` do."""
    url = _parse_url(raw)
    parts = [f"{url.scheme}:"] if url.scheme else []
    if url.opaque:
        parts.append(url.opaque)  # an opaque URL keeps no path: Go's `String` ignores `Path` here
    else:
        if (url.scheme or url.host or url.has_user) and not (url.omit_host and not url.host and not url.has_user):
            if url.host or path or url.has_user:
                parts.append("//")
            parts.append(url.authority)
        escaped = _escaped(url.raw_path, path, "path")
        if escaped and not escaped.startswith("/") and url.host:
            parts.append("/")
        if not "".join(parts) and ":" in escaped.partition("/")[0]:
            parts.append("./")
        parts.append(escaped)
    if url.force_query or url.raw_query:
        parts.append(f"?{url.raw_query}")
    if url.fragment:
        parts.append(f"#{_escaped(url.raw_fragment, url.fragment, 'fragment')}")
    return "".join(parts)


def _escaped(raw: str, decoded: str, mode: _Mode) -> str:
    """Go's `EscapedPath`/`EscapedFragment`: the text as written while it still decodes to the value, else escaped."""
    if raw and _valid_encoded(raw, mode) and _unescape(raw, raw) == decoded:
        return raw
    if mode == "path" and decoded == "*":
        return "*"
    return _escape(decoded, mode)


def _should_escape(byte: int, mode: _Mode) -> bool:
    """Go's `shouldEscape` for the path and fragment modes."""
    if byte in _UNRESERVED:
        return False
    if byte in _RESERVED:
        return mode == "path" and byte == 0x3F  # '?'
    return not (mode == "fragment" and byte in b"!()*")


def _valid_encoded(text: str, mode: _Mode) -> bool:
    return all(byte in _VALID_ENCODED_EXTRA or not _should_escape(byte, mode) for byte in text.encode())


def _escape(text: str, mode: _Mode) -> str:
    return "".join(f"%{byte:02X}" if _should_escape(byte, mode) else chr(byte) for byte in text.encode())


def _unescape(text: str, raw: str) -> str:
    """Go's `unescape` for paths and fragments (`+` stays `+`); bytes that are not UTF-8 become U+FFFD, as Go's JSON
    encoder writes them."""
    if "%" not in text:
        return text
    data = text.encode()
    out = bytearray()
    index = 0
    while index < len(data):
        if data[index] != 0x25:
            out.append(data[index])
            index += 1
            continue
        escape = data[index:index + 3]
        if len(escape) < 3 or not (escape[1] in _HEX and escape[2] in _HEX):
            raise ArtifactLocationError(f"parse {raw!r}: invalid URL escape {escape.decode(errors='replace')!r}")
        out.append(int(escape[1:], 16))
        index += 3
    return out.decode(errors="replace")


def _copied(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a location read from JSON: through orjson (C, a tenth of copy.deepcopy's time on the pod
    admission path), or copy.deepcopy for what orjson cannot write."""
    try:
        copied = orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(dict(value))
    return copied if isinstance(copied, dict) else copy.deepcopy(dict(value))
