-- Claims up to ARGV[2] timers that can be claimed at ARGV[1] (due, and not
-- under a claim that still holds) for ARGV[3] ms, atomically: two workers
-- never get one timer while its claim holds. A claimed timer's score in
-- dl:timer:ready becomes the claim's end, so it is stepped over until then
-- and comes back by itself if its worker never acknowledges it. A handful
-- of commands for the whole batch, not a few per timer.
-- Reply: key, due, payload, claimed until; four entries per timer.
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local until_ms = string.format('%.0f', now + lease)
local keys = redis.call('ZRANGEBYSCORE', 'dl:timer:ready', '-inf', ARGV[1], 'LIMIT', 0, limit)
local reply = {}
-- Within what one Lua call can take.
local per = 2000
for from = 1, #keys, per do
  local part = { unpack(keys, from, math.min(from + per - 1, #keys)) }
  local timers = redis.call('HMGET', 'dl:timer', unpack(part))
  local claimed, ready = {}, {}
  for j, key in ipairs(part) do
    -- due \0 claimed until \0 payload; the payload may hold NULs.
    local t = timers[j]
    local a = string.find(t, '\0', 1, true)
    local b = string.find(t, '\0', a + 1, true)
    local due, payload = string.sub(t, 1, a - 1), string.sub(t, b + 1)
    table.insert(claimed, key)
    table.insert(claimed, due .. '\0' .. until_ms .. '\0' .. payload)
    table.insert(ready, until_ms)
    table.insert(ready, key)
    table.insert(reply, key)
    table.insert(reply, due)
    table.insert(reply, payload)
    table.insert(reply, until_ms)
  end
  redis.call('HSET', 'dl:timer', unpack(claimed))
  redis.call('ZADD', 'dl:timer:ready', unpack(ready))
end
return reply
