-- A backup's served nodes (wfboost.cache.backup) and their lifetime in one step: never a set left without expiry.
-- KEYS[1] served set; ARGV[1] lifetime ms, ARGV[2..] node identities. The lifetime only grows.
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
