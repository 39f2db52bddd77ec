-- plan.lua: publishes a run's target ahead of now; only the supervisor that holds the run's
-- supervision (holder|token in ctl.sup, renewed by every call, taken over only once it has
-- expired) may write. Ticks now and next are frozen: their values are only ever set once
-- (HSETNX); later ticks may be rewritten. "Now" is the run's tick (lib/run_tick.lua), which
-- never goes back below the highest granted tick, so a granted tick's value never changes. A pending run is started here: its tick 0 begins
-- at least lead_ms from now (rounded up to a whole second), which gives the workers time
-- to take their leases.
--
-- The values were computed from the curve of one generation of the run (ctl.gen, bumped by
-- scale, stop and abort). If the run's generation has moved on since the supervisor read
-- it, nothing is written and the reply says `stale`: a supervisor that stalled between
-- reading the run and writing its plan cannot undo a `j4 scale` that landed in between.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] plan: j4:{r:ID}:plan (tick -> F(n) or V(n))
-- KEYS[3] events: j4:{r:ID}:events
-- ARGV[1] holder: the supervisor's id
-- ARGV[2] token: the supervisor's token for this term
-- ARGV[3] ttl_ms: how long this supervision lasts without another call
-- ARGV[4] lead_ms: delay from now to tick 0 when the run is started
-- ARGV[5] gen: the run's generation the values were computed from
-- ARGV[6] from_tick: the tick of the first value
-- ARGV[7...] value: plan values for from_tick, from_tick + 1, ...
-- Reply: {now_ms, code, state, start_ms (-1 before start)}; code: ok | fenced | stale
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
-- @include lib/run_tick.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'sup', 'sup_until', 'gen', 'claimed_tick')
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
if tonumber(c[6] or '0') ~= tonumber(ARGV[5]) then return {now, 'stale', state, tonumber(c[2] or '-1')} end

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
local now_tick = run_tick(now, start, tick, tonumber(c[7] or '-1'))
local from = tonumber(ARGV[6])
for i = 7, #ARGV do
  local n = from + i - 7
  if n <= now_tick + 1 then
    redis.call('HSETNX', KEYS[2], n, ARGV[i])
  else
    redis.call('HSET', KEYS[2], n, ARGV[i])
  end
end
return {now, 'ok', state, start}
