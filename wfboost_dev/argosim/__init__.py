"""A model of the Argo controller for fixtures and the demo: the pods it creates for a workflow's steps.

Written from the controller's source at the tags named in docs/argo-pods.md. It stays out of the product: what
the webhook and recorder read is parsed by `wfboost.argo.pods`, and a model of the controller can only confirm
what it believes, so tests also use fixtures written independently of it (tests/argo_source).
"""
