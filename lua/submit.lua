-- submit.lua: store a validated run definition. Idempotent: the same run id with the same
-- definition hash returns the same answer; the same id with another hash is refused.
-- The client adds the run to j4:runs before (so that Redis refuses a user who may not
-- submit before anything is written) and to j4:active after.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl (hash)
-- KEYS[2] leases: j4:{r:ID}:leases (zset; every shard is created free, score 0)
-- KEYS[3] events: j4:{r:ID}:events (stream)
-- ARGV[1] run: the run id
-- ARGV[2] hash: hash of the canonical definition
-- ARGV[3] definition: the canonical definition (JSON)
-- ARGV[4] name: the run's name
-- ARGV[5] scenario: the scenario name
-- ARGV[6] model: arrival-rate | vus
-- ARGV[7] shards: number of shards S
-- ARGV[8] tick_ms: tick length
-- ARGV[9] ttl_ms: lease TTL
-- ARGV[10] ticks: number of ticks N
-- ARGV[11] target: total iterations (arrival-rate) or peak VUs (vus)
-- ARGV[12] max_in_flight: per-worker in-flight cap
-- ARGV[13] duration_ms: the run's length T
-- Reply: {"created"|"exists", run id}
-- Errors: J4_CONFLICT (the id exists with another definition), J4_NO_EPOCH (the server reports no run_id or master_replid)
-- @include lib/now.lua
-- @include lib/epoch.lua
local now = now_ms()

local epoch = server_epoch()
if not epoch then return redis.error_reply('J4_NO_EPOCH the Redis server reports no run_id or master_replid in INFO') end

local existing = redis.call('HGET', KEYS[1], 'hash')
if existing then
  if existing == ARGV[2] then return {'exists', ARGV[1]} end
  return redis.error_reply('J4_CONFLICT run ' .. ARGV[1] .. ' exists with another definition')
end

redis.call('HSET', KEYS[1],
  'schema', '1', 'run', ARGV[1], 'state', 'pending', 'hash', ARGV[2], 'definition', ARGV[3],
  'name', ARGV[4], 'scenario', ARGV[5], 'model', ARGV[6], 'shards', ARGV[7],
  'tick_ms', ARGV[8], 'ttl_ms', ARGV[9], 'ticks', ARGV[10], 'stop_tick', ARGV[10],
  'target', ARGV[11], 'max_in_flight', ARGV[12], 'duration_ms', ARGV[13], 'submitted_ms', now,
  'gen', '1', 'lease_seq', '0', 'granted', '0', 'redis_epoch', epoch)

local shards = tonumber(ARGV[7])
local batch = {}
for s = 0, shards - 1 do
  batch[#batch + 1] = 0
  batch[#batch + 1] = s
  if #batch >= 1000 then
    redis.call('ZADD', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZADD', KEYS[2], unpack(batch)) end

redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'submitted', 'at', now, 'name', ARGV[4])
return {'created', ARGV[1]}
