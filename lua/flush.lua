-- flush.lua: adds one worker's metrics of one second to that second's hash and to the run's
-- totals. Deduplicated by the sender's sequence number: a retried flush (after a timeout
-- left the outcome unknown) is counted once. The sender is a worker process in one run
-- (worker id and process nonce), so a process restarted under the same worker id starts
-- a sequence of its own and its flushes are never taken for its predecessor's. Fields named max:<name> keep the maximum;
-- fields named t:<n>:<what> are added to the run's ticks hash as <n>:<what> (per-tick
-- accounting: s started, d dropped); fields named slow:<member> add <member> to the run's
-- slowest iterations with the latency as score, keeping the 20 slowest; every other field is
-- added with HINCRBY, so Redis merges the cluster's counters and histogram buckets.
-- A long run's older state is folded (compact_ticks.lua, compact_second.lua): the counts of
-- a tick below ctl.compacted_tick go to the ticks hash's "settled:<what>", and the metrics
-- of a second below ctl.compacted_s to its minute's hash, so that a late flush is neither
-- lost nor left in a hash nobody reads.
--
-- KEYS[1] seqs: j4:{r:ID}:seqs (worker|nonce -> last sequence number)
-- KEYS[2] second: j4:{r:ID}:m:<unix second>
-- KEYS[3] totals: j4:{r:ID}:totals
-- KEYS[4] ticks: j4:{r:ID}:ticks
-- KEYS[5] slow: j4:{r:ID}:slow (zset: trace-id worker vu iteration unix-ms -> latency µs)
-- KEYS[6] ctl: j4:{r:ID}:ctl (read only: the compaction cursors)
-- KEYS[7] minute: j4:{r:ID}:m60:<the first second of the second's minute>
-- ARGV[1] sender: the caller's worker id and process nonce, worker|nonce
-- ARGV[2] seq: this flush's sequence number (increasing per sender)
-- ARGV[3] ttl_s: expiry of the second's hash, in seconds
-- ARGV[4] second: the unix second of KEYS[2]
-- ARGV[5...] field, delta: counters and histogram buckets
-- Reply: 1 when added, 0 when this sequence number was already added
-- Errors: none
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local cursors = redis.call('HMGET', KEYS[6], 'compacted_tick', 'compacted_s')
local settled_below = tonumber(cursors[1] or '0')
local second = KEYS[2]
if tonumber(ARGV[4]) < tonumber(cursors[2] or '-1') then second = KEYS[7] end
for i = 5, #ARGV, 2 do
  local field, delta = ARGV[i], ARGV[i + 1]
  if string.sub(field, 1, 2) == 't:' then
    local rest = string.sub(field, 3)
    local n, what = string.match(rest, '^(%-?%d+):(.*)$')
    if n and tonumber(n) < settled_below then rest = 'settled:' .. what end
    redis.call('HINCRBY', KEYS[4], rest, delta)
  elseif string.sub(field, 1, 5) == 'slow:' then
    redis.call('ZADD', KEYS[5], tonumber(delta), string.sub(field, 6))
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -21)
  elseif string.sub(field, 1, 4) == 'max:' then
    local v = tonumber(delta)
    for _, key in ipairs({second, KEYS[3]}) do
      local current = tonumber(redis.call('HGET', key, field) or '-1')
      if v > current then redis.call('HSET', key, field, delta) end
    end
  else
    redis.call('HINCRBY', second, field, delta)
    redis.call('HINCRBY', KEYS[3], field, delta)
  end
end
redis.call('EXPIRE', second, tonumber(ARGV[3]))
return 1
