"""The floor: what any webhook costs on this machine (TLS, HTTP, parsing the review, answering "allowed").

`python -m wfboost_dev.bench.floor --port P --cert-dir D [--workers N]`: the same aiohttp server, TLS context and
worker model (SO_REUSEPORT, one process per worker) as `wfboost serve`, with a handler that only parses the
AdmissionReview and allows it. Every wfboost number in `make bench` is shown as a ratio of this one, measured in the
same run with the same load generator.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson
from aiohttp import web

from wfboost.tls.reloader import CertificateReloader
from wfboost.webhook.config import MAX_BODY_BYTES


def floor_app() -> web.Application:
    async def allow(request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        answer = {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], "allowed": True}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/mutate/{route}", allow)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break  # a worker: serve like the parent
    tls = CertificateReloader(args.cert_dir)
    tls.check_now()
    web.run_app(floor_app(), host="127.0.0.1", port=args.port, ssl_context=tls.context, access_log=None,
                reuse_port=args.workers > 1, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
