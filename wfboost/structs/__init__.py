"""Typed wire structures shared by every layer (no I/O, no logic beyond trivial accessors)."""
