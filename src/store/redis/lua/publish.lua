-- Publishes messages on the topic, all or nothing: every group except the skipped ones gets a
-- delivery of each (one XADD per group and message), or, while the topic has no group at all,
-- the topic retains them as the retention allows.
-- ARGV: base, retention ('off' | 'reject' | 'oldest' | 'newest'), limit, nskip, skipped
-- groups..., then six per message: id, payload, has metadata (0/1), metadata, priority, time.
-- Returns {no group (1/0; -1: refused, full), held, discarded, receiving groups...}.
local mode, limit, nskip = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skip = {}
for i = 1, nskip do skip[ARGV[4 + i]] = true end
local first = 5 + nskip
local n = (#ARGV - first + 1) / 6
local function meta_of(a)
  if ARGV[a + 2] == '1' then return ARGV[a + 3] end
  return nil
end

local groups = redis.call('HKEYS', GROUPS)
if #groups == 0 then
  local held = redis.call('XLEN', RETAINED)
  if mode == 'off' then return {1, held, 0} end
  if mode == 'reject' and held + n > limit then return {-1, held, 0} end
  local keep = n
  if mode == 'newest' then keep = math.max(0, math.min(n, limit - held)) end
  for j = 0, keep - 1 do
    local a = first + j * 6
    local meta = meta_of(a)
    if meta then
      redis.call('XADD', RETAINED, '*', 'i', ARGV[a], 'p', ARGV[a + 1], 'r', ARGV[a + 4], 't', ARGV[a + 5], 'm', meta)
    else
      redis.call('XADD', RETAINED, '*', 'i', ARGV[a], 'p', ARGV[a + 1], 'r', ARGV[a + 4], 't', ARGV[a + 5])
    end
  end
  local discarded = n - keep
  if mode == 'oldest' and held + keep > limit then
    discarded = redis.call('XTRIM', RETAINED, 'MAXLEN', limit)
  end
  if keep > 0 or discarded > 0 then redis.call('INCR', GEN) end
  return {1, redis.call('XLEN', RETAINED), discarded}
end

local receivers = {}
for _, g in ipairs(groups) do
  if not skip[g] then receivers[#receivers + 1] = g end
end
local k = redis.call('INCRBY', SEQ, n * #receivers) - n * #receivers
for _, g in ipairs(receivers) do
  for j = 0, n - 1 do
    local a = first + j * 6
    k = k + 1
    enqueue(g, ARGV[a + 4], k, 1, ARGV[a], ARGV[a + 1], meta_of(a), ARGV[a + 5])
  end
  redis.call('HINCRBY', READY, g, n)
end
redis.call('INCR', GEN)
local out = {0, 0, 0}
for _, g in ipairs(receivers) do out[#out + 1] = g end
return out
