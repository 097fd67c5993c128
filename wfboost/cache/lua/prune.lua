-- Remove tracks whose entry finished before a cutoff, or that point at the given entry ids, and every entry no
-- track points at any more. Used by the background purge (cutoff = now - retention) and by invalidation.
-- KEYS[1] tracks hash, KEYS[2] entries hash
-- ARGV: cutoff_ms (-1: none), entry ids to remove...
local cutoff = tonumber(ARGV[1])
local doomed = {}
for i = 2, #ARGV do doomed[ARGV[i]] = true end
local removed = 0
local tracks = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #tracks, 2 do
  local f, id = string.match(tracks[i + 1], '^(%d+):(.+)$')
  if (cutoff >= 0 and tonumber(f) < cutoff) or doomed[id] then
    redis.call('HDEL', KEYS[1], tracks[i])
  else
    live[id] = true
  end
end
local ids = redis.call('HKEYS', KEYS[2])
for i = 1, #ids do
  if not live[ids[i]] then
    redis.call('HDEL', KEYS[2], ids[i])
    removed = removed + 1
  end
end
return removed
