-- Dripline's batch of writes on Redis: every `Write` of one `Apply::apply`,
-- in one script, which Redis runs atomically (no other command runs while it
-- does). A script has no rollback of its own, so every change goes through a
-- helper that first logs the old value; a write that fails (an identity that
-- is taken, a stale version) puts back everything the batch changed, and the
-- batch did nothing, as in SQLite's transaction.
--
-- ARGV is the batch, flat: each write is its op name and a fixed number of
-- arguments (see `redis.rs`, `encode`). The reply is {"ok", result...} or
-- {"err", kind, detail...}; a result is "D" (done), "F1"/"F0" (a flag),
-- "C<n>" (a count), "V<n>" (a version), "O<id>:<1|0>" (an outbox insert) or
-- "N<n>" (a counter's value).
--
-- Numbers travel as decimal text and are compared as numbers: every time
-- and id is below 2^53, where Lua's numbers are exact. Counters are added
-- with HINCRBY, exact over the whole 64 bits.
--
-- Keys (see `redis.rs` for the layout): the key-value store `default` is
-- the Redis keys themselves, as Spin's Redis key-value backend writes them;
-- everything else is under `dl:`.

local undo = {}

local function h_get(h, f)
  return redis.call('HGET', h, f)
end

local function h_set(h, f, v)
  table.insert(undo, { 'h', h, f, redis.call('HGET', h, f) })
  redis.call('HSET', h, f, v)
end

local function h_del(h, f)
  local old = redis.call('HGET', h, f)
  if old then
    table.insert(undo, { 'h', h, f, old })
    redis.call('HDEL', h, f)
  end
  return old
end

local function k_set(k, v)
  table.insert(undo, { 'k', k, redis.call('GET', k) })
  redis.call('SET', k, v)
end

local function k_del(k)
  local old = redis.call('GET', k)
  if old then
    table.insert(undo, { 'k', k, old })
    redis.call('DEL', k)
  end
  return old
end

local function z_add(z, score, m)
  table.insert(undo, { 'z', z, m, redis.call('ZSCORE', z, m) })
  redis.call('ZADD', z, score, m)
end

local function z_rem(z, m)
  local old = redis.call('ZSCORE', z, m)
  if old then
    table.insert(undo, { 'z', z, m, old })
    redis.call('ZREM', z, m)
  end
end

local function rollback()
  for n = #undo, 1, -1 do
    local u = undo[n]
    if u[1] == 'h' then
      if u[4] then redis.call('HSET', u[2], u[3], u[4]) else redis.call('HDEL', u[2], u[3]) end
    elseif u[1] == 'k' then
      if u[3] then redis.call('SET', u[2], u[3]) else redis.call('DEL', u[2]) end
    else
      if u[4] then redis.call('ZADD', u[2], u[4], u[3]) else redis.call('ZREM', u[2], u[3]) end
    end
  end
end

-- Splits `s` on NUL into at most `max` parts; the last keeps any NUL left.
local function split(s, max)
  local parts, from = {}, 1
  while #parts < max - 1 do
    local at = string.find(s, '\0', from, true)
    if not at then break end
    table.insert(parts, string.sub(s, from, at - 1))
    from = at + 1
  end
  table.insert(parts, string.sub(s, from))
  return parts
end

local function join(...)
  return table.concat({ ... }, '\0')
end

local function num(n)
  return string.format('%.0f', n)
end

-- Outbox ids are members padded to 20 digits, so that members with one score
-- sort by id.
local function pad(id)
  return string.format('%020.0f', id)
end

local function fail(kind, a, b, c)
  error({ dripline = { kind, a or '', b or '', c or '' } })
end

-- ---- key-value --------------------------------------------------------------

local function kv_get(store, key)
  if store == 'default' then return redis.call('GET', key) end
  return h_get('dl:kv:' .. store, key)
end

local function kv_set(store, key, value)
  if store == 'default' then k_set(key, value) else h_set('dl:kv:' .. store, key, value) end
end

local function kv_del(store, key)
  if store == 'default' then return k_del(key) end
  return h_del('dl:kv:' .. store, key)
end

-- ---- enrollments ------------------------------------------------------------
-- dl:enr          id -> version \0 active \0 journey \0 contact \0 has_key \0 key
-- dl:enr:state    id -> the engine's state
-- dl:enr:active   journey \0 key -> id, for active enrollments with a key
-- dl:enr:contact  (lex) contact \0 id

local function enr_meta(id)
  local meta = h_get('dl:enr', id)
  if not meta then return nil end
  local p = split(meta, 6)
  return { version = tonumber(p[1]), active = p[2] == '1', journey = p[3], contact = p[4],
           has_key = p[5] == '1', key = p[6] }
end

local function enr_unindex(id, old)
  z_rem('dl:enr:contact', join(old.contact, id))
  if old.active and old.has_key then
    local slot = join(old.journey, old.key)
    if h_get('dl:enr:active', slot) == id then h_del('dl:enr:active', slot) end
  end
end

local function enr_put(id, journey, contact, active, has_key, key, check, expected, state)
  local old = enr_meta(id)
  local current = old and old.version or 0
  if check == '1' and tonumber(expected) ~= current then
    fail('version', id, expected, num(current))
  end
  if active == '1' and has_key == '1' then
    local holder = h_get('dl:enr:active', join(journey, key))
    if holder and holder ~= id then fail('active_key', journey, key, holder) end
  end
  if old then enr_unindex(id, old) end
  local version = current + 1
  z_add('dl:enr:contact', 0, join(contact, id))
  if active == '1' and has_key == '1' then h_set('dl:enr:active', join(journey, key), id) end
  h_set('dl:enr', id, join(num(version), active, journey, contact, has_key, key))
  h_set('dl:enr:state', id, state)
  return 'V' .. num(version)
end

-- ---- contacts ---------------------------------------------------------------
-- dl:contact      id -> the contact as JSON
-- dl:contact:ids  id -> its identities' index names (kind \0 value), a JSON array
-- dl:identity     index name -> contact id

local function contact_put(id, json, names)
  for _, name in ipairs(names) do
    local owner = h_get('dl:identity', name)
    if owner and owner ~= id then fail('identity', name, owner) end
  end
  local old = h_get('dl:contact:ids', id)
  if old then
    for _, name in ipairs(cjson.decode(old)) do
      if h_get('dl:identity', name) == id then h_del('dl:identity', name) end
    end
  end
  for _, name in ipairs(names) do h_set('dl:identity', name, id) end
  h_set('dl:contact:ids', id, cjson.encode(names))
  h_set('dl:contact', id, json)
end

-- ---- timers -----------------------------------------------------------------
-- dl:timer:due, dl:timer:payload, dl:timer:claim   key -> due / payload / claimed until
-- dl:timer:ready  key scored by when it can be claimed: its due time, or the
--                 end of its claim while claimed

local function timer_delete(key)
  if not h_get('dl:timer:due', key) then return false end
  h_del('dl:timer:due', key)
  h_del('dl:timer:payload', key)
  h_del('dl:timer:claim', key)
  z_rem('dl:timer:ready', key)
  return true
end

local function timer_unclaim(key)
  h_del('dl:timer:claim', key)
  z_add('dl:timer:ready', h_get('dl:timer:due', key), key)
end

-- ---- outbox -----------------------------------------------------------------
-- dl:ob:seq                 the last id given
-- dl:ob:msg                 id -> what never changes, as JSON
-- dl:ob:chan                id -> channel
-- dl:ob:state               id -> status \0 deliver_at \0 attempts \0 updated_at \0 has_error \0 error
-- dl:ob:key                 idempotency key -> id
-- dl:ob:all, dl:ob:st:<s>   ids scored by id
-- dl:ob:due, dl:ob:due:<c>  pending ids (padded) scored by delivery time
-- dl:ob:contact             (lex) contact \0 padded id

local function ob_state(id)
  local s = h_get('dl:ob:state', id)
  if not s then return nil end
  local p = split(s, 6)
  return { status = p[1], deliver = tonumber(p[2]), attempts = p[3], updated = p[4],
           has_error = p[5], error = p[6] }
end

local function ob_write(id, old, new)
  local chan = h_get('dl:ob:chan', id)
  if old then
    z_rem('dl:ob:st:' .. old.status, id)
    if old.status == 'pending' then
      z_rem('dl:ob:due', pad(id))
      z_rem('dl:ob:due:' .. chan, pad(id))
    end
  end
  z_add('dl:ob:st:' .. new.status, id, id)
  if new.status == 'pending' then
    z_add('dl:ob:due', new.deliver, pad(id))
    z_add('dl:ob:due:' .. chan, new.deliver, pad(id))
  end
  h_set('dl:ob:state', id,
    join(new.status, num(new.deliver), new.attempts, new.updated, new.has_error, new.error))
end

-- ---- the batch --------------------------------------------------------------

local i = 1
local function arg()
  local v = ARGV[i]
  i = i + 1
  return v
end

local results = {}

local function run()
  while i <= #ARGV do
    local op = arg()
    local r
    if op == 'kv_set' then
      local store, key, value = arg(), arg(), arg()
      kv_set(store, key, value)
      r = 'D'
    elseif op == 'kv_delete' then
      local store, key = arg(), arg()
      r = kv_del(store, key) and 'F1' or 'F0'
    elseif op == 'kv_consume' then
      local store, key = arg(), arg()
      if not kv_del(store, key) then fail('gone', store, key) end
      r = 'D'
    elseif op == 'dedupe_mark' then
      local key, now, expires = arg(), tonumber(arg()), arg()
      local e = h_get('dl:dedupe', key)
      if e and tonumber(e) > now then
        r = 'F0'
      else
        h_set('dl:dedupe', key, expires)
        r = 'F1'
      end
    elseif op == 'dedupe_purge' then
      local now = tonumber(arg())
      local all = redis.call('HGETALL', 'dl:dedupe')
      local n = 0
      for j = 1, #all, 2 do
        if tonumber(all[j + 1]) <= now then
          h_del('dl:dedupe', all[j])
          n = n + 1
        end
      end
      r = 'C' .. n
    elseif op == 'contact_put' then
      local id, json, count = arg(), arg(), tonumber(arg())
      local names = {}
      for _ = 1, count do table.insert(names, arg()) end
      contact_put(id, json, names)
      r = 'D'
    elseif op == 'contact_unchanged' then
      local id, exists, json = arg(), arg(), arg()
      local stored = h_get('dl:contact', id)
      if (exists == '1') ~= (stored ~= false) or (stored and stored ~= json) then
        fail('contact_changed', id)
      end
      r = 'D'
    elseif op == 'enrollment_put' then
      r = enr_put(arg(), arg(), arg(), arg(), arg(), arg(), arg(), arg(), arg())
    elseif op == 'enrollment_delete' then
      local id = arg()
      local old = enr_meta(id)
      if old then
        enr_unindex(id, old)
        h_del('dl:enr', id)
        h_del('dl:enr:state', id)
      end
      r = old and 'F1' or 'F0'
    elseif op == 'timer_set' then
      local key, due, payload = arg(), arg(), arg()
      h_del('dl:timer:claim', key)
      h_set('dl:timer:due', key, due)
      h_set('dl:timer:payload', key, payload)
      z_add('dl:timer:ready', due, key)
      r = 'D'
    elseif op == 'timer_ack' then
      local key = arg()
      if h_get('dl:timer:claim', key) then
        timer_delete(key)
        r = 'F1'
      else
        r = 'F0'
      end
    elseif op == 'timer_cancel' then
      r = timer_delete(arg()) and 'F1' or 'F0'
    elseif op == 'timer_release_claims' then
      local claims = redis.call('HKEYS', 'dl:timer:claim')
      for _, key in ipairs(claims) do timer_unclaim(key) end
      r = 'C' .. #claims
    elseif op == 'timer_release' then
      local key, until_ms = arg(), tonumber(arg())
      local claim = h_get('dl:timer:claim', key)
      if claim and tonumber(claim) == until_ms then
        timer_unclaim(key)
        r = 'F1'
      else
        r = 'F0'
      end
    elseif op == 'outbox_insert' then
      local key, contact, chan, status, created, deliver, msg =
        arg(), arg(), arg(), arg(), arg(), tonumber(arg()), arg()
      local existing = h_get('dl:ob:key', key)
      if existing then
        r = 'O' .. existing .. ':0'
      else
        local id = (tonumber(redis.call('GET', 'dl:ob:seq')) or 0) + 1
        k_set('dl:ob:seq', num(id))
        id = num(id)
        h_set('dl:ob:key', key, id)
        h_set('dl:ob:msg', id, msg)
        h_set('dl:ob:chan', id, chan)
        z_add('dl:ob:all', id, id)
        z_add('dl:ob:contact', 0, join(contact, pad(id)))
        ob_write(id, nil, { status = status, deliver = deliver, attempts = '0',
                            updated = created, has_error = '0', error = '' })
        r = 'O' .. id .. ':1'
      end
    elseif op == 'outbox_set_status' then
      local id, status, at = arg(), arg(), arg()
      local old = ob_state(id)
      if old then
        ob_write(id, old, { status = status, deliver = old.deliver, attempts = old.attempts,
                            updated = at, has_error = old.has_error, error = old.error })
      end
      r = old and 'F1' or 'F0'
    elseif op == 'outbox_record_attempt' then
      local id, status, deliver, attempts, has_error, err, at =
        arg(), arg(), tonumber(arg()), arg(), arg(), arg(), arg()
      local old = ob_state(id)
      if old and old.status == 'pending' then
        ob_write(id, old, { status = status, deliver = deliver, attempts = attempts,
                            updated = at, has_error = has_error, error = err })
        r = 'F1'
      else
        r = 'F0'
      end
    elseif op == 'outbox_claim' then
      local id, now, until_ms = arg(), tonumber(arg()), tonumber(arg())
      local old = ob_state(id)
      if old and old.status == 'pending' and old.deliver <= now then
        ob_write(id, old, { status = old.status, deliver = until_ms, attempts = old.attempts,
                            updated = old.updated, has_error = old.has_error, error = old.error })
        r = 'F1'
      else
        r = 'F0'
      end
    elseif op == 'metric_add' then
      local name, delta = arg(), arg()
      local old = h_get('dl:metric', name)
      table.insert(undo, { 'h', 'dl:metric', name, old })
      if not pcall(redis.call, 'HINCRBY', 'dl:metric', name, delta) then
        -- Past the 64 bits: saturate, as the other stores do.
        local limit = string.sub(delta, 1, 1) == '-' and '-9223372036854775808'
          or '9223372036854775807'
        redis.call('HSET', 'dl:metric', name, limit)
      end
      -- Read back as text: HINCRBY's integer would reach Lua as a double.
      r = 'N' .. redis.call('HGET', 'dl:metric', name)
    else
      fail('internal', 'unknown op ' .. tostring(op))
    end
    table.insert(results, r)
  end
end

local ok, e = pcall(run)
if ok then
  table.insert(results, 1, 'ok')
  return results
end
rollback()
if type(e) == 'table' and e.dripline then
  local reply = { 'err' }
  for _, part in ipairs(e.dripline) do table.insert(reply, part) end
  return reply
end
if type(e) == 'table' and e.err then
  return redis.error_reply(e.err)
end
return redis.error_reply(tostring(e))
