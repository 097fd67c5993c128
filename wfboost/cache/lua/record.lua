-- Record a successful step's entry on its staleness track. Idempotent: the same entry recorded twice is one write.
-- A track only moves to a newer result; the key's expiry only ever moves later; a lease this run held is released.
-- A run whose image digest differs from the one the key's entries ran (a tag pushed again) makes them unservable:
-- they are dropped before this one is written.
-- KEYS[1] tracks hash, KEYS[2] entries hash, KEYS[3] lease, KEYS[4] image digest of the entries
-- Returns {replaced, dropped, released (the lease named was this run's, and is gone), superseded}
-- ARGV: track, finished_ms, entry_id, entry_json, expire_at_ms, lease_owner ('' for none), image digest ('' unknown),
--       restoring ('1': an entry from a backup, which never drops entries that finished after it; optional)
-- superseded: 1 when a restored entry ran another image than the key's entries, one of which finished after it (the
-- tag was pushed again since): nothing is written, since the older image's outputs must not come back.
local field = 't:' .. ARGV[1]
local f = tonumber(ARGV[2])
local id = ARGV[3]
local digest = ARGV[7]
local restoring = ARGV[8] == '1'
local replaced = 0
local dropped = 0

if digest ~= '' then
  local known = redis.call('GET', KEYS[4])
  if known and known ~= digest then
    if restoring then
      local tracks = redis.call('HVALS', KEYS[1])
      for i = 1, #tracks do
        if tonumber(string.match(tracks[i], '^(%d+):')) >= f then return {0, 0, 0, 1} end
      end
    end
    dropped = redis.call('HLEN', KEYS[2])
    redis.call('DEL', KEYS[1], KEYS[2])
  end
  redis.call('SET', KEYS[4], digest)
end

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
local expiring = {KEYS[1], KEYS[2]}
if digest ~= '' then expiring[3] = KEYS[4] end
for _, key in ipairs(expiring) do
  if redis.call('PEXPIRETIME', key) < expire_at then
    redis.call('PEXPIREAT', key, expire_at)
  end
end
local released = 0
if ARGV[6] ~= '' and redis.call('GET', KEYS[3]) == ARGV[6] then
  redis.call('DEL', KEYS[3])
  released = 1
end
return {replaced, dropped, released, 0}
