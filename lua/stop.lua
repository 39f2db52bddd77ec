-- stop.lua: ends a run.
--   mode "stop" (a person's `j4 stop`): stop_tick becomes the next tick boundary, now + 1,
--   unless a worker has already claimed that tick (claims go out a little before a tick
--   starts; ctl.claimed_tick is the highest tick granted), then now + 2. Nothing from
--   stop_tick on is granted, and the run's target F(stop_tick) still covers every grant.
--   The run is "stopping" until its last granted tick is over, then the supervisor
--   finishes it.
--   mode "finish" (the supervisor, once the run's time is over): running -> finished,
--   stopping -> stopped.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] events: j4:{r:ID}:events
-- ARGV[1] mode: stop | finish
-- ARGV[2] who: who asked (worker, supervisor or user id), for the event
-- ARGV[3] channel: the pub/sub channel told "<run> <state> <stop_tick>" (j4:signals)
-- Reply: {state, stop_tick}
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'stop_tick', 'claimed_tick', 'run')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state, stop_tick = c[1], tonumber(c[4])

if ARGV[1] == 'stop' then
  if state == 'pending' then
    state, stop_tick = 'stopped', 0
    redis.call('HSET', KEYS[1], 'state', state, 'stop_tick', 0, 'finished_ms', now)
  elseif state == 'running' then
    local now_tick = math.floor((now - tonumber(c[2])) / tonumber(c[3]))
    local first_free = math.max(0, now_tick + 1, tonumber(c[5] or '-1') + 1)
    if first_free < stop_tick then stop_tick = first_free end
    state = 'stopping'
    redis.call('HSET', KEYS[1], 'state', state, 'stop_tick', stop_tick)
  else
    return {state, stop_tick}
  end
  redis.call('HINCRBY', KEYS[1], 'gen', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'type', 'stop', 'at', now, 'by', ARGV[2], 'stop_tick', stop_tick)
  redis.call('PUBLISH', ARGV[3], (c[6] or '') .. ' ' .. state .. ' ' .. stop_tick)
  return {state, stop_tick}
end

if state == 'running' then state = 'finished'
elseif state == 'stopping' then state = 'stopped'
else return {state, stop_tick} end
redis.call('HSET', KEYS[1], 'state', state, 'finished_ms', now)
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'type', state, 'at', now, 'by', ARGV[2])
return {state, stop_tick}
