-- holds_lease(owners, leases, shard, worker, token, now): the fence. True only when the
-- shard's owner is exactly worker|token and its lease has not expired at `now` (Redis ms):
-- a lease that lapsed or moved to another token can never renew, claim or come back.
local function holds_lease(owners, leases, shard, worker, token, now)
  local owner = redis.call('HGET', owners, shard)
  local expiry = tonumber(redis.call('ZSCORE', leases, shard) or '0')
  return owner == worker .. '|' .. token and expiry > now
end
