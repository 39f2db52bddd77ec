-- pool_return.lua: gives items back to an exclusive pool (a VU ended or let them go).
-- Token-checked: an item whose hold has moved to another holder is left alone.
--
-- KEYS[1] free: j4:{p:NAME}:free
-- KEYS[2] held: j4:{p:NAME}:held
-- KEYS[3] holders: j4:{p:NAME}:holders
-- ARGV[1...] index, holder: each item and its worker|vu|token
-- Reply: number of items returned
-- Errors: none
local returned = 0
for i = 1, #ARGV, 2 do
  local index, holder = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[3], index) == holder then
    redis.call('HDEL', KEYS[3], index)
    redis.call('ZREM', KEYS[2], index)
    redis.call('RPUSH', KEYS[1], index)
    returned = returned + 1
  end
end
return returned
