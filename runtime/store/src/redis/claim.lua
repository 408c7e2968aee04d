-- Claims up to ARGV[2] timers that can be claimed at ARGV[1] (due, and not
-- under a claim that still holds) for ARGV[3] ms, atomically: two workers
-- never get one timer while its claim holds. A claimed timer's score in
-- dl:timer:ready becomes the claim's end, so it is stepped over until then
-- and comes back by itself if its worker never acknowledges it.
-- Reply: key, due, payload, claimed until; four entries per timer.
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local until_ms = string.format('%.0f', now + lease)
local keys = redis.call('ZRANGEBYSCORE', 'dl:timer:ready', '-inf', ARGV[1], 'LIMIT', 0, limit)
local reply = {}
for _, key in ipairs(keys) do
  redis.call('HSET', 'dl:timer:claim', key, until_ms)
  redis.call('ZADD', 'dl:timer:ready', until_ms, key)
  table.insert(reply, key)
  table.insert(reply, redis.call('HGET', 'dl:timer:due', key))
  table.insert(reply, redis.call('HGET', 'dl:timer:payload', key))
  table.insert(reply, until_ms)
end
return reply
