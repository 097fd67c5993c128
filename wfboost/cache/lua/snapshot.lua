-- One key's tracks, entries and served nodes as of one moment, for a backup (a record in between could move a
-- track and drop the entry it pointed at).
-- KEYS[1] tracks hash, KEYS[2] entries hash, KEYS[3] served set
-- Returns {tracks (flat field/value list), entries (flat), served members, served PTTL}
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]),
        redis.call('PTTL', KEYS[3])}
