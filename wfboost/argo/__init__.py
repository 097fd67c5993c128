"""Argo Workflows pod layouts across controller versions."""
