//! The Lua scripts that make each step one atomic step in Redis. Redis runs a script to
//! the end before it serves anyone else, so a post is stored, trimmed, remembered by its
//! `client_id` and announced as one thing that either happened or did not; and two nodes
//! sweeping the same room cannot announce the same leave twice.
//!
//! Each is loaded once per connection (`SCRIPT LOAD`) and then called by its SHA1. A Redis
//! that forgot them (`SCRIPT FLUSH`, a failover to a replica that never loaded them) answers
//! `NOSCRIPT`: the command is sent once more as `EVAL` with the script's text, which also
//! puts the script back in Redis's cache for the next `EVALSHA`.

/// `post(KEYS: epoch, seq, log, bytes, cid; ARGV: from, text, time, client_id,
/// max_messages, max_bytes, cid_ttl, new_epoch, channel, overhead, announce)` →
/// `{epoch, seq, duplicate, announcement}`. Trims the history by count and by weight
/// exactly as every node trims its copy (oldest first, the newest always kept), then
/// announces `m <epoch> <seq> <time> <from length> <from><text>`.
///
/// With `announce` `0` (`--redis-replicas`) it announces nothing and returns the
/// announcement instead (for a duplicate, the first post's, if the history still holds
/// it): the node publishes it once replicas hold the post, so that no node ever shows a
/// message a failover can take back (its sequence number would be given again, to another
/// message, which every node that showed the first would then drop). Otherwise the
/// announcement returned is empty.
pub const POST: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[8], 'NX')
  epoch = redis.call('GET', KEYS[1])
end
if ARGV[4] ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    -- A write, though nothing new is stored: a WAIT after this reply then covers the
    -- first post of this client_id too (WAIT counts from the connection's last write).
    redis.call('EXPIRE', KEYS[5], tonumber(ARGV[7]))
    local again = ''
    if ARGV[11] == '0' then
      -- The first post may have been refused before it was announced: announce it now.
      local entry = redis.call('XRANGE', KEYS[3], seen .. '-0', seen .. '-0')[1]
      if entry then
        local f = entry[2]
        again = 'm ' .. epoch .. ' ' .. seen .. ' ' .. f[6] .. ' ' .. #f[2] .. ' ' .. f[2] .. f[4]
      end
    end
    return {epoch, tonumber(seen), 1, again}
  end
end
local seq = redis.call('INCR', KEYS[2])
local overhead = tonumber(ARGV[10])
-- A message's weight as room.rs counts it: its name and text JSON-escaped.
local function weight(from, text)
  local _, escapes = string.gsub(from .. text, '["\\\n\t]', '')
  return #from + #text + escapes + overhead
end
local w = weight(ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], seq .. '-0', 'f', ARGV[1], 't', ARGV[2], 'ts', ARGV[3], 'w', w)
local total = redis.call('INCRBY', KEYS[4], w)
local count = redis.call('XLEN', KEYS[3])
local max_count, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
while count > 1 and (count > max_count or total > max_bytes) do
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
  local fields = first[2]
  redis.call('XDEL', KEYS[3], first[1])
  -- Taken off by the weight it was counted with: its own 'w', or, for an entry stored
  -- before entries carried one, its name and text and the 96 bytes counted then.
  local counted = tonumber(fields[8]) or (#fields[2] + #fields[4] + 96)
  total = redis.call('DECRBY', KEYS[4], counted)
  count = count - 1
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[5], seq, 'EX', tonumber(ARGV[7]))
end
local announcement =
  'm ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[3] .. ' ' .. #ARGV[1] .. ' ' .. ARGV[1] .. ARGV[2]
if ARGV[11] == '0' then
  return {epoch, seq, 0, announcement}
end
redis.call('PUBLISH', ARGV[9], announcement)
return {epoch, seq, 0, ''}
"#;

/// `history(KEYS: epoch, seq, log, names; ARGV: new_epoch, first_seq, with_names,
/// channel, limit, write)` → `{epoch, seq, entries, names}`: the room's stored messages
/// from `first_seq` on (its whole history when loading, what a node missed when catching
/// up), and the names present (when asked). Asking for the names also sweeps, as
/// [`SWEEP`] does, at most `limit` names whose time is up: a node that died left them, and
/// if no node that showed them is left to sweep them, the node that finds them does.
///
/// With `write` `1` (`--redis-replicas`) it also writes the room's sequence number back as
/// it is: a write, so that the `WAIT` after it counts every post it read, whoever stored
/// it, and the node shows what it read only once replicas hold it all.
pub const HISTORY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  epoch = redis.call('GET', KEYS[1])
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[6] == '1' then
  redis.call('SET', KEYS[2], seq)
end
local entries = redis.call('XRANGE', KEYS[3], ARGV[2] .. '-0', '+')
local names = {}
if ARGV[3] == '1' then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[5]))
  for _, name in ipairs(gone) do
    redis.call('ZREM', KEYS[4], name)
  end
  if #gone > 0 then
    redis.call('PUBLISH', ARGV[4], 'l ' .. table.concat(gone, '\n'))
  end
  names = redis.call('ZRANGEBYSCORE', KEYS[4], now, '+inf')
end
return {epoch, seq, entries, names}
"#;

/// `presence(KEYS: names; ARGV: channel, name, ms, name, ms, ...)` → 0. Each name is
/// present on this node for `ms` more milliseconds: its expiry in the set becomes at least
/// that (another node may hold it longer); one that was not present (or had expired)
/// is announced as `j <name>`. Run when a name appears and, for every name a node holds,
/// every renewal period, so that a node that dies stops renewing and its names expire.
pub const PRESENCE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local joined = {}
for i = 2, #ARGV, 2 do
  local name, until_ms = ARGV[i], now + tonumber(ARGV[i + 1])
  local old = redis.call('ZSCORE', KEYS[1], name)
  if (not old) or tonumber(old) < now then
    redis.call('ZADD', KEYS[1], until_ms, name)
    joined[#joined + 1] = name
  elseif tonumber(old) < until_ms then
    redis.call('ZADD', KEYS[1], until_ms, name)
  end
end
if #joined > 0 then
  redis.call('PUBLISH', ARGV[1], 'j ' .. table.concat(joined, '\n'))
end
return 0
"#;

/// `sweep(KEYS: names; ARGV: channel, limit)` → how many left. Takes at most `limit`
/// names whose time is up and announces them in one `l <name>\n<name>...`; run by every
/// node for the rooms it serves, and atomic, so each leave is announced once.
pub const SWEEP: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, name in ipairs(gone) do
  redis.call('ZREM', KEYS[1], name)
end
if #gone > 0 then
  redis.call('PUBLISH', ARGV[1], 'l ' .. table.concat(gone, '\n'))
end
return #gone
"#;

/// Every script, in the order they are loaded at each connection.
pub const ALL: [&str; 4] = [POST, HISTORY, PRESENCE, SWEEP];

/// Their names, in the same order, for log lines.
pub const NAMES: [&str; 4] = ["post", "history", "presence", "sweep"];
