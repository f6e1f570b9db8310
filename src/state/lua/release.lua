-- Drops a capture's claim, on each digest where it is still the caller's: a claim that lapsed
-- and was taken by another request, or was confirmed, stays.
-- KEYS: the digests' keys. ARGV[1]: the claim's token.
-- Returns how many digests were let go.
local dropped = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    dropped = dropped + redis.call('DEL', KEYS[i])
  end
end
return dropped
