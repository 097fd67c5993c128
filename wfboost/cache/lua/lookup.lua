-- The admission-time question, in one round trip: is there an entry young enough, and if not, who runs the step?
-- KEYS[1] tracks hash, KEYS[2] entries hash, KEYS[3] lease (all share one hash tag: one node, one slot)
-- ARGV: now_ms, staleness_ms, track, adopt (1/0), lease_ttl_ms (0: no latching), lease_owner
local now = tonumber(ARGV[1])
local staleness = tonumber(ARGV[2])
local own_field = 't:' .. ARGV[3]
local adopt = ARGV[4] == '1'
local lease_ttl = tonumber(ARGV[5])
local owner = ARGV[6]

local function finished(value)
  return tonumber(string.match(value, '^(%d+):'))
end

if staleness > 0 then
  local oldest = now - staleness
  local chosen = nil
  local adopted = 0
  -- The requested track first: a workflow keeps reusing the result it reused before (stable outputs downstream).
  local own = redis.call('HGET', KEYS[1], own_field)
  if own and finished(own) >= oldest then
    chosen = own
  else
    local best = -1
    local tracks = redis.call('HGETALL', KEYS[1])
    for i = 1, #tracks, 2 do
      local f = finished(tracks[i + 1])
      if f >= oldest and f > best then
        best = f
        chosen = tracks[i + 1]
      end
    end
    if chosen then
      adopted = 1
      if adopt then
        redis.call('HSET', KEYS[1], own_field, chosen)
      end
    end
  end
  if chosen then
    local body = redis.call('HGET', KEYS[2], string.match(chosen, '^%d+:(.+)$'))
    if body then
      return {'hit', body, adopted}
    end
  end
end

if lease_ttl > 0 then
  if redis.call('SET', KEYS[3], owner, 'NX', 'PX', lease_ttl) then
    return {'leader', '', 0}
  end
  local holder = redis.call('GET', KEYS[3])
  if holder == owner then
    return {'leader', '', 0}
  end
  return {'follower', holder or '', 0}
end
return {'miss', '', 0}
