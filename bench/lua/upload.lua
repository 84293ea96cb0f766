-- POST readings with a rotating device token, a JSON body and a fresh Idempotency-Key.
-- args: tokens_file readings_per_request run_id base_epoch_seconds
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "common.lua")

local tokens, bodies, n, run_id

local function body_for(batch, base)
  local items = {}
  for i = 1, batch do
    local t = os.date("!%Y-%m-%dT%H:%M:%SZ", base + i)
    local metric = (i % 2 == 0) and "humidity" or "temperature"
    items[i] = string.format('{"metric":"%s","value":%.2f,"ts":"%s"}', metric, 20 + (i % 97) / 10, t)
  end
  return '{"readings":[' .. table.concat(items, ",") .. ']}'
end

function init(args)
  tokens = read_lines(args[1])
  local batch = tonumber(args[2])
  run_id = args[3]
  local base = tonumber(args[4]) - 600
  bodies = {}
  for b = 1, 16 do bodies[b] = body_for(batch, base + b * batch + tid) end
  n = tid * 7919
end

function request()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = "Bearer " .. tokens[n % #tokens + 1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run_id .. "-" .. tid .. "-" .. n,
  }, bodies[n % #bodies + 1])
end
