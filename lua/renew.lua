-- renew.lua: a worker's heartbeat that only extends the leases it still holds. A lease
-- whose token no longer matches, or that has expired, is reported lost (and a "lost" event
-- written) and never revived.
-- The caller sheds max(0, held - cap) shards as soon as it reads the reply.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] leases: j4:{r:ID}:leases
-- KEYS[3] owners: j4:{r:ID}:owners
-- KEYS[4] workers: j4:{r:ID}:workers
-- KEYS[5] events: j4:{r:ID}:events
-- ARGV[1] worker: the caller's worker id
-- ARGV[2...] shard, token: the leases the caller believes it holds
-- Reply: as acquire.lua, without next_expiry_ms: {now_ms, state, gen, start_ms, stop_tick, cap, live_workers,
--         held_count, shard, token, expiry_ms, ..., lost_count, shard, ...}
-- Errors: J4_NO_RUN (no such run), J4_CORRUPT (the leases set is missing)
-- @include lib/now.lua
-- @include lib/fence.lua
-- @include lib/fair_share.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'shards', 'ttl_ms', 'stop_tick', 'gen', 'start_ms')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state, shards, ttl = c[1], tonumber(c[2]), tonumber(c[3])
local live_state = (state == 'pending' or state == 'running' or state == 'stopping')
local worker = ARGV[1]
-- Every shard has a member in leases from submit on: an empty set is a broken run.
if live_state and redis.call('ZCARD', KEYS[2]) == 0 then return redis.error_reply('J4_CORRUPT the leases set is missing') end

if live_state then redis.call('ZADD', KEYS[4], now, worker) end
local cap, live = fair_share(KEYS[4], shards, ttl, now)

local reply = {now, state, tonumber(c[5]), tonumber(c[6] or '-1'), tonumber(c[4]), cap, live, 0}
local lost = {}
for i = 2, #ARGV, 2 do
  local shard, token = ARGV[i], ARGV[i + 1]
  if live_state and holds_lease(KEYS[3], KEYS[2], shard, worker, token, now) then
    redis.call('ZADD', KEYS[2], 'XX', now + ttl, shard)
    reply[8] = reply[8] + 1
    reply[#reply + 1] = tonumber(shard)
    reply[#reply + 1] = token
    reply[#reply + 1] = now + ttl
  else
    lost[#lost + 1] = tonumber(shard)
  end
end
reply[#reply + 1] = #lost
for _, s in ipairs(lost) do reply[#reply + 1] = s end
if live_state and #lost > 0 then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'lost', 'at', now,
    'worker', worker, 'shards', table.concat(lost, ','))
end
return reply
