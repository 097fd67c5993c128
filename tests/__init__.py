"""wfboost tests."""
