"""Authenticating the API server to the webhook (`wfboost serve --client-ca`): with a client CA, a TLS client without
a certificate from it cannot even complete the handshake; the API server, given one through its
AdmissionConfiguration kubeconfig (docs/tls.md), gets its reviews answered as before."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartWebhook
from tests.sidestore_fixtures import mint_client_cert
from tests.test_server import POD
from wfboost.tls.certs import create_ca


def test_only_a_client_with_a_certificate_from_the_ca_is_answered(start_webhook: StartWebhook,
                                                                  tmp_path: Path) -> None:
    api_server_ca = create_ca(common_name="api-server-clients")
    (tmp_path / "clients-ca.crt").write_bytes(api_server_ca.cert_pem)
    webhook = start_webhook(settings={"client_ca_file": tmp_path / "clients-ca.crt"})

    with pytest.raises((ssl.SSLError, ConnectionError)):  # no certificate: refused at the handshake
        webhook.api.admit("pods", POD)

    stranger = mint_client_cert(create_ca(common_name="someone-else"), "kube-apiserver")
    (tmp_path / "stranger.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "stranger.key").write_bytes(stranger.key_pem)
    webhook.api.context.load_cert_chain(tmp_path / "stranger.crt", tmp_path / "stranger.key")
    with pytest.raises((ssl.SSLError, ConnectionError)):  # a certificate from another CA: refused too
        webhook.api.admit("pods", POD)

    api_server = mint_client_cert(api_server_ca, "kube-apiserver")
    (tmp_path / "api.crt").write_bytes(api_server.cert_pem)
    (tmp_path / "api.key").write_bytes(api_server.key_pem)
    webhook.api.context.load_cert_chain(tmp_path / "api.crt", tmp_path / "api.key")
    admitted = webhook.api.admit("pods", POD)
    assert admitted.object == POD


def test_an_unusable_client_ca_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.crt").write_text("not a certificate")
    for path in (tmp_path / "missing.crt", tmp_path / "not-a-ca.crt"):
        done = subprocess.run([sys.executable, "-m", "wfboost", "serve", "--client-ca", str(path),
                               "--cert-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"wfboost serve: --client-ca {path}: not a readable PEM CA bundle")
