-- now_ms(): Redis' own clock in milliseconds (every deadline J4 keeps is on this clock).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
