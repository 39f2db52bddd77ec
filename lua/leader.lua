-- leader.lua: the supervisors' leadership lease. One key holds holder|token with a TTL
-- (server clock); only the holder with the same token may renew or resign.
--
-- KEYS[1] leader: j4:leader
-- ARGV[1] op: acquire | renew | resign
-- ARGV[2] holder: the supervisor's id
-- ARGV[3] token: the supervisor's token for this term
-- ARGV[4] ttl_ms: lease length
-- Reply: {1, holder} when the caller leads (or resigned), {0, current holder, ms left} otherwise
-- Errors: none
local mine = ARGV[2] .. '|' .. ARGV[3]
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'resign' then
  if current == mine then redis.call('DEL', KEYS[1]) return {1, ARGV[2]} end
  return {0, current or '', 0}
end
if not current and ARGV[1] == 'acquire' then
  redis.call('SET', KEYS[1], mine, 'PX', tonumber(ARGV[4]))
  return {1, ARGV[2]}
end
if current == mine then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {1, ARGV[2]}
end
local holder = current and (string.match(current, '^(.*)|') or current) or ''
return {0, holder, redis.call('PTTL', KEYS[1])}
