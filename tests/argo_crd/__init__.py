"""Rules of Argo's full Workflow CRD that a DAG split can break, for tests (see rules.py)."""
