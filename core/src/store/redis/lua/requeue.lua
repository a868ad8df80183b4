-- Gives delivery ARGV[4] of group ARGV[2], held by ARGV[3] at attempt ARGV[5], back:
--   'now'     behind the others of its priority, attempt + 1 (a new entry at the stream's end);
--   'at'      the same, ARGV[7] ms from now (kept aside until then);
--   'unstarted' in place, same attempt (it was claimed but never handed to a consumer);
--   'close'   in place, attempt + 1 (its broker is closing; its consumer may have started it).
-- Returns 1: ready, 2: delayed, 0: gone (the lease was lost, or the group removed).
local g, holder, member, attempt, how = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if not group_exists(g) then return 0 end
local who, held = split_holder(redis.call('HGET', holders(g), member))
if who ~= holder or (how ~= 'close' and held ~= attempt) then return 0 end
local p, id = split_member(member)
local key = stream(g, p)
touched()
if how == 'unstarted' or how == 'close' then
  local next = held
  if how == 'close' then next = held + 1 end
  redis.call('XCLAIM', key, CG, FREE, 0, id, 'JUSTID')
  redis.call('HSET', holders(g), member, FREE .. ' ' .. next)
  redis.call('ZADD', leases(g), 0, member)
  redis.call('HINCRBY', READY, g, 1)
  return 1
end
local e = redis.call('XRANGE', key, id, id)[1]
redis.call('XACK', key, CG, id)
redis.call('XDEL', key, id)
forget(g, member)
if not e then return 0 end
local f = fields_of(e[2])
if how == 'now' then
  enqueue(g, p, f.k, attempt + 1, f.i, f.p, f.m, f.t)
  redis.call('HINCRBY', READY, g, 1)
  return 1
end
local has_meta = 0
if f.m then has_meta = 1 end
redis.call('HSET', delayed_msgs(g), f.k, cmsgpack.pack({p, attempt + 1, f.i, f.p, f.t, has_meta, f.m or ''}))
redis.call('ZADD', delayed(g), server_now() + tonumber(ARGV[7]), f.k)
drop_if_drained(g, p)
return 2
