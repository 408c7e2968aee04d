-- Dripline's batch of writes on Redis: every `Write` of one `Apply::apply`,
-- in one script, which Redis runs atomically (no other command runs while it
-- does). A script has no rollback of its own, so the writes change tables in
-- the script first (below), and Redis only once all of them succeeded: a
-- write that fails (an identity that is taken, a stale version) leaves the
-- batch undone, as SQLite's transaction does.
--
-- ARGV is the fields to read ahead, then the batch, flat: each write is its
-- op name and a fixed number of arguments (see `mod.rs`, `encode`). The reply is {"ok", result...} or
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

-- Every change is kept in these tables, and reads look at them first, so a
-- write sees what the earlier writes of its batch did; nothing reaches Redis
-- until the whole batch has succeeded, and then each key's changes go in one
-- command. A write that fails leaves nothing to undo.
local hashes = {}  -- hash -> field -> value, or false once deleted
local keys = {}    -- key -> value, or false once deleted
local zsets = {}   -- sorted set -> member -> score, or false once removed

local read = {}    -- hash -> field -> value as Redis had it, once asked

local function h_get(h, f)
  local t = hashes[h]
  if t then
    local v = t[f]
    if v ~= nil then return v end
  end
  local r = read[h]
  if not r then r = {}; read[h] = r end
  local v = r[f]
  if v == nil then
    v = redis.call('HGET', h, f)
    r[f] = v
  end
  return v
end

local function h_set(h, f, v)
  local t = hashes[h]
  if not t then t = {}; hashes[h] = t end
  t[f] = v
end

-- Deletes a field; whether it was there.
local function h_del(h, f)
  local was = h_get(h, f) ~= false
  if was then h_set(h, f, false) end
  return was
end

-- Every field and value of a hash, this batch's changes included.
local function h_getall(h)
  local all, found = {}, redis.call('HGETALL', h)
  for j = 1, #found, 2 do all[found[j]] = found[j + 1] end
  for f, v in pairs(hashes[h] or {}) do
    if v == false then all[f] = nil else all[f] = v end
  end
  return all
end

local function k_get(k)
  local v = keys[k]
  if v ~= nil then return v end
  return redis.call('GET', k)
end

local function k_set(k, v)
  keys[k] = v
end

-- Deletes a key; whether it was there.
local function k_del(k)
  local was = k_get(k) ~= false
  if was then keys[k] = false end
  return was
end

local function z_add(z, score, m)
  local t = zsets[z]
  if not t then t = {}; zsets[z] = t end
  t[m] = score
end

local function z_rem(z, m)
  local t = zsets[z]
  if not t then t = {}; zsets[z] = t end
  t[m] = false
end

-- Sends a command whose arguments after `head` may be many, in chunks that
-- stay within what one Lua call can take.
local function chunked(command, key, items, width)
  local per = 4000 - 4000 % width
  for from = 1, #items, per do
    redis.call(command, key, unpack(items, from, math.min(from + per - 1, #items)))
  end
end

-- Writes the batch's changes: one HSET, HDEL, ZADD or ZREM per key.
local function flush()
  for h, fields in pairs(hashes) do
    local sets, dels = {}, {}
    for f, v in pairs(fields) do
      if v == false then
        table.insert(dels, f)
      else
        table.insert(sets, f)
        table.insert(sets, v)
      end
    end
    if #dels > 0 then chunked('HDEL', h, dels, 1) end
    if #sets > 0 then chunked('HSET', h, sets, 2) end
  end
  for k, v in pairs(keys) do
    if v == false then redis.call('DEL', k) else redis.call('SET', k, v) end
  end
  for z, members in pairs(zsets) do
    local adds, rems = {}, {}
    for m, score in pairs(members) do
      if score == false then
        table.insert(rems, m)
      else
        table.insert(adds, score)
        table.insert(adds, m)
      end
    end
    if #rems > 0 then chunked('ZREM', z, rems, 1) end
    if #adds > 0 then chunked('ZADD', z, adds, 2) end
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

-- The active-key slot an enrollment holds, or nil.
local function enr_slot(active, has_key, journey, key)
  if active and has_key then return join(journey, key) end
  return nil
end

local function enr_unindex(id, old)
  z_rem('dl:enr:contact', join(old.contact, id))
  local slot = enr_slot(old.active, old.has_key, old.journey, old.key)
  if slot and h_get('dl:enr:active', slot) == id then h_del('dl:enr:active', slot) end
end

local function enr_put(id, journey, contact, active, has_key, key, check, expected, state)
  local old = enr_meta(id)
  local current = old and old.version or 0
  if check == '1' and tonumber(expected) ~= current then
    fail('version', id, expected, num(current))
  end
  -- An enrollment that keeps its slot holds it already (the index is kept
  -- so); only taking a new one asks who holds it.
  local slot = enr_slot(active == '1', has_key == '1', journey, key)
  local old_slot = old and enr_slot(old.active, old.has_key, old.journey, old.key)
  if slot and slot ~= old_slot then
    local holder = h_get('dl:enr:active', slot)
    if holder and holder ~= id then fail('active_key', journey, key, holder) end
  end
  -- An enrollment moving on keeps its contact and usually its slot: its
  -- indexes are rewritten only where they change.
  if old then
    if old.contact ~= contact then
      z_rem('dl:enr:contact', join(old.contact, id))
      z_add('dl:enr:contact', 0, join(contact, id))
    end
    if old_slot ~= slot then
      -- The old slot is this enrollment's: no other could take it meanwhile.
      if old_slot then h_set('dl:enr:active', old_slot, false) end
      if slot then h_set('dl:enr:active', slot, id) end
    end
  else
    z_add('dl:enr:contact', 0, join(contact, id))
    if slot then h_set('dl:enr:active', slot, id) end
  end
  local version = current + 1
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
-- dl:timer        key -> due \0 claimed until (empty: not claimed) \0 payload
-- dl:timer:ready  key scored by when it can be claimed: its due time, or the
--                 end of its claim while claimed

local function timer_read(key)
  local t = h_get('dl:timer', key)
  if not t then return nil end
  local p = split(t, 3)
  return { due = p[1], claim = p[2], payload = p[3] }
end

local function timer_put(key, due, claim, payload, ready)
  h_set('dl:timer', key, join(due, claim, payload))
  z_add('dl:timer:ready', ready, key)
end

-- Deletes a timer that is known to exist.
local function timer_forget(key)
  h_set('dl:timer', key, false)
  z_rem('dl:timer:ready', key)
end

local function timer_delete(key)
  if not h_get('dl:timer', key) then return false end
  timer_forget(key)
  return true
end

local function timer_unclaim(key, t)
  timer_put(key, t.due, '', t.payload, t.due)
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

-- First, the fields the batch will read, by hash (see `encode`): read in
-- one HMGET each rather than one HGET per write.
local i = 1
local groups = tonumber(ARGV[i])
i = i + 1
for _ = 1, groups do
  local h, count = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local r = read[h]
  if not r then r = {}; read[h] = r end
  for from = i, i + count - 1, 2000 do
    local to = math.min(from + 1999, i + count - 1)
    local values = redis.call('HMGET', h, unpack(ARGV, from, to))
    for j = from, to do r[ARGV[j]] = values[j - from + 1] end
  end
  i = i + count
end

local function arg()
  local v = ARGV[i]
  i = i + 1
  return v
end

local results = {}
local metrics = {}  -- {result index, name, delta} of each counter added

-- Adds the batch's counters, in order, each result its counter's new value.
local function add_metrics()
  for _, m in ipairs(metrics) do
    local index, name, delta = m[1], m[2], m[3]
    if not pcall(redis.call, 'HINCRBY', 'dl:metric', name, delta) then
      -- Past the 64 bits: saturate, as the other stores do.
      local limit = string.sub(delta, 1, 1) == '-' and '-9223372036854775808'
        or '9223372036854775807'
      redis.call('HSET', 'dl:metric', name, limit)
    end
    -- Read back as text: HINCRBY's integer would reach Lua as a double.
    results[index] = 'N' .. redis.call('HGET', 'dl:metric', name)
  end
end

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
      local n = 0
      for key, expires in pairs(h_getall('dl:dedupe')) do
        if tonumber(expires) <= now then
          h_del('dl:dedupe', key)
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
      timer_put(key, due, '', payload, due)
      r = 'D'
    elseif op == 'timer_ack' then
      local key = arg()
      local t = timer_read(key)
      if t and t.claim ~= '' then
        timer_forget(key)
        r = 'F1'
      else
        r = 'F0'
      end
    elseif op == 'timer_cancel' then
      r = timer_delete(arg()) and 'F1' or 'F0'
    elseif op == 'timer_release_claims' then
      -- Reads every timer: for a deployment with one scheduler, at its start,
      -- never for workers sharing the store.
      local n = 0
      for key, _ in pairs(h_getall('dl:timer')) do
        local t = timer_read(key)
        if t.claim ~= '' then
          timer_unclaim(key, t)
          n = n + 1
        end
      end
      r = 'C' .. n
    elseif op == 'timer_release' then
      local key, until_ms = arg(), tonumber(arg())
      local t = timer_read(key)
      if t and t.claim ~= '' and tonumber(t.claim) == until_ms then
        timer_unclaim(key, t)
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
        local id = (tonumber(k_get('dl:ob:seq')) or 0) + 1
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
    elseif op == 'outbox_delete' then
      local id = arg()
      local old = ob_state(id)
      if old then
        local chan = h_get('dl:ob:chan', id)
        local msg = cjson.decode(h_get('dl:ob:msg', id))
        z_rem('dl:ob:st:' .. old.status, id)
        if old.status == 'pending' then
          z_rem('dl:ob:due', pad(id))
          z_rem('dl:ob:due:' .. chan, pad(id))
        end
        h_del('dl:ob:key', msg.idempotency_key)
        z_rem('dl:ob:all', id)
        z_rem('dl:ob:contact', join(msg.contact_id, pad(id)))
        h_del('dl:ob:msg', id)
        h_del('dl:ob:chan', id)
        h_del('dl:ob:state', id)
      end
      r = old and 'F1' or 'F0'
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
      -- Added when the batch is written, since only HINCRBY is exact over
      -- 64 bits; the result is filled in then.
      table.insert(metrics, { #results + 1, arg(), arg() })
      r = 'N'
    else
      fail('internal', 'unknown op ' .. tostring(op))
    end
    table.insert(results, r)
  end
end

local ok, e = pcall(run)
if ok then
  flush()
  add_metrics()
  table.insert(results, 1, 'ok')
  return results
end
if type(e) == 'table' and e.dripline then
  local reply = { 'err' }
  for _, part in ipairs(e.dripline) do table.insert(reply, part) end
  return reply
end
if type(e) == 'table' and e.err then
  return redis.error_reply(e.err)
end
return redis.error_reply(tostring(e))
