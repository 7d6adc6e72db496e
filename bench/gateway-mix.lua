-- wrk script for bench/trace-overhead.ts: the gateway's traffic with the leaking module
-- active. Every Nth request (N = first script argument, default 100) is /leak-drop (the
-- test module creates a pool and drops it: a leak); the others are /gw/bench, proxied to
-- the upstream nginx. The test module cannot proxy, so no single location does both.
-- Usage: wrk -t1 -c16 -d9s -s bench/gateway-mix.lua http://127.0.0.1:PORT -- 100
local every = 100
local n = 0
local gw, leak

function init(args)
  every = tonumber(args[1] or "100") or 100
  gw = wrk.format("GET", "/gw/bench")
  leak = wrk.format("GET", "/leak-drop")
end

function request()
  n = n + 1
  if every > 0 and n % every == 0 then return leak end
  return gw
end
