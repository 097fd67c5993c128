"""The server's TLS context: serving certificate from a mounted Secret, optional client CA for mTLS.

Kept here rather than borrowed from the webhook (an upper layer). With a client CA, certificates are requested
but optional (CERT_OPTIONAL), so token clients and certificate clients share one port; a certificate that is
presented must chain to the CA. `reload()` loads a rotated pair into the same context: new connections use it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any


class ServerTls:
    def __init__(
        self, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str], client_ca: str | None = None
    ) -> None:
        self.cert_file, self.key_file, self.client_ca = Path(cert_file), Path(key_file), client_ca
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_ca:
            self.context.load_verify_locations(cafile=client_ca)
            self.context.verify_mode = ssl.CERT_OPTIONAL
        self._stamp: tuple[int, int] | None = None
        self.reload()

    def reload(self) -> bool:
        stamp = (self.cert_file.stat().st_mtime_ns, self.key_file.stat().st_mtime_ns)
        if stamp == self._stamp:
            return False
        self.context.load_cert_chain(self.cert_file, self.key_file)
        self._stamp = stamp
        return True


def peer_common_name(peercert: Any) -> str | None:
    """The CN of a verified client certificate (as `ssl.SSLSocket.getpeercert()` returns it), if any."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
