package session

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store. Each runs atomically on the node that
// holds its keys, all of them in one hash slot: a session's record and its
// shard's deadline set share the shard's hash tag, and a user's index is
// alone in the user's slot. go-redis's Script sends EVALSHA and falls back
// to EVAL once when a node does not know the script yet (a restart, a new
// node), so each script crosses the network whole only once per node.
//
// A record is a hash: the metadata fields below, and "v:"+name for each
// value, holding its JSON. Times and durations are microseconds since the
// Unix epoch, PostgreSQL's resolution. Two more fields mark a key that is
// not a session: "m" (moved) on a record that Rekey took, holding the key it
// moves to, and "x" on the short-lived tombstone DestroyUser leaves on a key
// that a Rekey may be about to create. A hash without "e", or with "m", is
// no session.
//
//	u   user ID (absent: anonymous)     p   persistent, "1" or "0"
//	c   created                         e   absolute expiry
//	it  the session's own idle timeout  ie  idle expiry (absent: none)
//	ls  last seen                       ua  user agent    ip  IP address

// luaPrelude is the helpers every script shares.
const luaPrelude = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function num(x) return string.format('%.0f', x) end
local function deadline(e, ie)
  if ie > 0 and ie < e then return ie end
  return e
end
local function member(key, user) return #key .. ':' .. key .. user end
local function expire_at(k, d) redis.call('PEXPIREAT', k, num(math.ceil(d / 1000))) end
local meta = {'u', 'p', 'c', 'e', 'it', 'ie', 'ls', 'ua', 'ip', 'm'}
local function hmulti(cmd, k, list)
  for j = 1, #list, 500 do
    redis.call(cmd, k, unpack(list, j, math.min(j + 499, #list)))
  end
end
local function number(rk, field, v)
  local n = tonumber(v)
  if n == nil then error({err = 'ERR session record ' .. rk .. ' does not decode: field ' .. field .. ' is not a number'}) end
  return n
end
`

// luaChange applies a Change, encoded in ARGV from index i by
// redisChangeArgs, to the live record rk at time now. It returns nil when
// rk holds no live session, false when the values would exceed the size
// cap (having changed nothing), and otherwise the user before, the user
// after, the new deadline, the old one and the new metadata (as HMGET of
// meta). A change that sets, deletes and clears no value writes only the
// metadata: a touch leaves the values alone. The common write is two
// commands, an HMGET and an HSET.
const luaChange = `
local function change(rk, now, i)
  local r = redis.call('HMGET', rk, unpack(meta))
  if not r[4] or r[10] then return nil end
  local e, it, ie = number(rk, 'e', r[4]), number(rk, 'it', r[5] or '0'), number(rk, 'ie', r[6] or '0')
  local user = r[1] or ''
  local olddl = deadline(e, ie)
  if olddl <= now then return nil end
  local clear = ARGV[i] == '1'
  local nd = tonumber(ARGV[i + 1])
  i = i + 2
  local dels, deleted = {}, {}
  for j = 1, nd do
    dels[j] = 'v:' .. ARGV[i]
    deleted[ARGV[i]] = true
    i = i + 1
  end
  local ns = tonumber(ARGV[i])
  i = i + 1
  local sets, f = {}, {}
  for j = 1, ns do
    sets[ARGV[i]] = ARGV[i + 1]
    f[#f + 1] = 'v:' .. ARGV[i]
    f[#f + 1] = ARGV[i + 1]
    i = i + 2
  end
  local userset, newuser = ARGV[i] == '1', ARGV[i + 1]
  local pers, exp = ARGV[i + 2], ARGV[i + 3]
  local itset, newit = ARGV[i + 4] == '1', tonumber(ARGV[i + 5])
  local cfgidle, maxsize, touch = tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8])
  if maxsize > 0 and ns > 0 then
    local size = 2
    if not clear then
      local all = redis.call('HGETALL', rk)
      for j = 1, #all, 2 do
        local name = all[j]
        if string.sub(name, 1, 2) == 'v:' then
          name = string.sub(name, 3)
          if not deleted[name] and sets[name] == nil then size = size + #name + #all[j + 1] + 4 end
        end
      end
    end
    for name, v in pairs(sets) do size = size + #name + #v + 4 end
    if size > maxsize then return false end
  end
  if clear then
    local vs = {}
    for _, name in ipairs(redis.call('HKEYS', rk)) do
      if string.sub(name, 1, 2) == 'v:' then vs[#vs + 1] = name end
    end
    hmulti('HDEL', rk, vs)
  end
  hmulti('HDEL', rk, dels)
  local olduser = user
  if userset then
    user = newuser
    if user == '' then redis.call('HDEL', rk, 'u') else f[#f + 1] = 'u'; f[#f + 1] = user end
    r[1] = user ~= '' and user
  end
  if itset then
    it = newit
    if it == 0 then redis.call('HDEL', rk, 'it') else f[#f + 1] = 'it'; f[#f + 1] = num(it) end
    r[5] = it > 0 and num(it)
  end
  if exp ~= '' then
    e = tonumber(exp)
    r[4] = exp
    f[#f + 1] = 'e'; f[#f + 1] = exp
  end
  local idle = it
  if idle == 0 then idle = cfgidle end
  if idle > 0 then
    -- Held back until touch of the idle window has passed (Change.TouchInterval),
    -- unless the slide brings the expiry forward.
    local slid = now + idle
    if ie == 0 or ie > slid or slid - ie >= touch then ie = slid end
  end
  if ie > e then ie = e end
  r[7] = num(now)
  f[#f + 1] = 'ls'; f[#f + 1] = r[7]
  if ie > 0 then
    r[6] = num(ie)
    f[#f + 1] = 'ie'; f[#f + 1] = r[6]
  end
  if pers ~= '' then
    r[2] = pers
    f[#f + 1] = 'p'; f[#f + 1] = pers
  end
  hmulti('HSET', rk, f)
  return {olduser, user, deadline(e, ie), olddl, r}
end
`

// luaWrite stores the record whose fields are ARGV from index i in rk,
// replacing whatever marker was there, and indexes its deadline d as
// member m in the deadline set dk.
const luaWrite = `
local function write(rk, dk, d, m, i)
  if redis.call('EXISTS', rk) == 1 then redis.call('DEL', rk) end
  local f = {}
  for j = i, #ARGV do f[#f + 1] = ARGV[j] end
  hmulti('HSET', rk, f)
  expire_at(rk, d)
  redis.call('ZADD', dk, num(d), m)
end
`

var (
	// redisInsert: KEYS record, deadlines; ARGV deadline (microseconds),
	// member, deadline (milliseconds, rounded up), then the fields, "e"
	// first. Returns 0 if a record (live, expired or moved) holds the key.
	// HSETNX of "e" is the check and the first write in one command; a
	// tombstone's "x" may stay beside the new record, where nothing reads
	// it. Four commands in all: this is every new session's cost.
	redisInsert = redis.NewScript(`
local rk = KEYS[1]
if redis.call('HSETNX', rk, 'e', ARGV[5]) == 0 then return 0 end
local n = #ARGV
for j = 6, n, 1000 do redis.call('HSET', rk, unpack(ARGV, j, math.min(j + 999, n))) end
redis.call('PEXPIREAT', rk, ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
`)

	// redisApply: KEYS record, deadlines; ARGV key, change. Returns
	// {1, now, metadata, user before}, {0} for no live session, {-1} for
	// too large. The key's TTL and the deadline set change only when the
	// deadline or the user does.
	redisApply = redis.NewScript(luaPrelude + luaChange + `
local rk, dk, key = KEYS[1], KEYS[2], ARGV[1]
local now = now_us()
local r = change(rk, now, 2)
if r == nil then return {0} end
if r == false then return {-1} end
if r[3] ~= r[4] then expire_at(rk, r[3]) end
if r[1] ~= r[2] then
  redis.call('ZREM', dk, member(key, r[1]))
  redis.call('ZADD', dk, num(r[3]), member(key, r[2]))
elseif r[3] ~= r[4] then
  redis.call('ZADD', dk, num(r[3]), member(key, r[2]))
end
return {1, num(now), r[5], r[1]}
`)

	// redisSet is redisApply for the changes most requests make: values
	// set and nothing else, or nothing at all (a touch). It answers as
	// redisApply does with half its work: three commands (TIME, HMGET,
	// HSET) unless the deadline moves. KEYS record, deadlines; ARGV key,
	// configured idle timeout, the touch interval, the size cap, then name
	// and value pairs.
	redisSet = redis.NewScript(`
local rk = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = redis.call('HMGET', rk, 'u', 'p', 'c', 'e', 'it', 'ie', 'ls', 'ua', 'ip', 'm')
if not r[4] or r[10] then return {0} end
local e, it, ie = tonumber(r[4]), tonumber(r[5] or '0'), tonumber(r[6] or '0')
if e == nil or it == nil or ie == nil then error({err = 'ERR session record ' .. rk .. ' does not decode'}) end
local old = e
if ie > 0 and ie < e then old = ie end
if old <= now then return {0} end
local maxsize = tonumber(ARGV[4])
if maxsize > 0 and #ARGV > 4 then
  local sets, size = {}, 2
  for j = 5, #ARGV, 2 do sets[ARGV[j]] = ARGV[j + 1] end
  local all = redis.call('HGETALL', rk)
  for j = 1, #all, 2 do
    local name = all[j]
    if string.sub(name, 1, 2) == 'v:' and sets[string.sub(name, 3)] == nil then
      size = size + #name - 2 + #all[j + 1] + 4
    end
  end
  for name, v in pairs(sets) do size = size + #name + #v + 4 end
  if size > maxsize then return {-1} end
end
local ls = string.format('%.0f', now)
local f = {'ls', ls}
local idle = it
if idle == 0 then idle = tonumber(ARGV[2]) end
local d = old
if idle > 0 then
  local slid = now + idle
  if ie == 0 or ie > slid or slid - ie >= tonumber(ARGV[3]) then
    ie = math.min(slid, e)
    d = ie
    r[6] = string.format('%.0f', ie)
    f[3], f[4] = 'ie', r[6]
  end
end
for j = 5, #ARGV, 2 do
  f[#f + 1] = 'v:' .. ARGV[j]
  f[#f + 1] = ARGV[j + 1]
end
for j = 1, #f, 1000 do redis.call('HSET', rk, unpack(f, j, math.min(j + 999, #f))) end
if d ~= old then
  redis.call('PEXPIREAT', rk, string.format('%.0f', math.ceil(d / 1000)))
  redis.call('ZADD', KEYS[2], string.format('%.0f', d), #ARGV[1] .. ':' .. ARGV[1] .. (r[1] or ''))
end
r[7] = ls
return {1, ls, r, r[1] or ''}
`)

	// redisTake is the first step of Rekey: on the old key's node, it
	// applies the change and turns the record into a marker ("m" = the
	// new key) that expires after ARGV[3] ms, all in one step, so that a
	// concurrent Apply to the old key finds no session from then on. The
	// marker keeps the data, for a retry of this same call (which gets it
	// again) and for redisRestore. KEYS old record, its deadlines; ARGV
	// old key, new key, marker lifetime, change. Returns {1, now, hash,
	// user before}, {0} or {-1} as redisApply.
	redisTake = redis.NewScript(luaPrelude + luaChange + `
local rk, dk, key, newkey = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local now = now_us()
local m = redis.call('HGET', rk, 'm')
if m then
  if m == newkey then return {1, num(now), redis.call('HGETALL', rk), redis.call('HGET', rk, 'u') or ''} end
  return {0}
end
local r = change(rk, now, 4)
if r == nil then return {0} end
if r == false then return {-1} end
redis.call('HSET', rk, 'm', newkey)
redis.call('PEXPIRE', rk, ARGV[3])
redis.call('ZREM', dk, member(key, r[1]), member(key, r[2]))
return {1, num(now), redis.call('HGETALL', rk), r[1]}
`)

	// redisCreate is the second step of Rekey, on the new key's node.
	// KEYS new record, its deadlines; ARGV deadline, member, created, last
	// seen, fields. Returns 1 when stored (or already stored by this same
	// call, retried), 0 when another record holds the key, -2 when
	// DestroyUser revoked the session while it moved.
	redisCreate = redis.NewScript(luaPrelude + luaWrite + `
local r = redis.call('HMGET', KEYS[1], 'e', 'x', 'c', 'ls')
if r[2] then return -2 end
if r[1] then
  if r[3] == ARGV[3] and r[4] == ARGV[4] then return 1 end
  return 0
end
write(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], 5)
return 1
`)

	// redisRestore undoes redisTake when the new key could not be
	// created: the marker becomes the session again. KEYS old record, its
	// deadlines; ARGV old key, new key.
	redisRestore = redis.NewScript(luaPrelude + `
local rk = KEYS[1]
if redis.call('HGET', rk, 'm') ~= ARGV[2] then return 0 end
redis.call('HDEL', rk, 'm')
local r = redis.call('HMGET', rk, 'e', 'ie', 'u')
local d = deadline(tonumber(r[1]), tonumber(r[2] or '0'))
expire_at(rk, d)
redis.call('ZADD', KEYS[2], num(d), member(ARGV[1], r[3] or ''))
return 1
`)

	// redisDestroy: KEYS record, deadlines; ARGV key. Returns {1,
	// metadata} for a record it deleted, live or expired, else {0}.
	redisDestroy = redis.NewScript(luaPrelude + `
local r = redis.call('HMGET', KEYS[1], unpack(meta))
if not r[4] or r[10] then return {0} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], member(ARGV[1], r[1] or ''))
return {1, r}
`)

	// redisDestroyOwned deletes a session only if it belongs to the user:
	// DestroyUser and TrimUser act on index entries that may be stale.
	// KEYS record, deadlines; ARGV key, user, tombstone lifetime. Returns
	// {1, metadata} deleted; {2, new key} for a session of the user that a
	// Rekey is moving (the marker is deleted, and the caller follows to
	// the new key); {3} for someone else's; {0} for no session, after
	// leaving a tombstone that makes a Rekey about to create this key
	// fail.
	redisDestroyOwned = redis.NewScript(luaPrelude + `
local rk = KEYS[1]
local r = redis.call('HMGET', rk, unpack(meta))
if r[10] then
  if r[1] == ARGV[2] then
    redis.call('DEL', rk)
    return {2, r[10]}
  end
  return {3}
end
if not r[4] then
  redis.call('HSET', rk, 'x', '1')
  redis.call('PEXPIRE', rk, ARGV[3])
  return {0}
end
if r[1] ~= ARGV[2] then return {3} end
redis.call('DEL', rk)
redis.call('ZREM', KEYS[2], member(ARGV[1], ARGV[2]))
return {1, r}
`)

	// redisPruneShard removes up to ARGV[2] entries of expired sessions
	// from one shard's deadline set, with the records Redis has not yet
	// expired by itself. KEYS deadlines; ARGV the shard's record prefix,
	// limit. Returns member, metadata (empty when Redis had already
	// expired the record) for each.
	redisPruneShard = redis.NewScript(luaPrelude + `
local dk, prefix = KEYS[1], ARGV[1]
local now = now_us()
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', num(now), 'LIMIT', 0, tonumber(ARGV[2]))) do
  local colon = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, colon - 1))
  local key = string.sub(m, colon + 1, colon + n)
  local rk = prefix .. key
  local r = redis.call('HMGET', rk, unpack(meta))
  local e, info, gone = tonumber(r[4]), {}, true
  if e and not r[10] then
    local d = deadline(e, tonumber(r[6] or '0') or 0)
    if d > now then
      gone = false
      if m == member(key, r[1] or '') then redis.call('ZADD', dk, num(d), m) else redis.call('ZREM', dk, m) end
    else
      redis.call('DEL', rk)
      info = r
    end
  end
  if gone then
    redis.call('ZREM', dk, m)
    out[#out + 1] = m
    out[#out + 1] = info
  end
end
return out
`)

	// redisUserIndex edits and reads one user's index. KEYS the index;
	// ARGV n, then n pairs of score and key to add, then keys to remove.
	// It drops entries whose absolute expiry has passed, keeps the index
	// alive as long as its latest entry (forever while an entry is +inf,
	// provisional), and returns {now, keys}.
	redisUserIndex = redis.NewScript(luaPrelude + `
local uk = KEYS[1]
local n = tonumber(ARGV[1])
local i = 2
for j = 1, n do
  redis.call('ZADD', uk, ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = i, #ARGV do redis.call('ZREM', uk, ARGV[j]) end
local now = now_us()
redis.call('ZREMRANGEBYSCORE', uk, '-inf', '(' .. num(now))
local top = redis.call('ZRANGE', uk, -1, -1, 'WITHSCORES')
if #top == 0 then return {num(now), {}} end
if top[2] == 'inf' then redis.call('PERSIST', uk) else expire_at(uk, tonumber(top[2])) end
return {num(now), redis.call('ZRANGE', uk, 0, -1)}
`)
)
