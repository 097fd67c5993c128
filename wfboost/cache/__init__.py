"""Everything with state: cache keys, the Redis store, leases, recorder, side store."""
