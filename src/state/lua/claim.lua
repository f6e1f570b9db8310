-- Claims a capture digest: SET NX PX, after checking that the caller hashed the key with the
-- salt every replica uses (a flushed or failed-over Redis may hold another one, or none).
-- KEYS[1]: the salt's key, KEYS[2]: the digest's key.
-- ARGV[1]: the salt the caller hashed KEYS[2] with (hex), ARGV[2]: the claim's token,
-- ARGV[3]: how long the claim holds (ms).
-- Returns 1: claimed; 0: already claimed or confirmed; -1: the salt is another one (the caller
-- reads it again and retries).
local salt = redis.call('GET', KEYS[1])
if not salt then
  -- Gone (a flush): the replicas that still hold it in memory put it back, so they keep
  -- agreeing with each other and with the replicas that start from now on.
  redis.call('SET', KEYS[1], ARGV[1])
elseif salt ~= ARGV[1] then
  return -1
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
