-- One token bucket in a Redis hash, taken from atomically (a script runs alone on the server).
-- KEYS[1]: the bucket. ARGV[1]: rate (tokens per second), ARGV[2]: burst (bucket size),
-- ARGV[3]: expiry in milliseconds (the bucket is full again by then, the same as no bucket).
-- The time is Redis's own (TIME), so the clocks of the gatekeeper hosts do not matter.
-- Fields: tokens (float), ts (seconds, float: when tokens was computed).
-- Returns {1, 0} when a token was taken, {0, seconds until the next token (rounded up, >= 1)}.

-- Redis before 5 replicates scripts by their text, which TIME would make non-deterministic:
-- ask it to replicate the writes instead (a no-op since Redis 5).
if redis.replicate_commands then pcall(redis.replicate_commands) end

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local expiry_ms = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1])
local ts = tonumber(bucket[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end

local allowed = 0
local retry_after = 0
if tokens + 1e-9 >= 1 then
  tokens = math.max(tokens - 1, 0)
  allowed = 1
else
  retry_after = math.max(math.ceil((1 - tokens) / rate), 1)
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], expiry_ms)
return {allowed, retry_after}
