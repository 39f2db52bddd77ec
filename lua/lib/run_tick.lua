-- run_tick(now, start, tick, claimed): the run's current tick. Redis' clock decides it, but
-- it never goes back past the run's own history: the highest tick with a grant
-- (ctl.claimed_tick, `claimed`) was the current or the next tick when it was granted, so
-- the current tick is at least claimed - 1, whatever the clock says after it steps back
-- (NTP, a restored VM). Ticks below are over: never claimed again, their plan never rewritten.
local function run_tick(now, start, tick, claimed)
  return math.max(math.floor((now - start) / tick), (claimed or -1) - 1)
end
