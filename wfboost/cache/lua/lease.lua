-- A lease changed only by whoever holds it: renewed while the leader's pod lives, released when it is done.
-- KEYS[1] lease; ARGV: op ('extend' | 'release'), owner, ttl_ms (extend)
-- Returns 1 when the lease was this owner's (and is now extended or gone), 0 otherwise.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'extend' then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
else
  redis.call('DEL', KEYS[1])
end
return 1
