-- GET one admin page with a logged-in session. args: cookie_header user_agent [live_version]
-- With live_version the request is a page poller's (portal/admin/live.py).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "common.lua")

local req

function init(args)
  local headers = {["Cookie"] = args[1], ["User-Agent"] = args[2]}
  if args[3] ~= nil then
    headers["X-Portal-Live-Version"] = args[3]
    headers["HX-Request"] = "true"
  end
  req = wrk.format("GET", nil, headers)
end

function request()
  return req
end
