-- SPDX-License-Identifier: Apache-2.0
-- sluice.lua - a Wireshark dissector for the Sluice device protocol (docs/protocol.md):
-- frames (u32 big-endian length + one msgpack map) reassembled over TCP, each payload
-- decoded to a tree, the fields of hello/welcome/data/ack/ping/pong/cmd/res/err as
-- filterable fields (sluice.type, sluice.dev, sluice.seq, sluice.code, ...), and the
-- device token shown masked (its first 4 characters and its length), in the tree and the
-- Info column alike.
--
-- Install: copy to ~/.local/lib/wireshark/plugins/ (the .deb puts it in the global Lua
-- plugins folder, `tshark -G folders`), or run `tshark -X lua_script:sluice.lua ...`.
-- Ports: 7000 and the demo's 7100-7101 by default (Preferences > Protocols > Sluice, or
-- Decode As). TLS ports show nothing without the session keys. Captures: a live one, or
-- `sluice-replay --pcap OUT RECORDING` (docs/recording.md).
--
-- Deliberately not here: any judgement of the protocol (the edge decides what is an
-- error; this only shows what was sent, and flags what cannot be decoded).

local sluice = Proto("sluice", "Sluice device protocol")

local MAX_DEPTH = 32 -- nesting shown; deeper is summarised

local pf = {
    len = ProtoField.uint32("sluice.len", "Frame length", base.DEC),
    dir = ProtoField.string("sluice.dir", "Direction"),
    type = ProtoField.string("sluice.type", "Type"),
    v = ProtoField.int64("sluice.v", "Version"),
    dev = ProtoField.string("sluice.dev", "Device"),
    tok = ProtoField.string("sluice.tok", "Token (masked)"),
    seq = ProtoField.uint64("sluice.seq", "Seq"),
    ts = ProtoField.int64("sluice.ts", "Device time (ms)"),
    edge = ProtoField.string("sluice.edge", "Edge"),
    hb = ProtoField.int64("sluice.hb", "Heartbeat (s)"),
    max = ProtoField.int64("sluice.max", "Max frame"),
    code = ProtoField.string("sluice.code", "Error code"),
    msg = ProtoField.string("sluice.msg", "Error message"),
    retry = ProtoField.int64("sluice.retry_ms", "Retry after (ms)"),
    id = ProtoField.string("sluice.id", "Command id"),
    ok = ProtoField.bool("sluice.ok", "OK"),
    body = ProtoField.bytes("sluice.body", "Body (msgpack)"),
    bad = ProtoField.string("sluice.bad", "Undecodable"),
}
sluice.fields = { pf.len, pf.dir, pf.type, pf.v, pf.dev, pf.tok, pf.seq, pf.ts, pf.edge, pf.hb, pf.max,
                  pf.code, pf.msg, pf.retry, pf.id, pf.ok, pf.body, pf.bad }

local ef_bad = ProtoExpert.new("sluice.bad.expert", "Sluice frame not decodable", expert.group.PROTOCOL,
                               expert.severity.WARN)
sluice.experts = { ef_bad }

sluice.prefs.ports = Pref.range("TCP ports", "7000,7100-7101", "Ports of edges speaking plain TCP", 65535)

local function mask(tok)
    return string.format("%s... (%d chars)", tok:sub(1, 4), #tok)
end

-- ---- msgpack ------------------------------------------------------------
-- decode(tvb, off, limit, depth) -> node, next offset; or nil, why.
-- node = { kind = "nil"|"bool"|"int"|"float"|"str"|"bin"|"ext"|"array"|"map",
--          value (scalars: a Lua value, UInt64/Int64 for 64-bit ints), range (TvbRange),
--          items (array: nodes; map: { {k, v}, ... }) }

local function need(off, n, limit)
    return off + n <= limit
end

local decode

local function container(tvb, off, limit, depth, start, n, is_map)
    -- every element takes at least one byte: a count beyond what is left is a lie
    if n > limit - off then return nil, "count " .. n .. " beyond the frame" end
    local items = {}
    for i = 1, n do
        local k, v, err
        k, off = decode(tvb, off, limit, depth + 1)
        if not k then return nil, off end
        if is_map then
            v, off = decode(tvb, off, limit, depth + 1)
            if not v then return nil, off end
            items[i] = { k, v }
        else
            items[i] = k
        end
    end
    return { kind = is_map and "map" or "array", items = items, range = tvb(start, off - start) }, off
end

decode = function(tvb, off, limit, depth)
    if depth > MAX_DEPTH then return nil, "nested deeper than " .. MAX_DEPTH end
    if not need(off, 1, limit) then return nil, "truncated" end
    local b = tvb(off, 1):uint()
    local start = off
    local function scalar(kind, n, value_fn)
        if not need(off + 1, n, limit) then return nil, "truncated" end
        local r = tvb(off + 1, n)
        return { kind = kind, value = value_fn(r), range = tvb(start, 1 + n) }, off + 1 + n
    end
    local function sized(kind, lenlen)
        if not need(off + 1, lenlen, limit) then return nil, "truncated" end
        local n = tvb(off + 1, lenlen):uint()
        local body = off + 1 + lenlen
        if not need(body, n, limit) then return nil, "truncated" end
        local node = { kind = kind, range = tvb(start, 1 + lenlen + n), len = n }
        if n > 0 then node.data = tvb(body, n) end
        if kind == "str" then node.value = n > 0 and tvb(body, n):string(ENC_UTF_8) or "" end
        return node, body + n
    end
    if b <= 0x7f then return { kind = "int", value = b, range = tvb(off, 1) }, off + 1 end
    if b >= 0xe0 then return { kind = "int", value = b - 256, range = tvb(off, 1) }, off + 1 end
    if b >= 0x80 and b <= 0x8f then return container(tvb, off + 1, limit, depth, start, b - 0x80, true) end
    if b >= 0x90 and b <= 0x9f then return container(tvb, off + 1, limit, depth, start, b - 0x90, false) end
    if b >= 0xa0 and b <= 0xbf then
        local n = b - 0xa0
        if not need(off + 1, n, limit) then return nil, "truncated" end
        return { kind = "str", value = n > 0 and tvb(off + 1, n):string(ENC_UTF_8) or "", range = tvb(off, 1 + n) },
               off + 1 + n
    end
    if b == 0xc0 then return { kind = "nil", value = nil, range = tvb(off, 1) }, off + 1 end
    if b == 0xc2 or b == 0xc3 then return { kind = "bool", value = b == 0xc3, range = tvb(off, 1) }, off + 1 end
    if b == 0xc4 then return sized("bin", 1) end
    if b == 0xc5 then return sized("bin", 2) end
    if b == 0xc6 then return sized("bin", 4) end
    if b == 0xc7 or b == 0xc8 or b == 0xc9 then
        local lenlen = b == 0xc7 and 1 or (b == 0xc8 and 2 or 4)
        if not need(off + 1, lenlen + 1, limit) then return nil, "truncated" end
        local n = tvb(off + 1, lenlen):uint()
        if not need(off + 2 + lenlen, n, limit) then return nil, "truncated" end
        return { kind = "ext", value = tvb(off + 1 + lenlen, 1):int(), len = n, range = tvb(start, 2 + lenlen + n) },
               off + 2 + lenlen + n
    end
    if b == 0xca then return scalar("float", 4, function(r) return r:float() end) end
    if b == 0xcb then return scalar("float", 8, function(r) return r:float() end) end
    if b == 0xcc then return scalar("int", 1, function(r) return r:uint() end) end
    if b == 0xcd then return scalar("int", 2, function(r) return r:uint() end) end
    if b == 0xce then return scalar("int", 4, function(r) return r:uint() end) end
    if b == 0xcf then return scalar("int", 8, function(r) return r:uint64() end) end
    if b == 0xd0 then return scalar("int", 1, function(r) return r:int() end) end
    if b == 0xd1 then return scalar("int", 2, function(r) return r:int() end) end
    if b == 0xd2 then return scalar("int", 4, function(r) return r:int() end) end
    if b == 0xd3 then return scalar("int", 8, function(r) return r:int64() end) end
    if b >= 0xd4 and b <= 0xd8 then
        local n = ({ 1, 2, 4, 8, 16 })[b - 0xd3]
        if not need(off + 1, 1 + n, limit) then return nil, "truncated" end
        return { kind = "ext", value = tvb(off + 1, 1):int(), len = n, range = tvb(start, 2 + n) }, off + 2 + n
    end
    if b == 0xd9 then return sized("str", 1) end
    if b == 0xda then return sized("str", 2) end
    if b == 0xdb then return sized("str", 4) end
    if b == 0xdc or b == 0xdd then
        local lenlen = b == 0xdc and 2 or 4
        if not need(off + 1, lenlen, limit) then return nil, "truncated" end
        return container(tvb, off + 1 + lenlen, limit, depth, start, tvb(off + 1, lenlen):uint(), false)
    end
    if b == 0xde or b == 0xdf then
        local lenlen = b == 0xde and 2 or 4
        if not need(off + 1, lenlen, limit) then return nil, "truncated" end
        return container(tvb, off + 1 + lenlen, limit, depth, start, tvb(off + 1, lenlen):uint(), true)
    end
    return nil, string.format("reserved byte 0x%02x", b)
end

-- A node as short text (for the tree and the Info column).
local function text(node, key)
    local k = node.kind
    if k == "nil" then return "nil" end
    if k == "str" then
        if key == "tok" then return mask(node.value) end
        return '"' .. node.value .. '"'
    end
    if k == "bin" then return string.format("bin(%d)", node.len) end
    if k == "ext" then return string.format("ext(type %d, %d bytes)", node.value, node.len) end
    if k == "array" then return string.format("array(%d)", #node.items) end
    if k == "map" then return string.format("map(%d)", #node.items) end
    return tostring(node.value)
end

local function add_tree(tree, node, label, key)
    local t = tree:add(node.range, label .. ": " .. text(node, key))
    if node.kind == "array" then
        for i, v in ipairs(node.items) do add_tree(t, v, "[" .. (i - 1) .. "]") end
    elseif node.kind == "map" then
        for _, kv in ipairs(node.items) do
            local name = kv[1].kind == "str" and kv[1].value or text(kv[1])
            add_tree(t, kv[2], name, name)
        end
    end
    return t
end

-- The typed fields of the top-level map (filterable); returns the Info text.
local INT_FIELDS = { v = pf.v, ts = pf.ts, hb = pf.hb, max = pf.max, retry_ms = pf.retry }
local STR_FIELDS = { t = pf.type, dev = pf.dev, edge = pf.edge, code = pf.code, msg = pf.msg, id = pf.id }

local function add_fields(tree, map)
    local f = {}
    for _, kv in ipairs(map.items) do
        if kv[1].kind == "str" then f[kv[1].value] = kv[2] end
    end
    for key, field in pairs(STR_FIELDS) do
        if f[key] and f[key].kind == "str" then tree:add(field, f[key].range, f[key].value) end
    end
    if f.tok and f.tok.kind == "str" then tree:add(pf.tok, f.tok.range, mask(f.tok.value)) end
    for key, field in pairs(INT_FIELDS) do
        if f[key] and f[key].kind == "int" then tree:add(field, f[key].range, Int64(tostring(f[key].value))) end
    end
    if f.seq and f.seq.kind == "int" then tree:add(pf.seq, f.seq.range, UInt64(tostring(f.seq.value))) end
    if f.ok and f.ok.kind == "bool" then tree:add(pf.ok, f.ok.range, f.ok.value) end
    if f.body then tree:add(pf.body, f.body.range) end
    local t = f.t and f.t.kind == "str" and f.t.value or "?"
    local info = t
    for _, key in ipairs({ "dev", "tok", "seq", "edge", "id", "ok", "code", "retry_ms" }) do
        if f[key] then info = info .. " " .. key .. "=" .. text(f[key], key) end
    end
    return info
end

-- ---- frames ---------------------------------------------------------------

local function frame_len(tvb, pinfo, off)
    return 4 + tvb(off, 4):uint()
end

-- The edge ports of the preference ("7000,7100-7101"), as { {lo, hi}, ... }.
local edge_ranges = {}
local function edge_port(port)
    for _, r in ipairs(edge_ranges) do
        if port >= r[1] and port <= r[2] then return true end
    end
    return false
end

local function set_info(pinfo, s)
    if tostring(pinfo.cols.protocol) == "Sluice" then
        pinfo.cols.info:append(", " .. s)
    else
        pinfo.cols.protocol = "Sluice"
        pinfo.cols.info = s
    end
end

local function dissect_frame(tvb, pinfo, tree)
    local n = tvb(0, 4):uint()
    local dir = edge_port(pinfo.dst_port) and "device -> edge" or "edge -> device"
    local st = tree:add(sluice, tvb(0, 4 + n))
    st:add(pf.len, tvb(0, 4))
    st:add(pf.dir, dir):set_generated()
    if n == 0 then
        st:add(pf.bad, tvb(0, 4), "empty frame (the edge answers err frame)")
        st:add_proto_expert_info(ef_bad, "empty frame")
        set_info(pinfo, "empty frame")
        return
    end
    local node, next_off = decode(tvb, 4, 4 + n, 0)
    if not node then
        st:add(pf.bad, tvb(4, n), next_off)
        st:add_proto_expert_info(ef_bad, "msgpack: " .. next_off)
        set_info(pinfo, "undecodable (" .. next_off .. ")")
        return
    end
    add_tree(st, node, "payload")
    if node.kind ~= "map" then
        st:add(pf.bad, node.range, "payload is not a map")
        st:add_proto_expert_info(ef_bad, "payload is not a map")
        set_info(pinfo, "not a map: " .. text(node))
        return
    end
    if next_off < 4 + n then
        st:add(pf.bad, tvb(next_off, 4 + n - next_off), "trailing bytes after the map")
        st:add_proto_expert_info(ef_bad, "trailing bytes")
    end
    local info = add_fields(st, node)
    st:append_text(": " .. info)
    set_info(pinfo, info)
end

function sluice.dissector(tvb, pinfo, tree)
    dissect_tcp_pdus(tvb, tree, 4, frame_len, dissect_frame, true)
    return tvb:len()
end

local registered
local function register_ports()
    local tcp = DissectorTable.get("tcp.port")
    if registered then tcp:remove(registered, sluice) end
    registered = tostring(sluice.prefs.ports)
    tcp:add(registered, sluice)
    edge_ranges = {}
    for part in registered:gmatch("[^,%s]+") do
        local lo, hi = part:match("^(%d+)-(%d+)$")
        lo = tonumber(lo or part)
        edge_ranges[#edge_ranges + 1] = { lo, tonumber(hi) or lo }
    end
end

function sluice.prefs_changed()
    register_ports()
end

register_ports()
