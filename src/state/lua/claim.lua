-- Claims a capture's digests (one per frame), all or none: none is taken when any of them is
-- claimed or confirmed already. Checks first that the caller hashed the keys with the salt
-- every replica uses (a flushed or failed-over Redis may hold another one, or none).
-- KEYS[1]: the salt's key, KEYS[2..]: the digests' keys.
-- ARGV[1]: the salt the caller hashed the keys with (hex), ARGV[2]: the claim's token,
-- ARGV[3]: how long the claim holds (ms).
-- Returns 1: claimed; 0: a digest is claimed or confirmed already; -1: the salt is another one
-- (the caller reads it again and retries).
local salt = redis.call('GET', KEYS[1])
if not salt then
  -- Gone (a flush): the replicas that still hold it in memory put it back, so they keep
  -- agreeing with each other and with the replicas that start from now on.
  redis.call('SET', KEYS[1], ARGV[1])
elseif salt ~= ARGV[1] then
  return -1
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
end
return 1
