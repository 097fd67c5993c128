"""The images the install runs are the ones `make images` builds: same names and version everywhere (manifests,
chart, the policy's default replay image, pyproject), and each Dockerfile ends as a numeric non-root user, which
is what lets the kubelet enforce runAsNonRoot."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from wfboost.policy import load_policy
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
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\nimages:"):]
    assert "-f deploy/images/Dockerfile" in target and "-f deploy/images/replay/Dockerfile" in target
    assert "$(IMAGE_PREFIX)/wfboost:$(IMAGE_TAG)" in target and "$(IMAGE_PREFIX)/replay:$(IMAGE_TAG)" in target
    assert "IMAGE_PREFIX    ?= ghcr.io/wfboost" in makefile
