"""The real admission server keeps answering AdmissionReviews while its certificate rotates to a new CA."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from tests.conftest import StartWebhook, write_tls_material
from tests.harness.apiserver import ApiServer
from wfboost.tls.certs import create_ca, create_serving_cert, service_names
from wfboost_dev.demo.apiserver import SERVICE_DNS_NAME

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ml"},
       "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def served_serial(port: int, bundle: Path) -> int:
    context = ssl.create_default_context(cafile=str(bundle))
    with socket.create_connection(("127.0.0.1", port), 10) as raw, context.wrap_socket(
        raw, server_hostname=SERVICE_DNS_NAME
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_rotation_under_live_admission_traffic(start_webhook: StartWebhook, tmp_path: Path) -> None:
    material = write_tls_material(tmp_path / "serving")
    webhook = start_webhook(settings={"cert_dir": material.directory, "reload_interval": 0.05})
    old_ca = material.ca_bundle.read_bytes()
    new_ca = create_ca(common_name="wfboost-ca-next")
    new_serving = create_serving_cert(new_ca, service_names("wfboost", "wfboost"))
    both = tmp_path / "both.crt"  # what caBundle holds during rotation: old and new CA
    both.write_bytes(new_ca.cert_pem + old_ca)
    api = ApiServer(webhook.running.port, both)
    before = served_serial(webhook.running.port, both)

    stop = threading.Event()
    answered, failures = [0], []

    def traffic() -> None:
        while not stop.is_set():
            try:
                api.admit("pods", POD)
                answered[0] += 1
            except Exception as exc:  # any failure at all is what this test is about
                failures.append(repr(exc))

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for worker in workers:
        worker.start()
    wait_until(lambda: answered[0] >= 30)
    # A kubelet updates a mounted Secret by swapping a symlink to a new directory; files are replaced here likewise.
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "tls.crt").write_bytes(new_serving.cert_pem)
    (staged / "tls.key").write_bytes(new_serving.key_pem)
    for name in ("tls.key", "tls.crt"):
        shutil.copyfile(staged / name, material.directory / (name + ".tmp"))
        (material.directory / (name + ".tmp")).replace(material.directory / name)
    rotated_at = answered[0]
    new_serial = new_serving.certificate.serial_number
    wait_until(lambda: served_serial(webhook.running.port, both) == new_serial)
    wait_until(lambda: answered[0] >= rotated_at + 60)
    stop.set()
    for worker in workers:
        worker.join(30)

    assert failures == []
    assert before != new_serial and webhook.server.tls.serial == new_serial
    # Once the old CA leaves the bundle (after it expires), the server is still trusted: it serves the new chain.
    (tmp_path / "new.crt").write_bytes(new_ca.cert_pem)
    assert ApiServer(webhook.running.port, tmp_path / "new.crt").admit("pods", POD).patch == []
