-- Record a successful step's entry on its staleness track. Idempotent: the same entry recorded twice is one write.
-- A track only moves to a newer result; the key's expiry only ever moves later; a lease this run held is released.
-- KEYS[1] tracks hash, KEYS[2] entries hash, KEYS[3] lease
-- ARGV: track, finished_ms, entry_id, entry_json, expire_at_ms, lease_owner ('' for none)
local field = 't:' .. ARGV[1]
local f = tonumber(ARGV[2])
local id = ARGV[3]
local replaced = 0

local current = redis.call('HGET', KEYS[1], field)
if not current then
  redis.call('HSET', KEYS[2], id, ARGV[4])
  redis.call('HSET', KEYS[1], field, ARGV[2] .. ':' .. id)
  replaced = 1
elseif tonumber(string.match(current, '^(%d+):')) < f then
  redis.call('HSET', KEYS[2], id, ARGV[4])
  redis.call('HSET', KEYS[1], field, ARGV[2] .. ':' .. id)
  replaced = 1
  -- Drop the superseded entry unless another track still points at it.
  local old = string.match(current, '^%d+:(.+)$')
  local still = false
  local tracks = redis.call('HVALS', KEYS[1])
  for i = 1, #tracks do
    if string.match(tracks[i], '^%d+:(.+)$') == old then still = true end
  end
  if not still and old ~= id then redis.call('HDEL', KEYS[2], old) end
end

local expire_at = tonumber(ARGV[5])
for i = 1, 2 do
  if redis.call('PEXPIRETIME', KEYS[i]) < expire_at then
    redis.call('PEXPIREAT', KEYS[i], expire_at)
  end
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[3]) == ARGV[6] then
  redis.call('DEL', KEYS[3])
end
return replaced
