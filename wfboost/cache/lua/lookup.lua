-- The admission-time question, in one round trip: is there an entry young enough, and if not, who runs the step?
-- KEYS[1] tracks hash, KEYS[2] entries hash, KEYS[3] lease, KEYS[4] served set, KEYS[5] waits hash (one hash tag:
-- one node, one slot)
-- ARGV: now_ms, staleness_ms, track, adopt (1/0: 0 for dry runs, which write nothing), lease_ttl_ms (0: no
--       latching), lease_owner, node identity ('' for none), served_ttl_ms, follower_wait_ms
-- Answers {verdict, body or lease holder, adopted (hits) or ms waited (followers, hits after waiting)}.
local now = tonumber(ARGV[1])
local staleness = tonumber(ARGV[2])
local own_field = 't:' .. ARGV[3]
local adopt = ARGV[4] == '1'
local lease_ttl = tonumber(ARGV[5])
local owner = ARGV[6]
local identity = ARGV[7]
local served_ttl = tonumber(ARGV[8])
local follower_wait = tonumber(ARGV[9] or '0')

-- How long this node has waited as a follower (0 when it never did); the wait ends with the answer it gets now.
local function waited()
  if identity == '' then return 0 end
  local first = redis.call('HGET', KEYS[5], identity)
  if not first then return 0 end
  if adopt then redis.call('HDEL', KEYS[5], identity) end
  return now - tonumber(first)
end

-- A node that was already served a hit from this key and comes back (a retry attempt, `argo retry`) failed after
-- the replay: it runs for real, or a replay that cannot work (its image cannot be pulled) would be retried forever.
if identity ~= '' and redis.call('SISMEMBER', KEYS[4], identity) == 1 then
  return {'rerun', '', 0}
end

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
      if adopt and identity ~= '' then
        redis.call('SADD', KEYS[4], identity)
        redis.call('PEXPIRE', KEYS[4], served_ttl)
      end
      return {'hit', body, adopted, waited()}
    end
  end
end

if lease_ttl > 0 then
  -- SET NX: of every admission that finds the key free, exactly one leads (a new one after a leader's release).
  if redis.call('SET', KEYS[3], owner, 'NX', 'PX', lease_ttl) then
    return {'leader', '', waited()}
  end
  local holder = redis.call('GET', KEYS[3])
  if holder == owner then
    redis.call('PEXPIRE', KEYS[3], lease_ttl)
    return {'leader', '', waited()}  -- the same pod admitted again (a create the API server retried)
  end
  if identity ~= '' then
    local first = redis.call('HGET', KEYS[5], identity)
    if not first then
      first = now
      redis.call('HSET', KEYS[5], identity, now)
    end
    -- Kept well past the wait: a follower asks again only at the controller's requeue interval (10 s, 30 s under
    -- load), and a first-refusal time lost between two asks would restart its wait.
    redis.call('PEXPIRE', KEYS[5], follower_wait + lease_ttl + 600000)
    if now - tonumber(first) >= follower_wait then
      redis.call('HDEL', KEYS[5], identity)
      return {'waited', holder or '', now - tonumber(first)}  -- waited long enough: it runs for real
    end
    return {'follower', holder or '', now - tonumber(first)}
  end
  return {'follower', holder or '', 0}
end
return {'miss', '', 0}
