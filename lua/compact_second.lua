-- compact_second.lua: folds one second of a run's metrics into its minute, so that a long
-- run keeps per-second detail only for its recent past. The second must be the cursor
-- ctl.compacted_s (the first second not folded; absent: the minute the run started in) and
-- at least keep_s old on Redis' clock. Its hash is merged into the minute's, as flush.lua
-- merges (max:<name> fields keep the maximum, every other field is added), and deleted; the
-- cursor moves to the next second. flush.lua sends a late flush of a folded second to its
-- minute, so no count is lost or counted twice. The caller folds one second after another
-- from the cursor and stops at the first that is refused.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] second: j4:{r:ID}:m:<second>
-- KEYS[3] minute: j4:{r:ID}:m60:<the first second of its minute>
-- ARGV[1] second: the unix second of KEYS[2]
-- ARGV[2] keep_s: how many seconds before now keep their own hash
-- ARGV[3] ttl_s: expiry of the minute's hash, in seconds
-- Reply: {code, compacted_s}; code: folded | not_yet (too recent, or the run has not started) | moved (not the cursor)
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'compacted_s')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
if not c[2] then return {'not_yet', -1} end
local s = tonumber(ARGV[1])
local cursor = tonumber(c[3] or '-1')
if cursor < 0 then
  local first = math.floor(tonumber(c[2]) / 1000)
  cursor = first - first % 60
end
if s ~= cursor then return {'moved', cursor} end
if s >= math.floor(now_ms() / 1000) - tonumber(ARGV[2]) then return {'not_yet', cursor} end
local h = redis.call('HGETALL', KEYS[2])
for i = 1, #h, 2 do
  local field, value = h[i], h[i + 1]
  if string.sub(field, 1, 4) == 'max:' then
    if tonumber(value) > tonumber(redis.call('HGET', KEYS[3], field) or '-1') then redis.call('HSET', KEYS[3], field, value) end
  else
    redis.call('HINCRBY', KEYS[3], field, value)
  end
end
if #h > 0 then
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
end
redis.call('HSET', KEYS[1], 'compacted_s', s + 1)
return {'folded', s + 1}
