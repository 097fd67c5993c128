"""The side store: content-addressed blobs that wfboost moves out of etcd, streamed, verified and collected.

`server` is the HTTP service (`wfboost sidestore serve`), `client` the library the webhook and the CLI use;
`store` and `uploads` hold the rules, `backend` the storage interface (Redis, filesystem, S3), `gc` and `live`
the sweeper and its view of live Workflows. See docs/sidestore.md.
"""

from wfboost.cache.sidestore.client import (
    ClientSettings,
    SideStoreClient,
    SideStoreClientError,
    SideStoreUnavailable,
    digest_of,
)
from wfboost.cache.sidestore.config import ServiceConfig
from wfboost.cache.sidestore.store import BlobStore, StoreSettings

__all__ = [
    "BlobStore",
    "ClientSettings",
    "ServiceConfig",
    "SideStoreClient",
    "SideStoreClientError",
    "SideStoreUnavailable",
    "StoreSettings",
    "digest_of",
]
