"""The API server's part in tests: the package's client plus schema validation of every stored object."""

from __future__ import annotations

from pathlib import Path

from tests.harness.validate import validate_object
from wfboost_dev.demo.apiserver import AdmissionFailed, Admitted, ApiServerClient, HttpAnswer

__all__ = ["AdmissionFailed", "Admitted", "ApiServer", "HttpAnswer"]


class ApiServer(ApiServerClient):
    """Validates every object it would store, against the Kubernetes or Argo schema (422 otherwise)."""

    def __init__(self, port: int, ca_bundle: Path, **kwargs: object):
        super().__init__(port, ca_bundle, validate=validate_object, **kwargs)  # type: ignore[arg-type]
