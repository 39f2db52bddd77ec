-- fair_share(workers, shards, ttl, now): a worker's fair share of a run's shards,
-- cap = ceil(shards / live), where live counts the workers whose heartbeat in `workers`
-- (zset: worker -> Redis ms) is within one TTL of `now` (at least 1). Returns cap, live.
local function fair_share(workers, shards, ttl, now)
  local live = redis.call('ZCOUNT', workers, now - ttl, '+inf')
  if live < 1 then live = 1 end
  return math.ceil(shards / live), live
end
