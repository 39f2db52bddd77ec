-- reap.lua: takes dead workers (no heartbeat for 3 TTLs) and expired leases out of the live
-- sets, so that status is accurate. Correctness does not depend on it: acquire already
-- treats an expired lease as free. Bounded: at most `limit` of each per call.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] leases: j4:{r:ID}:leases
-- KEYS[3] owners: j4:{r:ID}:owners
-- KEYS[4] workers: j4:{r:ID}:workers
-- KEYS[5] events: j4:{r:ID}:events
-- ARGV[1] limit: most workers and most leases to reap in this call
-- Reply: {dead_workers, expired_leases}
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
local now = now_ms()

local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
if not ttl then return redis.error_reply('J4_NO_RUN') end
ttl = tonumber(ttl)
local limit = tonumber(ARGV[1])

local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - 3 * ttl, 'LIMIT', 0, limit)
for _, w in ipairs(dead) do
  redis.call('ZREM', KEYS[4], w)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'worker_dead', 'at', now, 'worker', w)
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '(0', now, 'LIMIT', 0, limit)
for _, shard in ipairs(expired) do
  local owner = redis.call('HGET', KEYS[3], shard)
  redis.call('HDEL', KEYS[3], shard)
  redis.call('ZADD', KEYS[2], 'XX', 0, shard)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'lease_expired', 'at', now,
    'shard', shard, 'worker', owner and (string.match(owner, '^(.*)|') or owner) or '')
end
return {#dead, #expired}
