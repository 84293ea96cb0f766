-- GET the command queue with a rotating device token. args: tokens_file
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "common.lua")

local tokens, n

function init(args)
  tokens = read_lines(args[1])
  n = tid * 7919
end

function request()
  n = n + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]})
end
