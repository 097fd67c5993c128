"""`wfboost_redis_up` follows Redis with no admission at all: the alert for Redis down must not wait for pods."""

from __future__ import annotations

import math
import time

from tests.conftest import StartWebhook
from wfboost_dev.demo.processes import free_port, start_redis


def wait_for(read: object, value: float, timeout: float = 20) -> None:
    assert callable(read)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read() == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"wfboost_redis_up stayed {read()}, expected {value}")


def test_redis_up_follows_redis_without_traffic(start_webhook: StartWebhook) -> None:
    server = start_redis()
    port = server.port
    try:
        webhook = start_webhook(settings={"redis_url": server.url, "reload_interval": 0.1})
        gauge = webhook.server.metrics.redis_up
        wait_for(gauge._value.get, 1.0)
    finally:
        server.stop()
    wait_for(gauge._value.get, 0.0)
    again = start_redis(port=port)  # back on the same address: noticed again
    try:
        wait_for(gauge._value.get, 1.0)
    finally:
        again.stop()


def test_without_redis_the_gauge_says_nothing(start_webhook: StartWebhook) -> None:
    webhook = start_webhook()
    time.sleep(0.3)
    assert math.isnan(webhook.server.metrics.redis_up._value.get())  # neither up nor down: no false alert


def test_an_unreachable_cluster_is_down_and_the_server_keeps_serving(start_webhook: StartWebhook) -> None:
    """redis-py's Cluster client fails with RedisClusterException, which is no RedisError: the probe says 0 and the
    webhook goes on admitting (failing open), it does not stop."""
    webhook = start_webhook(settings={"redis_url": f"redis://127.0.0.1:{free_port()}/0?cluster=true",
                                      "reload_interval": 0.1})
    wait_for(webhook.server.metrics.redis_up._value.get, 0.0)
    time.sleep(0.5)  # several failed probes
    answer = webhook.api.request("GET", "/healthz")
    assert answer.status == 200
