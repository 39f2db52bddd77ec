-- identity.lua: one live process per worker id. A worker process registers its id with a
-- nonce of its own and renews the registration while it runs; a second process that asks
-- for an id held by another nonce is told who holds it and for how long, so it can wait
-- for a dead predecessor's registration to lapse (a restart under the same id) or refuse
-- to start next to a live one.
--
-- KEYS[1] identity: j4:worker:<id>
-- ARGV[1] op: claim | release
-- ARGV[2] nonce: the calling process' nonce
-- ARGV[3] ttl_ms: how long the registration lasts without another claim
-- Reply: {1, ttl_ms} when the caller holds the id (claimed or renewed; {1, 0} on release),
--        {0, ms left} when another process holds it
-- Errors: none
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'release' then
  if current == ARGV[2] then redis.call('DEL', KEYS[1]) end
  return {1, 0}
end
if current and current ~= ARGV[2] then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return {1, tonumber(ARGV[3])}
