"""The Lua scripts that make a check and its change one step in Redis, so two requests (or a request and the
sweeper) can never both act on the same stale answer."""

from __future__ import annotations

# KEYS[1] usage; ARGV[1] bytes to reserve, ARGV[2] limit (-1: none). Returns {ok, used-after-or-before}.
RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and n > 0 and used + n > limit then
  return {0, used}
end
return {1, redis.call('INCRBY', KEYS[1], n)}
"""

# Touch an existing blob and add references to it, or report that it does not exist (then the caller writes it).
# KEYS[1] blob, KEYS[2] refs; ARGV[1] now, ARGV[2] digest, then (ref, record, by-ref key) triples.
TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'touched', ARGV[1])
for i = 3, #ARGV, 3 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('SADD', ARGV[i + 2], ARGV[2])
end
return 1
"""

# Create a blob record unless one exists (a concurrent identical upload won: the caller drops its copy).
# KEYS[1] blob, KEYS[2] index, KEYS[3] pending: one namespace, one slot.
# ARGV: manifest, size, stored, backend, now, digest, then pending members to release.
COMMIT_BLOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'manifest', ARGV[1], 'size', ARGV[2], 'stored', ARGV[3], 'backend', ARGV[4],
           'created', ARGV[5], 'touched', ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[6])
for i = 7, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
return 1
"""

# Record a received part in its upload, unless the upload is gone (aborted or expired: the caller drops the part).
# KEYS[1] upload, KEYS[2] pending (one namespace, one slot); ARGV: field, record, pending member.
# Returns the record it replaced (a re-sent part), "" when none, or false when the upload does not exist.
COMMIT_PART = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return old
"""
