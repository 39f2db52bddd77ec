-- pool_checkout.lua: gives a VU one item of a pool. Exclusive pools: a free item, after
-- first taking back items whose hold has expired (their holder died, stalled past its
-- deadline, or lost its lease); the item is held until the expiry returned, renewed by
-- pool_renew.lua, and given back by pool_return.lua. Shared pools: the next item in turn
-- (cyclic), nothing held.
--
-- KEYS[1] meta: j4:{p:NAME}:meta
-- KEYS[2] items: j4:{p:NAME}:items
-- KEYS[3] free: j4:{p:NAME}:free
-- KEYS[4] held: j4:{p:NAME}:held
-- KEYS[5] holders: j4:{p:NAME}:holders
-- ARGV[1] holder: worker|vu of the caller
-- ARGV[2] token: random text identifying this checkout
-- ARGV[3] ttl_ms: how long the hold lasts without a renewal
-- Reply: {code, index, item, expiry_ms, now_ms}; code: ok | empty (all held) | no_pool
-- Errors: none
-- @include lib/now.lua
local now = now_ms()

local m = redis.call('HMGET', KEYS[1], 'mode', 'count')
if not m[1] then return {'no_pool', -1, '', 0, now} end
local count = tonumber(m[2])
if count == 0 then return {'empty', -1, '', 0, now} end

if m[1] == 'shared' then
  local index = (redis.call('HINCRBY', KEYS[1], 'cursor', 1) - 1) % count
  return {'ok', index, redis.call('HGET', KEYS[2], index), 0, now}
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, index in ipairs(expired) do
  redis.call('ZREM', KEYS[4], index)
  redis.call('HDEL', KEYS[5], index)
  redis.call('RPUSH', KEYS[3], index)
end
local index = redis.call('LPOP', KEYS[3])
if not index then return {'empty', -1, '', 0, now} end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[4], expiry, index)
redis.call('HSET', KEYS[5], index, ARGV[1] .. '|' .. ARGV[2])
return {'ok', tonumber(index), redis.call('HGET', KEYS[2], index), expiry, now}
