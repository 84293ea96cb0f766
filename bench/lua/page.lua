-- GET one admin page with a logged-in session. args: cookie_header user_agent
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "common.lua")

local req

function init(args)
  req = wrk.format("GET", nil, {["Cookie"] = args[1], ["User-Agent"] = args[2]})
end

function request()
  return req
end
