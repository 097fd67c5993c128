"""The install as the cluster would get it, and the checks `make deploy-check` runs on it.

`kustomize` renders deploy/base the way `kubectl apply -k` would (there is no kustomize binary on the development
machines), `chart` renders deploy/chart/wfboost with real Helm code (helm-python-sdk), and `checks` looks at the
rendered objects as the API server and an attacker would: Pod Security "restricted", Secrets nobody creates, Redis
without credentials, who may change the webhook configuration.
"""
