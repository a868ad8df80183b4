-- Figures of group ARGV[2]: {ready, delayed, leases that ran out, in how many ms the next
-- delayed delivery or lease of another holder than ARGV[3] (the caller's own ack deadlines,
-- which its timer watches) comes due (0: due now; -1: none)}.
local g, spare = ARGV[2], ARGV[3]
local now = server_now()
if not group_exists(g) then return {0, 0, 0, -1} end
local next_due = -1
local d = redis.call('ZRANGE', delayed(g), 0, 0, 'WITHSCORES')
if d[2] then next_due = tonumber(d[2]) end
local l = redis.call('ZRANGEBYSCORE', leases(g), 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 64)
for i = 1, #l, 2 do
  local who = split_holder(redis.call('HGET', holders(g), l[i]))
  if who ~= spare then
    local due = tonumber(l[i + 1])
    if next_due < 0 or due < next_due then next_due = due end
    break
  end
end
local wait = -1
if next_due >= 0 then wait = math.max(0, next_due - now) end
return {ready_of(g), redis.call('ZCARD', delayed(g)), redis.call('ZCOUNT', leases(g), 1, now), wait}
