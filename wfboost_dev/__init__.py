"""Development tools beside the product, never shipped in the wheel.

`argosim` builds pods and walks workflows the way the Argo controller does at named tags (fixtures for tests and
the demo); `demo` is `make run`; `bench` is `make bench`. They import the product; the product never imports
them (an import-linter contract says so).
"""
