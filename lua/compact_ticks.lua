-- compact_ticks.lua: folds the per-tick state of settled ticks, so that a long run's plan and
-- ticks hashes stay small. A tick below claimed_tick - 1 is never claimed again
-- (lib/run_tick.lua), so its plan value is never read again and its grant count never
-- changes; only a late flush can still add to its started or dropped count. Ticks from the
-- cursor ctl.compacted_tick up to claimed_tick - 1 - keep_ticks (at most max_ticks of them a
-- call) lose their plan field, and their "<n>:g", "<n>:s" and "<n>:d" are added to
-- "settled:g", "settled:s" and "settled:d" of the ticks hash and deleted. flush.lua adds the
-- counts of a tick below the cursor to the settled fields, so every sum stays exact:
-- settled:g + the sum of "<n>:g" over the ticks kept = ctl.granted, and so on.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] plan: j4:{r:ID}:plan
-- KEYS[3] ticks: j4:{r:ID}:ticks
-- ARGV[1] keep_ticks: how many ticks below claimed_tick - 1 keep their own fields
-- ARGV[2] max_ticks: the most ticks folded by this call
-- Reply: {compacted_tick, folded}: the new cursor (every tick below it is folded) and how many ticks this call folded
-- Errors: J4_NO_RUN (no such run)
local c = redis.call('HMGET', KEYS[1], 'state', 'claimed_tick', 'compacted_tick')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local from = tonumber(c[3] or '0')
local upto = math.min(from + tonumber(ARGV[2]), tonumber(c[2] or '-1') - 1 - tonumber(ARGV[1]))
if upto <= from then return {from, 0} end
local sums = {g = 0, s = 0, d = 0}
for n = from, upto - 1 do
  local f = {n .. ':g', n .. ':s', n .. ':d'}
  local v = redis.call('HMGET', KEYS[3], f[1], f[2], f[3])
  sums.g = sums.g + tonumber(v[1] or '0')
  sums.s = sums.s + tonumber(v[2] or '0')
  sums.d = sums.d + tonumber(v[3] or '0')
  redis.call('HDEL', KEYS[3], f[1], f[2], f[3])
  redis.call('HDEL', KEYS[2], n)
end
for what, sum in pairs(sums) do
  if sum ~= 0 then redis.call('HINCRBY', KEYS[3], 'settled:' .. what, sum) end
end
redis.call('HSET', KEYS[1], 'compacted_tick', upto)
return {upto, upto - from}
