-- resign.lua: a supervisor that stops (SIGTERM, a rolling restart) gives up its hold on a
-- run at once, so that the next leader may publish its plan without waiting for the hold to
-- expire. Only the holder with the same token may resign; the holder is kept in ctl.sup
-- (the next leader's "supervisor" event names it as the previous one), its expiry is
-- set to 0.
--
-- KEYS[1] ctl: j4:{r:ID}:ctl
-- ARGV[1] holder: the supervisor's id
-- ARGV[2] token: the supervisor's token for this term
-- Reply: 1 when the hold was the caller's and is given up, else 0
-- Errors: none
if redis.call('HGET', KEYS[1], 'sup') ~= ARGV[1] .. '|' .. ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'sup_until', 0)
return 1
