-- plan.lua: publishes a run's target ahead of now; only the supervisor that holds the run's
-- supervision (holder|token in ctl.sup, renewed by every call, taken over only once it has
-- expired) may write. Ticks now and next are frozen: their values are only ever set once
-- (HSETNX); later ticks may be rewritten. A pending run is started here: its tick 0 begins
-- at least lead_ms from now (rounded up to a whole second), which gives the workers time
-- to take their leases.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] plan: j4:{r:ID}:plan (tick -> F(n) or V(n))
-- KEYS[3] events: j4:{r:ID}:events
-- ARGV[1] holder: the supervisor's id
-- ARGV[2] token: the supervisor's token for this term
-- ARGV[3] ttl_ms: how long this supervision lasts without another call
-- ARGV[4] lead_ms: delay from now to tick 0 when the run is started
-- ARGV[5] from_tick: the tick of the first value
-- ARGV[6...] value: plan values for from_tick, from_tick + 1, ...
-- Reply: {now_ms, code, state, start_ms (-1 before start)}; code: ok | fenced
-- Errors: J4_NO_RUN (no such run)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'sup', 'sup_until')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state = c[1]
local mine = ARGV[1] .. '|' .. ARGV[2]
if c[4] and c[4] ~= mine and tonumber(c[5] or '0') > now then
  return {now, 'fenced', state, tonumber(c[2] or '-1')}
end
if c[4] ~= mine then
  -- A change of the run's supervisor (leader change, or the first one): who and from whom.
  local previous = c[4] and (string.match(c[4], '^(.*)|') or c[4]) or ''
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'supervisor', 'at', now, 'holder', ARGV[1],
    'previous', previous)
end
redis.call('HSET', KEYS[1], 'sup', mine, 'sup_until', now + tonumber(ARGV[3]))

local start = tonumber(c[2] or '-1')
if state == 'pending' then
  -- Tick 0 begins on a whole second of the server's clock, so ticks line up with seconds.
  start = math.ceil((now + tonumber(ARGV[4])) / 1000) * 1000
  state = 'running'
  redis.call('HSET', KEYS[1], 'state', state, 'start_ms', start)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'type', 'started', 'at', now, 'start_ms', start)
end
if state ~= 'running' and state ~= 'stopping' then return {now, 'ok', state, start} end

local tick = tonumber(c[3])
local now_tick = math.floor((now - start) / tick)
local from = tonumber(ARGV[5])
for i = 6, #ARGV do
  local n = from + i - 6
  if n <= now_tick + 1 then
    redis.call('HSETNX', KEYS[2], n, ARGV[i])
  else
    redis.call('HSET', KEYS[2], n, ARGV[i])
  end
end
return {now, 'ok', state, start}
