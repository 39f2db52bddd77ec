-- abort.lua: the kill switch. The run becomes "aborted" at once: no tick is granted from now
-- on. Workers hear it on the signals channel (at once) or at their next claim or renew (within
-- one tick), cancel their iterations in flight and count what they skip of ticks already
-- granted as dropped. stop_tick becomes the first tick nobody has claimed (now + 1, or
-- now + 2 when the next tick is already claimed), so the target F(stop_tick) covers every
-- grant.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] events: j4:{r:ID}:events
-- ARGV[1] who: who asked, for the event
-- ARGV[2] reason: free text for the event
-- ARGV[3] channel: the pub/sub channel told "<run> aborted <stop_tick>" (j4:signals)
-- Reply: {state, stop_tick}
-- Errors: J4_NO_RUN (no such run)
-- @include lib/now.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'tick_ms', 'stop_tick', 'claimed_tick', 'run')
if not c[1] then return redis.error_reply('J4_NO_RUN') end
local state, stop_tick = c[1], tonumber(c[4])
if state ~= 'pending' and state ~= 'running' and state ~= 'stopping' then return {state, stop_tick} end
if c[2] then
  local now_tick = math.floor((now - tonumber(c[2])) / tonumber(c[3]))
  stop_tick = math.min(stop_tick, math.max(0, now_tick + 1, tonumber(c[5] or '-1') + 1))
else
  stop_tick = 0
end
redis.call('HSET', KEYS[1], 'state', 'aborted', 'stop_tick', stop_tick, 'finished_ms', now)
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'type', 'aborted', 'at', now, 'by', ARGV[1], 'reason', ARGV[2], 'stop_tick', stop_tick)
redis.call('PUBLISH', ARGV[3], (c[6] or '') .. ' aborted ' .. stop_tick)
return {'aborted', stop_tick}
