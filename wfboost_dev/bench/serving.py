"""A server under measurement: an aiohttp app on its own loop in a thread, measured from outside."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from wfboost.tls.reloader import CertificateReloader


class Serving:
    """An aiohttp app on its own loop in a thread, so the synchronous client measures it from outside."""

    def __init__(self, app: web.Application, reloader: CertificateReloader, port: int):
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=reloader.context)
            self.loop.run_until_complete(site.start())
            self.ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
