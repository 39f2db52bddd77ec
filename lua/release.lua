-- release.lua: token-checked hand-back of leases (SIGTERM, shedding), so that another worker
-- can take the shards at once. A lease whose token no longer matches is left alone.
-- With reason "shutdown" the worker also leaves the live set, so the fair share of the
-- others rises at once. Whatever the reason, when a lease was handed back the run's workers
-- hear "<run> released <count>" on the signals channel: one waiting for shards (it holds
-- none, so it has no claim reply to learn from) takes them at once, not at its next renewal.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] leases: j4:{r:ID}:leases
-- KEYS[3] owners: j4:{r:ID}:owners
-- KEYS[4] workers: j4:{r:ID}:workers
-- KEYS[5] events: j4:{r:ID}:events
-- ARGV[1] worker: the caller's worker id
-- ARGV[2] reason: shed | shutdown | lost
-- ARGV[3] channel: the signals channel (j4:signals)
-- ARGV[4] run: the run's id, for the message
-- ARGV[5...] shard, token: the leases to hand back
-- Reply: number of leases released
-- Errors: none
-- @include lib/now.lua
local now = now_ms()

local worker = ARGV[1]
local released = 0
for i = 5, #ARGV, 2 do
  local shard, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[3], shard) == worker .. '|' .. token then
    redis.call('HDEL', KEYS[3], shard)
    redis.call('ZADD', KEYS[2], 'XX', 0, shard)
    released = released + 1
  end
end
if ARGV[2] == 'shutdown' then redis.call('ZREM', KEYS[4], worker) end
if released > 0 or ARGV[2] == 'shutdown' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'released', 'at', now,
    'worker', worker, 'count', released, 'reason', ARGV[2])
end
if released > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' released ' .. released) end
return released
