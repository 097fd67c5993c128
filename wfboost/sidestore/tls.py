"""The side store's serving TLS: the shared reloader (wfboost.tls), plus an optional client CA for mTLS.

With a client CA, certificates are requested but optional (CERT_OPTIONAL), so token clients and certificate clients
share one port; a certificate that is presented must chain to the CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from wfboost.tls.reloader import CertificateReloader, new_server_context


def serving_tls(cert_file: Path, key_file: Path, client_ca: str | None = None) -> CertificateReloader:
    """A reloader whose context also verifies client certificates when a client CA is given. It re-reads the files
    by content, validates a rotated pair before loading it, and keeps serving the old one if the new one is bad."""
    context = new_server_context()
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    reloader = CertificateReloader(
        Path(cert_file).parent, cert_name=str(cert_file), key_name=str(key_file), context=context
    )
    reloader.check_now()
    return reloader


def peer_common_name(peercert: Any) -> str | None:
    """The CN of a verified client certificate (as `ssl.SSLSocket.getpeercert()` returns it), if any."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
