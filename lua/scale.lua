-- scale.lua: changes a running run's target live. From tick k = now + 2 (the first tick not
-- frozen; never before an earlier scale's tick) to the end, the target is a constant N.
-- The curve restarts at the integer F(k): F'(n) = F(k) + ceil(N * (min(n*tick, T) - k*tick) / 10^6)
-- (N in thousandths, times in ms), computed here exactly in two parts so that Lua's doubles
-- never hold more than 2^53, and the published plan from k on is rewritten in this script.
-- The scale is recorded in ctl.scales as "k:N:F(k)" entries, comma-separated, in order.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] plan: j4:{r:ID}:plan
-- KEYS[3] events: j4:{r:ID}:events
-- ARGV[1] target_milli: the new target in thousandths (rate per second, or VUs)
-- ARGV[2] who: who asked, for the event
-- Reply: {code, from_tick}; code: ok | not_running | too_late | no_plan
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
-- @include lib/run_tick.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'ticks', 'duration_ms', 'model', 'scales', 'stop_tick', 'claimed_tick')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
if c[1] ~= 'running' or not c[2] then return {'not_running', -1} end
local start, tick, ticks, duration = tonumber(c[2]), tonumber(c[3]), tonumber(c[4]), tonumber(c[5])
local k = math.max(0, run_tick(now, start, tick, tonumber(c[9] or '-1')) + 2)
local scales = c[7] or ''
for from in string.gmatch(scales, '(%d+):%d+:%d+') do
  if tonumber(from) > k then k = tonumber(from) end
end
if k >= math.min(ticks, tonumber(c[8])) then return {'too_late', k} end

local target = tonumber(ARGV[1])
local base
if c[6] == 'arrival-rate' then
  base = redis.call('HGET', KEYS[2], k)
  if not base then return {'no_plan', k} end
  base = tonumber(base)
  local hi = math.floor(target / 1000000)
  local lo = target - hi * 1000000
  -- The supervisor publishes the longer of 10 ticks and 5 s ahead; rewrite the longer of 20
  -- ticks and 7 s from two ticks ahead, so that none is left stale.
  local ahead = math.max(20, math.ceil(7000 / tick))
  for n = k + 1, math.min(ticks, k + ahead) do
    local elapsed = math.min(n * tick, duration) - k * tick
    redis.call('HSET', KEYS[2], n, base + hi * elapsed + math.ceil(lo * elapsed / 1000000))
  end
else
  base = 0
  local vus = math.floor(target / 1000)
  for n = k, math.min(ticks - 1, k + math.max(20, math.ceil(6000 / tick))) do redis.call('HSET', KEYS[2], n, vus) end
end

local entry = k .. ':' .. target .. ':' .. base
redis.call('HSET', KEYS[1], 'scales', scales == '' and entry or (scales .. ',' .. entry))
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'scaled', 'at', now, 'by', ARGV[2],
  'from_tick', k, 'target', target / 1000)
return {'ok', k}
