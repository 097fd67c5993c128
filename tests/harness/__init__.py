"""Test harness: the API server's part, the running server, schema validation."""
