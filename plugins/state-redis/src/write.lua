-- One atomic batch of state writes in daprd's layout: each key a hash {data, version}.
-- KEYS[i] is the key of operation i; ARGV holds five fields per operation:
--   kind ("set" | "del"), etag ("" = none), first-write ("1" | "0"),
--   ttl in seconds (sets only; "0" = no expiry), data (sets only).
-- Redis does not roll back a script that fails half-way, so every check runs before the first
-- write, each against the state the operations before it leave. The rules are state-common's
-- check_set / check_delete. Returns 0 when everything was applied, else the 1-based index of
-- the first operation whose ETag or first-write check failed (and nothing was written).
local version = {}
local function current(key)
  local v = version[key]
  if v == nil then
    v = redis.pcall("HGET", key, "version")
    -- Missing, not a hash (WRONGTYPE) or a hash without a version: nothing an ETag can match.
    if type(v) ~= "string" then
      v = false
    end
    version[key] = v
  end
  return v
end

for i = 1, #KEYS do
  local key, at = KEYS[i], (i - 1) * 5
  local kind, etag, first = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local have = current(key)
  if etag ~= "" then
    if have ~= etag then
      return i
    end
  elseif kind == "set" and first == "1" and have then
    return i
  end
  if kind == "set" then
    if have and not string.match(have, "^%d+$") then
      return redis.error_reply("key " .. key .. " has a version that is not a number: " .. have)
    end
    version[key] = string.format("%d", tonumber(have or "0") + 1)
  else
    version[key] = false
  end
end

for i = 1, #KEYS do
  local key, at = KEYS[i], (i - 1) * 5
  if ARGV[at + 1] == "del" then
    redis.call("DEL", key)
  else
    -- daprd replaces a key of another type the same way.
    local kind = redis.call("TYPE", key)["ok"]
    if kind ~= "hash" and kind ~= "none" then
      redis.call("DEL", key)
    end
    redis.call("HSET", key, "data", ARGV[at + 5])
    if ARGV[at + 3] == "1" then
      redis.call("HSET", key, "first-write", 0)
    end
    redis.call("HINCRBY", key, "version", 1)
    local ttl = tonumber(ARGV[at + 4])
    if ttl > 0 then
      redis.call("EXPIRE", key, ttl)
    else
      redis.call("PERSIST", key)
    end
  end
end
return 0
