"""wfboost: memoize and shrink Argo Workflows from a mutating admission webhook."""

__version__ = "0.1.0"
