-- One step of GCRA on a rate-limit bucket: the steps of `state::gcra::step`, one for one, so
-- that a bucket in Redis decides what the same bucket in memory would (tests/state_redis.rs
-- holds this script to that function).
-- KEYS[1]: the salt's key, KEYS[2]: the bucket's key (its value: the TAT, in µs).
-- ARGV[1]: the salt the caller hashed KEYS[2] with (hex), ARGV[2]: limit, ARGV[3]: per (µs),
-- ARGV[4]: now (µs), given by the tests only; the proxy leaves it out and the clock is Redis's.
-- Returns {allowed (1 or 0), remaining, reset (µs), retry_after (µs)}, or {-1} when the salt is
-- another one (the caller reads it again and retries).
--
-- Numbers are Lua doubles: µs since 1970 (about 2^51) and every sum below stay exact integers
-- under 2^53.
local salt = redis.call('GET', KEYS[1])
if not salt then
  redis.call('SET', KEYS[1], ARGV[1])
elseif salt ~= ARGV[1] then
  return {-1}
end

local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  -- The server's clock, not the replica's: replicas whose clocks disagree still share one
  -- timeline per bucket. A write after TIME is allowed because a script's effects are what
  -- is replicated, not the script (the default since Redis 5, the only mode of Redis 7 and
  -- Valkey), so Redis replicas store the same TAT.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local limit = tonumber(ARGV[2])
local per = tonumber(ARGV[3])

local interval = math.max(math.floor(per / math.max(limit, 1)), 1)
local tat = tonumber(redis.call('GET', KEYS[2]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = math.max(new_tat - per, 0)
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local used = new_tat - now
local remaining = math.min(math.floor((per - used) / interval), limit)
-- The TAT may go when it is reached: the bucket is full again then, as if never used.
redis.call('SET', KEYS[2], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.max(math.ceil(used / 1000), 1)))
return {1, remaining, used, 0}
