"""
The Lua scripts the Redis directory runs, and the keys they touch.

Each change is one script, so related keys never drift apart (a counter
without its record, a name without its member).  Keys shared by the whole
chat carry the hash tag C{{tcpchat}}; each room's keys carry the room's own
tag, so a Redis Cluster keeps one room in one slot and spreads the rooms.

A script that writes takes the writing node's id and a number that grows
with each request it sends: a request sent again after a lost connection
is recognised and not applied twice.  docs/scaling.md describes the design.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

GLOBAL = "{tcpchat}"
NODES = f"{GLOBAL}:nodes"  # zset: node id -> lease end (ms, Redis time)
MEMBERS = f"{GLOBAL}:members"  # hash: lower-case name -> JSON of the member
ACTIVE = f"{GLOBAL}:active"  # hash: lower-case name -> last time active (s)
ROOMS = f"{GLOBAL}:rooms"  # hash: lower-case room name -> its name
BANS = f"{GLOBAL}:bans"  # hash: network -> until (s) or ''
CONTROL = f"{GLOBAL}:control"  # stream: bans made and lifted, for every node
APPLIED = f"{GLOBAL}:applied"  # hash: node id -> last request applied
GUESTS = f"{GLOBAL}:guests"  # counter of guest names
EPOCH = f"{GLOBAL}:epoch"  # changes when Redis has lost its data


def node_key(node: str) -> str:
    """hash: C{p:PID} -> lower-case name, for each member a node holds."""
    return f"{GLOBAL}:node:{node}"


def inbox_key(node: str) -> str:
    """stream: private messages and kicks for a node's members."""
    return f"{GLOBAL}:inbox:{node}"


def room_keys(lower: str) -> tuple[str, str]:
    """A room's record (stream) and its meta hash, in one slot."""
    return f"tcpchat:room:{{{lower}}}:log", f"tcpchat:room:{{{lower}}}:meta"


def writers_key(lower: str) -> str:
    """hash: node -> its last request applied to the room (in the room's slot)."""
    return f"tcpchat:room:{{{lower}}}:writers"


@dataclass(frozen=True)
class Script:
    name: str
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)  # (Redis names a script by its SHA-1)


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


def _once(applied: str) -> str:
    """A script's start: a request of a node applied already is answered C{dup}."""
    return f"""
local applied = tonumber(redis.call('HGET', {applied}, ARGV[1]) or '0')
if tonumber(ARGV[2]) <= applied then return {{'dup'}} end
redis.call('HSET', {applied}, ARGV[1], ARGV[2])
"""


#: The member named ARGV[3] (KEYS[1] the members), and its node's inbox.
_MEMBER_INBOX = """
local m = redis.call('HGET', KEYS[1], ARGV[3])
if not m then return {'none'} end
local d = cjson.decode(m)
local inbox = '{tcpchat}:inbox:' .. d.node
"""

#: KEYS members, node hash, guests, active.
#: ARGV node, pid, name ('' for a guest), lower name, room, op, address, now,
#: '1' when telling a Redis that lost its data of a member already here.
ENTER = Script(
    "enter",
    """
local prior = redis.call('HGET', KEYS[2], 'p:' .. ARGV[2])
if prior then
  local m = redis.call('HGET', KEYS[1], prior)
  if m then return {'ok', cjson.decode(m).name} end
end
local name, lower = ARGV[3], ARGV[4]
if name == '' then
  repeat
    name = 'guest' .. redis.call('INCR', KEYS[3])
    lower = name
  until redis.call('HEXISTS', KEYS[1], lower) == 0
elseif redis.call('HEXISTS', KEYS[1], lower) == 1 then
  return {'taken'}
end
local number = ARGV[9] == '1' and string.match(lower, '^guest(%d+)$')
if number and tonumber(number) > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], number)  -- (a guest name told again: new guests pass it)
end
redis.call('HSET', KEYS[1], lower, cjson.encode({node=ARGV[1], pid=ARGV[2], name=name,
  room=ARGV[5], op=ARGV[6], addr=ARGV[7], since=ARGV[8]}))
redis.call('HSET', KEYS[2], 'p:' .. ARGV[2], lower)
redis.call('HSET', KEYS[4], lower, ARGV[8])
return {'ok', name}
""",
)

#: KEYS members, node hash, active.  ARGV node, pid.
LEAVE = Script(
    "leave",
    """
local lower = redis.call('HGET', KEYS[2], 'p:' .. ARGV[2])
if not lower then return 0 end
redis.call('HDEL', KEYS[2], 'p:' .. ARGV[2])
local m = redis.call('HGET', KEYS[1], lower)
if m then
  local d = cjson.decode(m)
  if d.node == ARGV[1] and d.pid == ARGV[2] then
    redis.call('HDEL', KEYS[1], lower)
    redis.call('HDEL', KEYS[3], lower)
  end
end
return 1
""",
)

#: KEYS members, node hash, active.  ARGV node, pid, new name, its lower case, now.
RENAME = Script(
    "rename",
    """
local lower = redis.call('HGET', KEYS[2], 'p:' .. ARGV[2])
if not lower then return {'gone'} end
local m = redis.call('HGET', KEYS[1], lower)
if not m then return {'gone'} end
if ARGV[4] ~= lower and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then return {'taken'} end
local d = cjson.decode(m)
d.name = ARGV[3]
redis.call('HDEL', KEYS[1], lower)
redis.call('HSET', KEYS[1], ARGV[4], cjson.encode(d))
redis.call('HDEL', KEYS[3], lower)
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[2], 'p:' .. ARGV[2], ARGV[4])
return {'ok'}
""",
)

#: KEYS members, node hash, rooms.
#: ARGV node, pid, room's lower name, its name, may create ('1'/'0'), most rooms.
MOVE = Script(
    "move",
    """
local lower = redis.call('HGET', KEYS[2], 'p:' .. ARGV[2])
if not lower then return {'gone'} end
local m = redis.call('HGET', KEYS[1], lower)
if not m then return {'gone'} end
local display = redis.call('HGET', KEYS[3], ARGV[3])
local created = '0'
if not display then
  if ARGV[5] ~= '1' then return {'nocreate'} end
  if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[6]) then return {'full'} end
  display = ARGV[4]
  created = '1'
  redis.call('HSET', KEYS[3], ARGV[3], display)
end
local d = cjson.decode(m)
d.room = display
redis.call('HSET', KEYS[1], lower, cjson.encode(d))
return {'ok', display, created}
""",
)

#: One room's change, appended to its ordered record.
#: KEYS log, meta, writers.
#: ARGV node, request, kind, sender, token, text, other, at, lines, record
#: size, history lines, room name, flag (an operator's topic; a permanent
#: room; the lock).
#: Kinds: m message, a action, j joined, i came in, l left, o went out,
#: r renamed, t topic, n notice; without an entry: k lock, R restore.
#: Answers C{ok, entry id, room seq, topic (on arrival) or 'closed' (the
#: last one left a room where nothing was said), members (on arrival), the
#: newest history entries...}, or C{dup} (applied already; an arrival sent
#: again gets its first answer again), C{locked}, C{noroom}.
#:
#: The meta hash holds, beside the room's own fields, C{a:TOKEN} (the
#: arrival entry of each member here: a leave counts a member out only if
#: its arrival was counted).  The writers hash holds the last request of
#: each node applied here; it lives an hour after the last write, as a
#: request is sent again only within an outage.
ROOM = Script(
    "room",
    """
local log, meta, writers = KEYS[1], KEYS[2], KEYS[3]
local kind, token = ARGV[3], ARGV[5]

local function arrival(id)
  local result = {'ok', id, 0, redis.call('HGET', meta, 'topic') or '',
    tonumber(redis.call('HGET', meta, 'members') or '0')}
  local entry = redis.call('XRANGE', log, id, id)
  if #entry > 0 then result[3] = tonumber(entry[1][2][14]) end
  local want = tonumber(ARGV[11])
  local got, scanned, from = 0, 0, id
  while got < want and scanned < 5000 do
    local chunk = redis.call('XREVRANGE', log, '(' .. from, '-', 'COUNT', 200)
    if #chunk == 0 then break end
    for _, e in ipairs(chunk) do
      scanned = scanned + 1
      from = e[1]
      local f = e[2]
      if f[2] == 'm' or f[2] == 'a' then
        table.insert(result, e)
        got = got + tonumber(f[18])
        if got >= want then break end
      end
    end
  end
  return result
end

local last = redis.call('HGET', writers, ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  if kind == 'j' or kind == 'i' then
    local id = redis.call('HGET', meta, 'a:' .. token)
    if id then return arrival(id) end
  end
  return {'dup'}
end
if kind == 'n' and redis.call('EXISTS', meta) == 0 then return {'noroom'} end
redis.call('HSET', writers, ARGV[1], ARGV[2])
redis.call('PEXPIRE', writers, 3600000)
if kind == 't' then
  if ARGV[13] ~= '1' and redis.call('HGET', meta, 'locked') == '1' then return {'locked'} end
  redis.call('HSET', meta, 'topic', ARGV[6])
elseif kind == 'k' then
  redis.call('HSET', meta, 'locked', ARGV[13])
  return {'ok'}
elseif kind == 'R' then
  if redis.call('HSETNX', meta, 'a:' .. token, '0-1') == 1 then
    redis.call('HINCRBY', meta, 'members', 1)
  end
  redis.call('PERSIST', meta)
  redis.call('PERSIST', log)
  return {'ok'}
elseif kind == 'j' or kind == 'i' then
  redis.call('HINCRBY', meta, 'members', 1)
  redis.call('HSET', meta, 'name', ARGV[12])
  if ARGV[13] == '1' then redis.call('HSET', meta, 'permanent', '1') end
end
local nl = tonumber(ARGV[9])
local q = redis.call('HINCRBY', meta, 'seq', 1)
local total = q
if nl > 0 then
  total = redis.call('HINCRBY', meta, 'lines', nl)
  redis.call('HSETNX', meta, 'said', '1')
else
  total = tonumber(redis.call('HGET', meta, 'lines') or '0')
end
local id = redis.call('XADD', log, 'MAXLEN', '~', ARGV[10], '*',
  'k', kind, 's', ARGV[4], 'p', token, 'x', ARGV[6], 'o', ARGV[7], 'at', ARGV[8],
  'q', q, 'l', total, 'n', nl)
if kind == 'j' or kind == 'i' then
  redis.call('HSET', meta, 'a:' .. token, id)
  redis.call('PERSIST', log)
  redis.call('PERSIST', meta)
  return arrival(id)
end
local result = {'ok', id, q, '', 0}
if (kind == 'l' or kind == 'o') and redis.call('HDEL', meta, 'a:' .. token) == 1 then
  local members = redis.call('HINCRBY', meta, 'members', -1)
  if members <= 0 then
    redis.call('HSET', meta, 'members', 0)
    local topic = redis.call('HGET', meta, 'topic') or ''
    if topic == '' and redis.call('HGET', meta, 'permanent') ~= '1' then
      if redis.call('HGET', meta, 'said') ~= '1' then
        redis.call('DEL', log, meta, writers)
        result[4] = 'closed'
      else
        redis.call('PEXPIRE', log, ARGV[14])
        redis.call('PEXPIRE', meta, ARGV[14])
      end
    end
  end
end
return result
""",
)

#: KEYS members, applied.  ARGV node, request, target's lower name, sender, text, at.
WHISPER = Script(
    "whisper",
    _once("KEYS[2]")
    + _MEMBER_INBOX
    + """redis.call('XADD', inbox, 'MAXLEN', '~', 1000, '*', 'k', 'w', 's', ARGV[4], 't', d.name,
  'x', ARGV[5], 'at', ARGV[6])
redis.call('PEXPIRE', inbox, 60000)
return {'ok', d.name}
""",
)

#: KEYS members, applied.  ARGV node, request, target's lower name, why, notice.
KICK = Script(
    "kick",
    _once("KEYS[2]")
    + _MEMBER_INBOX
    + """redis.call('XADD', inbox, 'MAXLEN', '~', 1000, '*', 'k', 'k', 't', d.pid, 'o', ARGV[4],
  'x', ARGV[5])
redis.call('PEXPIRE', inbox, 60000)
return {'ok', d.name}
""",
)

#: KEYS bans, control, applied.  ARGV node, request, network, until ('' none),
#: operator's token ('' to lift the ban), operator's name.
BAN = Script(
    "ban",
    _once("KEYS[3]")
    + """if ARGV[5] == '' then
  if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then return {'none'} end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'k', 'u', 'x', ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'k', 'b', 'x', ARGV[3], 'o', ARGV[4],
    'p', ARGV[5], 's', ARGV[6])
end
return {'ok'}
""",
)

#: KEYS nodes, node hash, inbox, epoch.
#: ARGV node, lease ms, keep ms (the inbox's), first ('1'/'0'), the epoch
#: the node knows.  (The node hash has no time to live: REAP or BYE end it.)
#: A heartbeat from before Redis lost its data (held through the outage)
#: is C{stale}: the node tells Redis again who is here, then beats anew.
HEARTBEAT = Script(
    "heartbeat",
    _NOW
    + """
if redis.call('GET', KEYS[4]) ~= ARGV[5] then return 'stale' end
if ARGV[4] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'reaped' end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 'ok'
""",
)

#: KEYS nodes, members, active, applied.  ARGV this node.
#: The first node whose lease has ended: its members' names freed, and
#: returned (node, name, room, pid, ...) for their rooms to hear they left.
REAP = Script(
    "reap",
    _NOW
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #dead == 0 or dead[1] == ARGV[1] then return {} end
local d = dead[1]
local hash = '{tcpchat}:node:' .. d
local out = {d}
local fields = redis.call('HGETALL', hash)
for i = 1, #fields, 2 do
  local lower = fields[i + 1]
  local m = redis.call('HGET', KEYS[2], lower)
  if m then
    local x = cjson.decode(m)
    if x.node == d then
      redis.call('HDEL', KEYS[2], lower)
      redis.call('HDEL', KEYS[3], lower)
      table.insert(out, x.name)
      table.insert(out, x.room)
      table.insert(out, x.pid)
    end
  end
end
redis.call('DEL', hash, '{tcpchat}:inbox:' .. d)
redis.call('ZREM', KEYS[1], d)
redis.call('HDEL', KEYS[4], d)
return out
""",
)

#: KEYS nodes, node hash, inbox, applied, members, active.  ARGV node.
#: A node stopping: whoever it still holds is freed and returned (name,
#: room, pid, ...) for their rooms to hear they left.
BYE = Script(
    "bye",
    """
local out = {}
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local m = redis.call('HGET', KEYS[5], fields[i + 1])
  if m then
    local x = cjson.decode(m)
    if x.node == ARGV[1] then
      redis.call('HDEL', KEYS[5], fields[i + 1])
      redis.call('HDEL', KEYS[6], fields[i + 1])
      table.insert(out, x.name)
      table.insert(out, x.room)
      table.insert(out, x.pid)
    end
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
-- (the inbox stays a moment: the node reads it until it closes)
redis.call('PEXPIRE', KEYS[3], 10000)
redis.call('HDEL', KEYS[4], ARGV[1])
return out
""",
)

#: KEYS members, active.  ARGV lower name, time, ...: when members were last
#: active (only those still here: a name gone meanwhile is not written back).
TOUCH = Script(
    "touch",
    """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 'ok'
""",
)

ALL = (ENTER, LEAVE, RENAME, MOVE, ROOM, WHISPER, KICK, BAN, HEARTBEAT, REAP, BYE, TOUCH)
