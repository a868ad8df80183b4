-- Runs several publishes on the topic (those of the brokers' threads that met in one call, see
-- topic.rs), each all or nothing: every group except the publish's skipped ones gets a
-- delivery of each of its messages (one XADD per group and message), or, while the topic has
-- no group at all, the topic retains them as the retention allows.
-- ARGV: base, number of publishes; then per publish: retention ('off' | 'reject' | 'oldest' |
-- 'newest'), limit, nskip, nmsg, the skipped groups, then six per message: id, payload, has
-- metadata (0/1), metadata, priority, time.
-- Returns one reply per publish, in order: {no group (1/0; -1: refused, full), held, discarded,
-- receiving groups...}.
local groups = redis.call('HKEYS', GROUPS)
local wrote = false
local replies = {}

local function publish(a)
  local mode, limit, nskip, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local skip = {}
  for i = 1, nskip do skip[ARGV[a + 3 + i]] = true end
  local first = a + 4 + nskip
  local function meta_of(m)
    if ARGV[m + 2] == '1' then return ARGV[m + 3] end
    return nil
  end

  if #groups == 0 then
    local held = redis.call('XLEN', RETAINED)
    if mode == 'off' then return {1, held, 0} end
    if mode == 'reject' and held + n > limit then return {-1, held, 0} end
    local keep = n
    if mode == 'newest' then keep = math.max(0, math.min(n, limit - held)) end
    for j = 0, keep - 1 do
      local m = first + j * 6
      local meta = meta_of(m)
      if meta then
        redis.call('XADD', RETAINED, '*', 'i', ARGV[m], 'p', ARGV[m + 1], 'r', ARGV[m + 4], 't', ARGV[m + 5], 'm', meta)
      else
        redis.call('XADD', RETAINED, '*', 'i', ARGV[m], 'p', ARGV[m + 1], 'r', ARGV[m + 4], 't', ARGV[m + 5])
      end
    end
    local discarded = n - keep
    if mode == 'oldest' and held + keep > limit then
      discarded = redis.call('XTRIM', RETAINED, 'MAXLEN', limit)
    end
    if keep > 0 or discarded > 0 then wrote = true end
    return {1, redis.call('XLEN', RETAINED), discarded}
  end

  local receivers = {}
  for _, g in ipairs(groups) do
    if not skip[g] then receivers[#receivers + 1] = g end
  end
  local k = redis.call('INCRBY', SEQ, n * #receivers) - n * #receivers
  for _, g in ipairs(receivers) do
    for j = 0, n - 1 do
      local m = first + j * 6
      k = k + 1
      enqueue(g, ARGV[m + 4], k, 1, ARGV[m], ARGV[m + 1], meta_of(m), ARGV[m + 5])
    end
    redis.call('HINCRBY', READY, g, n)
  end
  wrote = true
  local out = {0, 0, 0}
  for _, g in ipairs(receivers) do out[#out + 1] = g end
  return out
end

local a = 3
for i = 1, tonumber(ARGV[2]) do
  replies[i] = publish(a)
  a = a + 4 + tonumber(ARGV[a + 2]) + 6 * tonumber(ARGV[a + 3])
end
if wrote then touched() end
return replies
