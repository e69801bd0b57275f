-- wrk script: the benchmark's requests, but no value ever repeats.
--
-- Barbican remembers what the WAF found in short values it has seen (user agents, header
-- values, arguments: crates/waf/src/engine/memo.rs). The fixed requests of waf.sh repeat every
-- value, the best case for that memory; with this script each request brings a user agent,
-- query values and JSON string values no earlier request had, the worst case (field names and
-- numbers stay, as in real traffic).
--
--   wrk ... -s distinct.lua URL                   GET: numbered User-Agent and query values
--   wrk ... -s distinct.lua URL -- post.lua       the POST of post.lua, its strings numbered
local n = 0
local ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"

function init(args)
   if args[1] then
      dofile(args[1])
   end
   -- Threads count apart; a random start keeps their numbers (and reruns) apart too.
   math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
   n = math.random(1, 1e9)
end

function request()
   n = n + 1
   local headers = {}
   for k, v in pairs(wrk.headers) do
      headers[k] = v
   end
   headers["User-Agent"] = ua .. " r/" .. n
   if wrk.body then
      -- Strings followed by `,`, `]` or `}` are values (names are followed by `:`).
      local body = wrk.body:gsub('"([^"]*)"([,%]}])', '"%1-' .. n .. '"%2')
      return wrk.format(nil, nil, headers, body)
   end
   return wrk.format(nil, wrk.path:gsub("=([^&]*)", "=%1" .. n), headers)
end
