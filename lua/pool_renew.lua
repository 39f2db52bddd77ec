-- pool_renew.lua: extends the holds of items a worker's VUs have checked out. A hold that
-- expired or moved to another holder is never revived: it is reported lost.
--
-- KEYS[1] held: j4:{p:NAME}:held
-- KEYS[2] holders: j4:{p:NAME}:holders
-- ARGV[1] ttl_ms: the new hold length from now
-- ARGV[2...] index, holder: each item and its worker|vu|token
-- Reply: {now_ms, lost_count, index, ...}
-- Errors: none
-- @include lib/now.lua
local now = now_ms()

local lost = {}
for i = 2, #ARGV, 2 do
  local index, holder = ARGV[i], ARGV[i + 1]
  local expiry = tonumber(redis.call('ZSCORE', KEYS[1], index) or '0')
  if redis.call('HGET', KEYS[2], index) == holder and expiry > now then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), index)
  else
    lost[#lost + 1] = tonumber(index)
  end
end
local reply = {now, #lost}
for _, index in ipairs(lost) do reply[#reply + 1] = index end
return reply
