-- Drops a claim, but only while it is still the caller's: a claim that lapsed and was taken
-- by another request, or was confirmed, stays.
-- KEYS[1]: the digest's key. ARGV[1]: the claim's token.
-- Returns 1 when the claim was dropped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
