"""Thin async Kubernetes API client: the only place that speaks to the API server."""

from wfboost.kube.client import (
    JsonObject,
    KubeApiError,
    KubeClient,
    KubeTransportError,
    ListMeta,
    ObjectApi,
    ObjectList,
    PatchType,
    WatchEvent,
    WatchEventType,
    WatchExpired,
    resource_path,
)
from wfboost.kube.config import KubeConfig, KubeConfigError, KubeError

__all__ = [
    "JsonObject",
    "KubeApiError",
    "KubeClient",
    "KubeConfig",
    "KubeConfigError",
    "KubeError",
    "KubeTransportError",
    "ListMeta",
    "ObjectApi",
    "ObjectList",
    "PatchType",
    "WatchEvent",
    "WatchEventType",
    "WatchExpired",
    "resource_path",
]
