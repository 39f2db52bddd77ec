-- claim.lua: claims tick n's quota for shards the caller holds. The fence: the caller's
-- token must still own the shard and its lease must not have expired. Then HSETNX grants
-- each (tick, shard) exactly once; a retry with the same token gets the same answer, any
-- other token is refused. Only the current and the next tick can be claimed, and never a
-- tick at or past stop_tick. ctl.claimed_tick keeps the highest tick with a grant, so that
-- stop.lua and abort.lua never set stop_tick at or below a tick already granted, and so that
-- the run's time never goes back (lib/run_tick.lua): whatever Redis' clock says, no tick
-- below claimed_tick - 1 is claimed again. The grant records of ticks claimed_tick - 1 and
-- claimed_tick are therefore the only ones that still guard anything; they are kept for a
-- day, and given a minute (to be read by hand) only once claimed_tick has moved past them,
-- so that no step of Redis' clock short of a day expires a record a claim still needs. For
-- arrival-rate runs the iterations granted are added to ctl.granted and to the tick's
-- "<n>:g" field in the ticks hash (where workers add "<n>:s" started and "<n>:d" dropped),
-- so that what is granted for a tick never exceeds its target and can be accounted for.
-- A claim is also a heartbeat: each lease it is made with that is still the caller's and
-- unexpired is extended by the TTL, as renew.lua would, and the caller marked live, so a
-- worker that claims every tick renews far less often (fewer Redis calls per worker-second).
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] leases: j4:{r:ID}:leases
-- KEYS[3] owners: j4:{r:ID}:owners
-- KEYS[4] plan: j4:{r:ID}:plan (tick -> F(n) or V(n))
-- KEYS[5] claims: j4:{r:ID}:claims:<tick> (shard -> worker|token)
-- KEYS[6] ticks: j4:{r:ID}:ticks (per-tick accounting: <n>:g, <n>:s, <n>:d)
-- KEYS[7] workers: j4:{r:ID}:workers (heartbeats)
-- KEYS[8] events: j4:{r:ID}:events
-- KEYS[9] claims_before: j4:{r:ID}:claims:<tick - 2> (expires a minute after tick n is the first granted above it)
-- KEYS[10] claims_older: j4:{r:ID}:claims:<tick - 3> (likewise, when tick n - 1 had no grant)
-- ARGV[1] worker: the caller's worker id
-- ARGV[2] tick: the tick n to claim
-- ARGV[3...] shard, token: the leases to claim with
--
-- The barrier: a grant may be lost after it was made and used. Redis restarted in place
-- reloads an AOF fsynced once a second, or an older snapshot; a replica promoted by a
-- failover (Sentinel, or a Redis Cluster shard) lacks what was not yet replicated. Each
-- such server is a new process with a new run_id (lib/epoch.lua). The run records the
-- run_id of the server it was submitted and claimed on (ctl.redis_epoch); a claim on another
-- sets ctl.barrier_tick = now_tick + 2 and writes a "redis_changed" event, and no tick below
-- the barrier is granted. Only the current and the next tick can ever be claimed, so every
-- tick a lost grant was for is below the barrier: no (tick, shard) is granted twice. The
-- ticks in between are unclaimed.
-- Reply: {now_ms, code, a, b, stop_tick, count, shard, status, renewed, ..., cap}
--   code: ok | aborted | not_running | not_started | past | early | stopped | no_plan | barrier
--   a, b: F(n), F(n+1) for arrival-rate; V(n), V(n) for vus (0, 0 unless ok)
--   status per shard: granted | fenced (lease not the caller's) | taken (granted to another)
--   renewed per shard: 1 when the lease was extended to now + TTL (only with code ok), else 0
--   cap (only with code ok): the caller's fair share now, as renew.lua computes it, so a
--   worker learns at its next claim that a worker died and it may take more shards
-- Errors: J4_NO_RUN (no such run), J4_NO_EPOCH (the server reports no run_id or master_replid)
-- @include lib/now.lua
-- @include lib/fence.lua
-- @include lib/fair_share.lua
-- @include lib/run_tick.lua
-- @include lib/epoch.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'stop_tick', 'model', 'shards', 'ttl_ms', 'claimed_tick')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state, stop_tick = c[1], tonumber(c[4])
local n = tonumber(ARGV[2])
local function answer(code) return {now, code, 0, 0, stop_tick, 0} end

if state == 'aborted' then return answer('aborted') end
if state ~= 'running' and state ~= 'stopping' then return answer('not_running') end
if not c[2] then return answer('not_started') end
local start, tick = tonumber(c[2]), tonumber(c[3])
local claimed = tonumber(c[8] or '-1')
local now_tick = run_tick(now, start, tick, claimed)
if n < now_tick then return answer('past') end
if n > now_tick + 1 then return answer('early') end
if n >= stop_tick then return answer('stopped') end

local epoch = server_epoch()
if not epoch then return redis.error_reply('J4_NO_EPOCH the Redis server reports no run_id or master_replid in INFO') end
local known = redis.call('HGET', KEYS[1], 'redis_epoch')
if not known then
  redis.call('HSET', KEYS[1], 'redis_epoch', epoch)
elseif known ~= epoch then
  local barrier = now_tick + 2
  redis.call('HSET', KEYS[1], 'redis_epoch', epoch, 'barrier_tick', barrier)
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', 1000, '*', 'type', 'redis_changed', 'at', now,
    'from', known, 'to', epoch, 'barrier_tick', barrier)
end
if n < tonumber(redis.call('HGET', KEYS[1], 'barrier_tick') or '-1') then return answer('barrier') end

local arrival = (c[5] == 'arrival-rate')
local a = redis.call('HGET', KEYS[4], n)
local b = arrival and redis.call('HGET', KEYS[4], n + 1) or a
if not a or not b then return answer('no_plan') end
a, b = tonumber(a), tonumber(b)

local shards, ttl = tonumber(c[6]), tonumber(c[7])
local worker = ARGV[1]
redis.call('ZADD', KEYS[7], now, worker)
local reply = {now, 'ok', a, b, stop_tick, 0}
local any = false
local newly = 0
for i = 3, #ARGV, 2 do
  local shard, token = ARGV[i], ARGV[i + 1]
  local status
  local valid = holds_lease(KEYS[3], KEYS[2], shard, worker, token, now)
  if valid then redis.call('ZADD', KEYS[2], 'XX', now + ttl, shard) end
  if not valid then
    status = 'fenced'
  elseif redis.call('HSETNX', KEYS[5], shard, worker .. '|' .. token) == 1 then
    status = 'granted'
    any = true
    if arrival then
      -- iterations g in [a, b) with g = shard (mod S)
      local s = tonumber(shard)
      local first = a + ((s - a) % shards)
      if first < b then newly = newly + math.floor((b - 1 - first) / shards) + 1 end
    end
  elseif redis.call('HGET', KEYS[5], shard) == worker .. '|' .. token then
    status = 'granted'
  else
    status = 'taken'
  end
  reply[6] = reply[6] + 1
  reply[#reply + 1] = tonumber(shard)
  reply[#reply + 1] = status
  reply[#reply + 1] = valid and 1 or 0
end
reply[#reply + 1] = fair_share(KEYS[7], shards, ttl, now)
if any and n > claimed then
  redis.call('HSET', KEYS[1], 'claimed_tick', n)
  -- Ticks below n - 1 can no longer be claimed: their grant records have done their work
  -- and stay a minute, to be read by hand.
  redis.call('PEXPIREAT', KEYS[9], now + 60000)
  redis.call('PEXPIREAT', KEYS[10], now + 60000)
end
if newly > 0 then
  redis.call('HINCRBY', KEYS[1], 'granted', newly)
  redis.call('HINCRBY', KEYS[6], n .. ':g', newly)
end
-- A day on Redis' clock, shortened to a minute when the run moves on (above); the day is the
-- net for the last records of a run that ends.
if any then redis.call('PEXPIREAT', KEYS[5], now + 86400000) end
return reply
