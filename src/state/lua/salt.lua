-- The salt every replica hashes keys with: ours if none is stored yet, else the stored one.
-- KEYS[1]: the salt's key. ARGV[1]: a fresh random salt (hex).
-- Returns the stored salt.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
