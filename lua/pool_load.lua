-- pool_load.lua: loads one batch of a shared data pool. The first batch (replace = 1)
-- refuses to replace a pool whose items are checked out, unless forced, then clears it.
-- Items are numbered in load order from 0; in an exclusive pool every item starts free.
--
-- KEYS[1] meta: j4:{p:NAME}:meta (mode, count, cursor, loaded_ms)
-- KEYS[2] items: j4:{p:NAME}:items (index -> item JSON)
-- KEYS[3] free: j4:{p:NAME}:free (list of free indexes, exclusive mode)
-- KEYS[4] held: j4:{p:NAME}:held (index -> hold expiry ms, exclusive mode)
-- KEYS[5] holders: j4:{p:NAME}:holders (index -> worker|vu|token)
-- ARGV[1] mode: exclusive | shared
-- ARGV[2] replace: 1 for the first batch, 0 for the next ones
-- ARGV[3] force: 1 to replace a pool whose items are checked out
-- ARGV[4...] item: item JSON, in order
-- Reply: {code, count}; code: ok | held (items are checked out and force is 0)
-- Errors: none
-- @include lib/now.lua
local now = now_ms()

if ARGV[2] == '1' then
  local held = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
  if held > 0 and ARGV[3] ~= '1' then return {'held', held} end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'count', 0, 'cursor', 0, 'loaded_ms', now)
end
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
for i = 4, #ARGV do
  redis.call('HSET', KEYS[2], count, ARGV[i])
  if ARGV[1] == 'exclusive' then redis.call('RPUSH', KEYS[3], count) end
  count = count + 1
end
redis.call('HSET', KEYS[1], 'count', count)
return {'ok', count}
