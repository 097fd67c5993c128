"""Talking to the side store: its wire format and the client library.

A lower layer shared by the side store service (which serves the wire format) and its clients (the webhook when it
shrinks workflows, the CLI), so that no service imports another.
"""

from wfboost.blobs.client import ClientSettings, SideStoreClient, SideStoreClientError, SideStoreUnavailable, digest_of

__all__ = ["ClientSettings", "SideStoreClient", "SideStoreClientError", "SideStoreUnavailable", "digest_of"]
