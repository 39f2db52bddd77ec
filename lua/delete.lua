-- delete.lua: deletes every key of a run that has settled: its state has ended (finished,
-- stopped, aborted or failed), it ended at least max(3 lease TTLs, 10 s) ago and no worker
-- has been heard from for three TTLs (the point at which reap.lua would drop it), so that
-- no late flush or claim recreates a key (a worker flushes its last second within a
-- second or two of handing its leases back).
-- The run's entries in the global j4:runs and j4:active are another slot; the caller
-- removes them after this script (a run whose keys are gone is deleted again harmlessly).
-- Per-second metric hashes (m:<second>) and the grant records of earlier ticks are many;
-- the caller deletes them too, from the ctl fields it read before calling this script.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- KEYS[2] plan: j4:{r:ID}:plan
-- KEYS[3] leases: j4:{r:ID}:leases
-- KEYS[4] owners: j4:{r:ID}:owners
-- KEYS[5] workers: j4:{r:ID}:workers
-- KEYS[6] ticks: j4:{r:ID}:ticks
-- KEYS[7] totals: j4:{r:ID}:totals
-- KEYS[8] seqs: j4:{r:ID}:seqs
-- KEYS[9] events: j4:{r:ID}:events
-- KEYS[10] slow: j4:{r:ID}:slow
-- KEYS[11] claims_last: j4:{r:ID}:claims:<claimed_tick>
-- KEYS[12] claims_before: j4:{r:ID}:claims:<claimed_tick - 1>
-- Reply: {code, state, start_ms, finished_ms, deleted}
--   code: deleted | no_run (none of the keys existed) | active (state not ended) | busy (a worker heard from lately)
--   start_ms, finished_ms: -1 when absent; deleted: how many keys went
-- Errors: none of its own (a run whose ctl is missing has its other keys deleted: no_run if there were none)
-- @include lib/now.lua
local now = now_ms()

local c = redis.call('HMGET', KEYS[1], 'state', 'start_ms', 'finished_ms', 'ttl_ms')
local state = c[1] or ''
local start, finished = tonumber(c[2] or '-1'), tonumber(c[3] or '-1')
if state == 'pending' or state == 'running' or state == 'stopping' then
  return {'active', state, start, finished, 0}
end
if c[1] then
  local ttl = tonumber(c[4] or '3000')
  if finished >= 0 and now < finished + math.max(3 * ttl, 10000) then return {'busy', state, start, finished, 0} end
  if redis.call('ZCOUNT', KEYS[5], now - 3 * ttl, '+inf') > 0 then return {'busy', state, start, finished, 0} end
end
local deleted = redis.call('DEL', unpack(KEYS))
return {deleted > 0 and 'deleted' or 'no_run', state, start, finished, deleted}
