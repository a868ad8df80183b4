-- brokk: what the scripts share (scripts.rs prepends to each script the parts of it that it uses).
--
-- KEYS[1] is the topic's group registry `{prefix:topic}:groups`, which routes the call to the
-- topic's node on a cluster. ARGV[1] is the topic's base `{prefix:topic}`: every other key a
-- script touches is that base plus a suffix, so it hashes to the same slot (the hash tag is the
-- whole base; prefix and topic names cannot contain braces).
--
-- Times are the server's clock (TIME), in ms since the epoch: brokers on several machines judge
-- leases and delays by one clock, whatever their own say.
if redis.replicate_commands then redis.replicate_commands() end -- Redis 6.2: replicate effects
local B = ARGV[1]
local GROUPS = KEYS[1]
local READY = B .. ':ready' -- hash: group -> ready deliveries (not yet handed out, or given back)
local GEN = B .. ':gen' -- counter: every write to the topic increments it (Store::changed)
local SEQ = B .. ':seq' -- counter: delivery numbers of the topic
local RETAINED = B .. ':r' -- stream: messages kept while the topic has no group
local CG = 'brokk' -- the Redis consumer group of every delivery stream
local FREE = '-' -- holder of a delivery given back in place (ready again, same entry)
-- Brokers waiting for work listen on this channel (watch.rs); one per prefix.
local CHANGES = '{' .. string.match(B, '^{([^:]*):') .. '}:changes'

-- Every write of the topic says so, the one way the brokers of this deployment hear it: on a
-- cluster its counter (read by brokers that poll it), on a single server a message to the
-- brokers that listen. CLUSTER is set by scripts.rs, which builds each script for both.
local function touched()
  if CLUSTER then
    redis.call('INCR', GEN)
  else
    redis.call('PUBLISH', CHANGES, B)
  end
end

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function prios(g) return B .. ':p:' .. g end -- zset: priorities in use by group g
local function stream(g, p) return B .. ':s:' .. g .. ':' .. p end -- stream: g's deliveries of priority p
local function leases(g) return B .. ':l:' .. g end -- zset: handed-out entry -> lease end (ms); 0: free
local function holders(g) return B .. ':h:' .. g end -- hash: handed-out entry -> 'holder attempt'
local function delayed(g) return B .. ':d:' .. g end -- zset: delivery number -> due (ms)
local function delayed_msgs(g) return B .. ':dv:' .. g end -- hash: delivery number -> packed delivery

-- The streams this call has opened, by group and priority: a batch publish opens each once.
local opened = {}

-- The stream of group g for priority p, created with its consumer group on first use.
local function open_stream(g, p)
  local slot = g .. ' ' .. p
  local key = opened[slot]
  if key then return key end
  key = stream(g, p)
  if redis.call('ZADD', prios(g), p, p) == 1 then
    redis.pcall('XGROUP', 'CREATE', key, CG, '0', 'MKSTREAM')
  end
  opened[slot] = key
  return key
end

-- XADD of a delivery to `key` (NOMKSTREAM: only if the stream exists; then nil if not).
local function add_entry(key, nomk, k, a, id, payload, meta, ts)
  if nomk and meta then
    return redis.call('XADD', key, 'NOMKSTREAM', '*', 'k', k, 'a', a, 'i', id, 'p', payload, 't', ts, 'm', meta)
  elseif nomk then
    return redis.call('XADD', key, 'NOMKSTREAM', '*', 'k', k, 'a', a, 'i', id, 'p', payload, 't', ts)
  elseif meta then
    return redis.call('XADD', key, '*', 'k', k, 'a', a, 'i', id, 'p', payload, 't', ts, 'm', meta)
  end
  return redis.call('XADD', key, '*', 'k', k, 'a', a, 'i', id, 'p', payload, 't', ts)
end

-- Appends one delivery to group g: delivery number k, attempt a of the next hand-out. A stream
-- that exists is listed in its group's priorities (they are made and dropped together), so the
-- first append to a stream in a call tries it as it is (one command, the usual case) and opens
-- it only if it is not there.
local function enqueue(g, p, k, a, id, payload, meta, ts)
  local slot = g .. ' ' .. p
  if not opened[slot] then
    local added = add_entry(stream(g, p), true, k, a, id, payload, meta, ts)
    if added then
      opened[slot] = stream(g, p)
      return added
    end
  end
  return add_entry(open_stream(g, p), false, k, a, id, payload, meta, ts)
end

-- Removes the stream of group g for priority p once no entry is left in it (every entry of it
-- was settled, moved or purged; a handed-out entry is only deleted after its XACK, so nothing
-- is pending either), with its consumers: claims walk the priorities in use, and priorities
-- that were used once must not slow every later claim. The next delivery of that priority
-- makes it again.
local function drop_if_drained(g, p)
  local key = stream(g, p)
  if redis.call('XLEN', key) == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', prios(g), p)
    opened[g .. ' ' .. p] = nil
  end
end

local function fields_of(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

-- A handed-out entry is named '<priority>/<stream id>'.
local function split_member(member)
  local p, id = string.match(member, '^(-?%d+)/(.+)$')
  return p, id
end

-- 'holder attempt' -> holder, attempt
local function split_holder(h)
  if not h then return nil, 0 end
  local who, a = string.match(h, '^(%S+) (%d+)$')
  return who, tonumber(a)
end

local function id_less(x, y)
  local xm, xs = string.match(x, '^(%d+)-(%d+)$')
  local ym, ys = string.match(y, '^(%d+)-(%d+)$')
  xm, ym = tonumber(xm), tonumber(ym)
  if xm ~= ym then return xm < ym end
  return tonumber(xs) < tonumber(ys)
end

-- Forgets a handed-out entry of g (settled, moved, or gone from its stream).
local function forget(g, member)
  redis.call('HDEL', holders(g), member)
  redis.call('ZREM', leases(g), member)
end

-- Moves g's delayed deliveries that are due at `now` to the back of their priority; returns
-- how many.
local function promote_due(g, now)
  local due = redis.call('ZRANGEBYSCORE', delayed(g), '-inf', now)
  for _, k in ipairs(due) do
    local packed = redis.call('HGET', delayed_msgs(g), k)
    if packed then
      local d = cmsgpack.unpack(packed)
      local meta = nil
      if d[6] == 1 then meta = d[7] end
      enqueue(g, d[1], k, d[2], d[3], d[4], meta, d[5])
    end
    redis.call('HDEL', delayed_msgs(g), k)
    redis.call('ZREM', delayed(g), k)
  end
  if #due > 0 then redis.call('HINCRBY', READY, g, #due) end
  return #due
end

local function ready_of(g)
  local n = tonumber(redis.call('HGET', READY, g) or '0')
  if n < 0 then return 0 end
  return n
end

local function group_exists(g)
  return redis.call('HEXISTS', GROUPS, g) == 1
end

-- Registers group g, owned by broker instance `owner` ('' for a named group). A new named group
-- takes over what the topic retained, in publish order. Returns how many it took over.
local function register(g, owner)
  redis.call('HSET', GROUPS, g, owner)
  redis.call('HSET', READY, g, 0)
  touched()
  if owner ~= '' then return 0 end
  local entries = redis.call('XRANGE', RETAINED, '-', '+')
  if #entries == 0 then return 0 end
  local k = redis.call('INCRBY', SEQ, #entries) - #entries
  for _, e in ipairs(entries) do
    local f = fields_of(e[2])
    k = k + 1
    enqueue(g, f.r, k, 1, f.i, f.p, f.m, f.t)
  end
  redis.call('DEL', RETAINED)
  redis.call('HSET', READY, g, #entries)
  return #entries
end

-- Discards the ready deliveries of group g (never handed out, or given back in place), drops
-- the priorities it drained and zeroes its ready count. Delayed and held deliveries stay.
-- Returns how many it discarded.
local function purge_ready(g)
  local n = 0
  for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do
    local key = stream(g, p)
    local last = '0-0'
    local info = redis.call('XINFO', 'GROUPS', key)
    for _, cg in ipairs(info) do
      local f = fields_of(cg)
      if f.name == CG then last = f['last-delivered-id'] end
    end
    local fresh = redis.call('XRANGE', key, '(' .. last, '+')
    for _, e in ipairs(fresh) do redis.call('XDEL', key, e[1]) end
    n = n + #fresh
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', leases(g), 0, 0)) do
    local p, id = split_member(member)
    if p then
      redis.call('XACK', stream(g, p), CG, id)
      redis.call('XDEL', stream(g, p), id)
    end
    forget(g, member)
    n = n + 1
  end
  for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do drop_if_drained(g, p) end
  redis.call('HSET', READY, g, 0)
  return n
end
