-- acquire.lua: a worker's heartbeat; renews the leases it holds (token-checked, never
-- reviving an expired one) and, when asked, takes free or expired shards up to its fair
-- share cap = ceil(S / live workers). Every grant gets a fresh token (counter-nonce). A lease
-- the caller believed it held and does not is reported lost, with a "lost" event.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] leases: j4:{r:ID}:leases (shard -> expiry ms)
-- KEYS[3] owners: j4:{r:ID}:owners (shard -> worker|token)
-- KEYS[4] workers: j4:{r:ID}:workers (worker -> last heartbeat ms)
-- KEYS[5] events: j4:{r:ID}:events
-- ARGV[1] worker: the caller's worker id
-- ARGV[2] nonce: random text from the caller, part of new tokens
-- ARGV[3] take: 1 to take shards up to the fair share, 0 to only renew
-- ARGV[4...] shard, token: the leases the caller believes it holds
-- Reply: {now_ms, state, gen, start_ms (-1 before start), stop_tick, cap, live_workers,
--         held_count, shard, token, expiry_ms, ... , lost_count, shard, ..., next_expiry_ms}
--   next_expiry_ms: when asked to take and still below the cap, the earliest expiry of a
--   lease held now (another worker's, unless the caller's own are the earliest), so that
--   the caller can come back the moment it runs out rather than at its next heartbeat;
--   -1 otherwise.
-- Errors: J4_NO_RUN (no such run), J4_CORRUPT (the leases set is missing)
-- @include lib/now.lua
-- @include lib/fence.lua
-- @include lib/fair_share.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'shards', 'ttl_ms', 'stop_tick', 'gen', 'start_ms')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state, shards, ttl = c[1], tonumber(c[2]), tonumber(c[3])
-- A stopping run still renews (its last granted ticks are running) but grants no new lease.
local live_state = (state == 'pending' or state == 'running' or state == 'stopping')
local may_take = (state == 'pending' or state == 'running')
local worker = ARGV[1]
-- Every shard has a member in leases from submit on: an empty set is a broken run.
if live_state and redis.call('ZCARD', KEYS[2]) == 0 then return redis.error_reply('J4_CORRUPT the leases set is missing') end

if live_state then redis.call('ZADD', KEYS[4], now, worker) end
local cap, live = fair_share(KEYS[4], shards, ttl, now)

local held, lost = {}, {}
for i = 4, #ARGV, 2 do
  local shard, token = ARGV[i], ARGV[i + 1]
  if live_state and holds_lease(KEYS[3], KEYS[2], shard, worker, token, now) then
    redis.call('ZADD', KEYS[2], 'XX', now + ttl, shard)
    held[#held + 1] = {shard, token}
  else
    lost[#lost + 1] = shard
  end
end

if may_take and ARGV[3] == '1' and #held < cap then
  local free = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, cap - #held)
  for _, shard in ipairs(free) do
    local previous = redis.call('HGET', KEYS[3], shard)
    local token = redis.call('HINCRBY', KEYS[1], 'lease_seq', 1) .. '-' .. ARGV[2]
    redis.call('HSET', KEYS[3], shard, worker .. '|' .. token)
    redis.call('ZADD', KEYS[2], now + ttl, shard)
    held[#held + 1] = {shard, token}
    if previous then
      local from = string.match(previous, '^(.*)|') or previous
      if from ~= worker then
        redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'takeover', 'at', now,
          'worker', worker, 'shard', shard, 'from', from)
      end
    end
  end
  if #free > 0 then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'acquired', 'at', now,
      'worker', worker, 'count', #free)
  end
end

local next_expiry = -1
if may_take and ARGV[3] == '1' and #held < cap then
  local e = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if e[2] then next_expiry = tonumber(e[2]) end
end

local reply = {now, state, tonumber(c[5]), tonumber(c[6] or '-1'), tonumber(c[4]), cap, live, #held}
for _, h in ipairs(held) do
  reply[#reply + 1] = tonumber(h[1])
  reply[#reply + 1] = h[2]
  reply[#reply + 1] = now + ttl
end
reply[#reply + 1] = #lost
for _, s in ipairs(lost) do reply[#reply + 1] = tonumber(s) end
reply[#reply + 1] = next_expiry
if live_state and #lost > 0 then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'type', 'lost', 'at', now,
    'worker', worker, 'shards', table.concat(lost, ','))
end
return reply
