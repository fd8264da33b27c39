"""A Hearth client written from docs/protocol.md alone.

Its author never read Hearth's source: everything here comes from the spec. It is kept in
the repository (run by tests/spec_client.rs, with scenario.py) so that the spec and the
server cannot drift apart: when one changes and the other does not, this client fails.
So fix the spec or the server, not this client, unless the spec itself changed. Python 3
standard library only (no MessagePack package: a minimal codec is below).

Speaks either encoding:
  * "binary": preamble 00 'HRTH' 01, then frames  length:varint kind:u8 payload,
    kind 01 = MessagePack map message, kind 02 = replication update (server -> client).
  * "json": newline-delimited JSON objects.

Keeps the replicated world (entities entered / changed / left) as protocol.md
"Replication: what you see" says, and records every rule violation it notices.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time

PREAMBLE = b"\x00HRTH\x01"
KIND_MESSAGE = 0x01
KIND_UPDATE = 0x02
MAX_FRAME = 65536


# --------------------------------------------------------------------------- #
# Minimal MessagePack                                                          #
# --------------------------------------------------------------------------- #
class MPFloat(float):
    """A float decoded from MessagePack, remembering its width (32 or 64)."""
    bits: int = 64


def _mpfloat(v: float, bits: int) -> MPFloat:
    f = MPFloat(v)
    f.bits = bits
    return f


class MPExt:
    def __init__(self, code: int, data: bytes):
        self.code, self.data = code, data

    def __repr__(self):
        return f"MPExt({self.code}, {self.data!r})"


def mp_encode(obj) -> bytes:
    out = bytearray()
    _mp_enc(obj, out)
    return bytes(out)


def _mp_enc(o, out: bytearray) -> None:
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, int):
        if 0 <= o <= 0x7F:
            out.append(o)
        elif -32 <= o < 0:
            out.append(o & 0xFF)
        elif o >= 0:
            if o <= 0xFF:
                out += b"\xcc" + struct.pack(">B", o)
            elif o <= 0xFFFF:
                out += b"\xcd" + struct.pack(">H", o)
            elif o <= 0xFFFFFFFF:
                out += b"\xce" + struct.pack(">I", o)
            elif o <= 0xFFFFFFFFFFFFFFFF:
                out += b"\xcf" + struct.pack(">Q", o)
            else:
                raise OverflowError(o)
        else:
            if o >= -0x80:
                out += b"\xd0" + struct.pack(">b", o)
            elif o >= -0x8000:
                out += b"\xd1" + struct.pack(">h", o)
            elif o >= -0x80000000:
                out += b"\xd2" + struct.pack(">i", o)
            elif o >= -0x8000000000000000:
                out += b"\xd3" + struct.pack(">q", o)
            else:
                raise OverflowError(o)
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n <= 31:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += b"\xd9" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n <= 0xFF:
            out += b"\xc4" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += o
    elif isinstance(o, (list, tuple)):
        n = len(o)
        if n <= 15:
            out.append(0x90 | n)
        elif n <= 0xFFFF:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for x in o:
            _mp_enc(x, out)
    elif isinstance(o, dict):
        n = len(o)
        if n <= 15:
            out.append(0x80 | n)
        elif n <= 0xFFFF:
            out += b"\xde" + struct.pack(">H", n)
        else:
            out += b"\xdf" + struct.pack(">I", n)
        for k, v in o.items():
            _mp_enc(k, out)
            _mp_enc(v, out)
    else:
        raise TypeError(f"cannot MessagePack-encode {type(o)}")


class MPError(ValueError):
    pass


def mp_decode(data: bytes):
    """Decode exactly one MessagePack value filling all of `data`."""
    v, pos = _mp_dec(data, 0)
    if pos != len(data):
        raise MPError(f"{len(data) - pos} trailing bytes after MessagePack value")
    return v


def _take(data: bytes, pos: int, n: int):
    if pos + n > len(data):
        raise MPError("truncated MessagePack")
    return data[pos:pos + n], pos + n


def _mp_dec(data: bytes, pos: int):
    if pos >= len(data):
        raise MPError("truncated MessagePack")
    b = data[pos]
    pos += 1
    if b <= 0x7F:
        return b, pos
    if 0x80 <= b <= 0x8F:
        return _mp_map(data, pos, b & 0x0F)
    if 0x90 <= b <= 0x9F:
        return _mp_arr(data, pos, b & 0x0F)
    if 0xA0 <= b <= 0xBF:
        raw, pos = _take(data, pos, b & 0x1F)
        return raw.decode("utf-8"), pos
    if b >= 0xE0:
        return b - 0x100, pos
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    fixed = {
        0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
        0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
    }
    if b in fixed:
        fmt, n = fixed[b]
        raw, pos = _take(data, pos, n)
        return struct.unpack(fmt, raw)[0], pos
    if b == 0xCA:
        raw, pos = _take(data, pos, 4)
        return _mpfloat(struct.unpack(">f", raw)[0], 32), pos
    if b == 0xCB:
        raw, pos = _take(data, pos, 8)
        return _mpfloat(struct.unpack(">d", raw)[0], 64), pos
    if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        lw = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        raw, pos = _take(data, pos, lw)
        n = int.from_bytes(raw, "big")
        raw, pos = _take(data, pos, n)
        return (raw.decode("utf-8") if b in (0xD9, 0xDA, 0xDB) else bytes(raw)), pos
    if b in (0xDC, 0xDD):
        raw, pos = _take(data, pos, 2 if b == 0xDC else 4)
        return _mp_arr(data, pos, int.from_bytes(raw, "big"))
    if b in (0xDE, 0xDF):
        raw, pos = _take(data, pos, 2 if b == 0xDE else 4)
        return _mp_map(data, pos, int.from_bytes(raw, "big"))
    if b in (0xD4, 0xD5, 0xD6, 0xD7, 0xD8):  # fixext 1/2/4/8/16
        n = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}[b]
        raw, pos = _take(data, pos, 1 + n)
        return MPExt(struct.unpack(">b", raw[:1])[0], bytes(raw[1:])), pos
    if b in (0xC7, 0xC8, 0xC9):  # ext 8/16/32
        lw = {0xC7: 1, 0xC8: 2, 0xC9: 4}[b]
        raw, pos = _take(data, pos, lw)
        n = int.from_bytes(raw, "big")
        raw, pos = _take(data, pos, 1 + n)
        return MPExt(struct.unpack(">b", raw[:1])[0], bytes(raw[1:])), pos
    raise MPError(f"invalid MessagePack byte 0x{b:02x}")


def _mp_arr(data, pos, n):
    out = []
    for _ in range(n):
        v, pos = _mp_dec(data, pos)
        out.append(v)
    return out, pos


def _mp_map(data, pos, n):
    out = {}
    for _ in range(n):
        k, pos = _mp_dec(data, pos)
        v, pos = _mp_dec(data, pos)
        out[k] = v
    return out, pos


# --------------------------------------------------------------------------- #
# Varints, frames, update payloads                                             #
# --------------------------------------------------------------------------- #
def varint_encode(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be unsigned")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint_decode(data: bytes, pos: int):
    result = shift = 0
    for i in range(10):
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def zigzag_encode(n: int) -> int:
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


def zigzag_decode(z: int) -> int:
    return (z >> 1) ^ -(z & 1)


def encode_frame(kind: int, payload: bytes) -> bytes:
    length = 1 + len(payload)
    if length > MAX_FRAME:
        raise ValueError("frame too large")
    return varint_encode(length) + bytes([kind]) + payload


def decode_component(encoding: str, payload: bytes):
    if encoding == "position_q64":
        zx, p = varint_decode(payload, 0)
        zy, p = varint_decode(payload, p)
        if p != len(payload):
            raise ValueError("position_q64 payload has trailing bytes")
        return {"x": zigzag_decode(zx) / 64.0, "y": zigzag_decode(zy) / 64.0}
    if encoding == "messagepack":
        return mp_decode(payload)
    return ("raw", encoding, bytes(payload))  # unknown encoding: skipped, kept raw


def decode_update(payload: bytes, components: list) -> dict:
    """Kind 02 payload -> the JSON form of an `update`."""
    pos = 0
    rnd, pos = varint_decode(payload, pos)
    sections = []
    for _ in range(2):
        count, pos = varint_decode(payload, pos)
        ents = []
        for _ in range(count):
            eid, pos = varint_decode(payload, pos)
            mask, pos = varint_decode(payload, pos)
            ent = {"id": eid}
            i = 0
            m = mask
            while m:
                if m & 1:
                    ln, pos = varint_decode(payload, pos)
                    if pos + ln > len(payload):
                        raise ValueError("component payload cut off")
                    body = payload[pos:pos + ln]
                    pos += ln
                    if i < len(components):
                        c = components[i]
                        ent[c["name"]] = decode_component(c["encoding"], body)
                    else:
                        ent[f"#component{i}"] = ("raw", None, bytes(body))
                m >>= 1
                i += 1
            ents.append(ent)
        sections.append(ents)
    left_count, pos = varint_decode(payload, pos)
    left = []
    for _ in range(left_count):
        lid, pos = varint_decode(payload, pos)
        left.append(lid)
    if pos != len(payload):
        raise ValueError(f"update payload has {len(payload) - pos} trailing bytes")
    return {"type": "update", "round": rnd, "entered": sections[0],
            "changed": sections[1], "left": left}


# --------------------------------------------------------------------------- #
# JSON helpers: keep the text of each float so the shortest-f32 rule can be checked
# --------------------------------------------------------------------------- #
class JFloat(float):
    text: str = ""


def _parse_float(s: str) -> JFloat:
    f = JFloat(s)
    f.text = s
    return f


def f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def shortest_f32_text(v: float) -> str:
    """The shortest decimal that reads back as the same f32 (whole numbers keep .0)."""
    v = f32(v)
    if v == int(v) and abs(v) < 1e16:
        return f"{int(v)}.0" if not (v == 0 and str(v).startswith("-")) else "-0.0"
    for p in range(1, 18):
        s = f"{v:.{p}g}"
        if f32(float(s)) == v:
            return s
    return repr(v)


# --------------------------------------------------------------------------- #
# The client                                                                   #
# --------------------------------------------------------------------------- #
class ConnectionClosed(Exception):
    pass


class HearthClient:
    def __init__(self, host: str, port: int, encoding: str = "binary", name: str = "",
                 timeout: float = 10.0):
        assert encoding in ("binary", "json")
        self.encoding = encoding
        self.name = name or encoding
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.wlock = threading.Lock()
        self.cond = threading.Condition()
        self.inbox: list = []           # every non-update message, in arrival order
        self.all_types: list = []       # types of everything received, in order
        self.violations: list = []      # protocol rules this client saw broken
        self.notes: list = []           # observations worth reporting
        self.closed = False
        self.close_reason = None
        # replication state
        self.you = None
        self.rate_hz = None
        self.components: list = []
        self.replication_msg = None
        self.world: dict = {}
        self.last_round = None
        self.updates = 0
        self.updates_since_replication = 0
        self.first_update_after_replication = None
        self.resume_token = None
        self.player_id = None
        self.raw_update_bytes = 0
        self._keepalive_nonces: set = set()
        if encoding == "binary":
            self._send_raw(PREAMBLE)
            answer = self._read_exact(6)
            if answer != PREAMBLE:
                raise ConnectionError(f"unexpected preamble answer {answer!r}")
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read_loop, daemon=True,
                                       name=f"reader-{self.name}")
        self.reader.start()

    # ---- low level ---------------------------------------------------------
    def _send_raw(self, data: bytes) -> None:
        with self.wlock:
            self.sock.sendall(data)

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise ConnectionClosed(f"stream ended ({len(data or b'')}/{n} bytes)")
        return data

    def _read_varint_stream(self) -> int:
        result = shift = 0
        for _ in range(10):
            b = self.rfile.read(1)
            if not b:
                raise ConnectionClosed("stream ended in a varint")
            b = b[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise ConnectionError("varint longer than 10 bytes")

    def send(self, msg: dict) -> None:
        """Send one message (a dict with "type" first)."""
        if self.encoding == "binary":
            self._send_raw(encode_frame(KIND_MESSAGE, mp_encode(msg)))
        else:
            self._send_raw(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def _read_loop(self) -> None:
        try:
            while True:
                if self.encoding == "binary":
                    length = self._read_varint_stream()
                    if length == 0 or length > MAX_FRAME:
                        self.violations.append(f"server frame of length {length}")
                        raise ConnectionClosed("bad frame length")
                    body = self._read_exact(length)
                    kind, payload = body[0], body[1:]
                    if kind == KIND_MESSAGE:
                        msg = mp_decode(payload)
                        if not isinstance(msg, dict) or "type" not in msg:
                            self.violations.append(f"message frame not a map with type: {msg!r}")
                            continue
                        if next(iter(msg)) != "type":
                            self.violations.append(f"server map does not start with type: {list(msg)}")
                        self._dispatch(msg)
                    elif kind == KIND_UPDATE:
                        self.raw_update_bytes += len(body)
                        if not self.components and self.replication_msg is None:
                            self.violations.append("binary update before any replication message")
                        self._dispatch(decode_update(payload, self.components))
                    else:
                        self.violations.append(f"unknown frame kind 0x{kind:02x}; closing")
                        raise ConnectionClosed("unknown frame kind")
                else:
                    line = self.rfile.readline(65536 + 3)
                    if not line:
                        raise ConnectionClosed("stream ended")
                    if not line.endswith(b"\n"):
                        raise ConnectionClosed("stream ended inside a line")
                    text = line.decode("utf-8").rstrip("\r\n")
                    if not text.strip():
                        continue
                    msg = json.loads(text, parse_float=_parse_float)
                    if next(iter(msg)) != "type":
                        self.notes.append(f"JSON message not starting with type: {text[:80]}")
                    msg["_raw"] = text
                    self._dispatch(msg)
        except (ConnectionClosed, OSError, ValueError) as e:
            with self.cond:
                self.closed = True
                self.close_reason = repr(e)
                self.cond.notify_all()

    # ---- replication ---------------------------------------------------------
    def _dispatch(self, msg: dict) -> None:
        with self.cond:
            t = msg.get("type")
            self.all_types.append(t)
            if t == "replication":
                self.replication_msg = msg
                self.you = msg["you"]
                self.rate_hz = msg["rate_hz"]
                self.components = list(msg["components"])
                self.world = {}          # a new replication means: clear your world
                self.last_round = None
                self.updates_since_replication = 0
                self.first_update_after_replication = None
                self.inbox.append(msg)
            elif t == "update":
                self._apply_update(msg)
            else:
                if t == "logged_in":
                    self.resume_token = msg.get("resume_token", self.resume_token)
                    self.player_id = msg.get("player_id")
                if t == "pong" and "id" not in msg and msg.get("nonce") in self._keepalive_nonces:
                    self._keepalive_nonces.discard(msg["nonce"])  # keep-alive pong
                else:
                    self.inbox.append(msg)
            self.cond.notify_all()

    def _apply_update(self, u: dict) -> None:
        if self.replication_msg is None:
            self.violations.append("update before replication")
        r = u["round"]
        if self.last_round is not None and r <= self.last_round:
            self.violations.append(f"round did not increase: {self.last_round} -> {r}")
        self.last_round = r
        self.updates += 1
        self.updates_since_replication += 1
        if self.first_update_after_replication is None:
            self.first_update_after_replication = u
        for e in u["entered"]:
            e = {k: v for k, v in e.items()}
            eid = e.pop("id")
            self.world[eid] = e                  # replace anything under that id
        for e in u["changed"]:
            e = dict(e)
            eid = e.pop("id")
            if eid not in self.world:
                self.violations.append(f"round {r}: change for entity {eid} never entered")
                self.world[eid] = {}
            self.world[eid].update(e)            # overwrite the changed components only
        for eid in u["left"]:
            if eid not in self.world:
                self.notes.append(f"round {r}: left for unknown entity {eid}")
            self.world.pop(eid, None)

    # ---- waiting ---------------------------------------------------------------
    def wait_until(self, pred, timeout: float = 5.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                if self.closed:
                    raise ConnectionClosed(f"{self.name}: closed while waiting for {what}: {self.close_reason}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: timed out waiting for {what}")
                self.cond.wait(left)

    def expect(self, types, timeout: float = 10.0, rid=None, skip=("queued",)) -> dict:
        """Take the first inbox message whose type is in `types` (and id == rid if given).
        Messages of the types in `skip` are left; others stay in the inbox."""
        if isinstance(types, str):
            types = (types,)

        def find():
            for i, m in enumerate(self.inbox):
                if m.get("type") in types and (rid is None or m.get("id") == rid):
                    return self.inbox.pop(i)
            return None
        return self.wait_until(find, timeout, f"{types}")

    def take_all(self, t: str) -> list:
        with self.cond:
            out = [m for m in self.inbox if m.get("type") == t]
            self.inbox = [m for m in self.inbox if m.get("type") != t]
            return out

    # ---- requests ------------------------------------------------------------------
    def _answer(self, msg: dict, ok: str, timeout: float = 15.0) -> dict:
        rid = msg.get("id")
        self.send(msg)
        ans = self.expect((ok, "error", "handoff"), timeout, rid=rid)
        return ans

    def register(self, username: str, password: str, rid=None) -> dict:
        m = {"type": "register", "username": username, "password": password}
        if rid is not None:
            m["id"] = rid
        return self._answer(m, "registered")

    def login(self, username: str, password: str, rid=None) -> dict:
        m = {"type": "login", "username": username, "password": password}
        if rid is not None:
            m["id"] = rid
        return self._answer(m, "logged_in")

    def resume(self, token: str | None = None, rid=None) -> dict:
        m = {"type": "resume", "token": token or self.resume_token}
        if rid is not None:
            m["id"] = rid
        return self._answer(m, "logged_in")

    def logout(self, rid=None) -> dict:
        m = {"type": "logout"}
        if rid is not None:
            m["id"] = rid
        return self._answer(m, "logged_out")

    def ping(self, nonce: int, rid=None, timeout: float = 5.0) -> dict:
        m = {"type": "ping", "nonce": nonce}
        if rid is not None:
            m["id"] = rid
        return self._answer(m, "pong", timeout)

    def keepalive(self) -> None:
        """A ping to stay within the idle timeout; its pong is not put in the inbox."""
        nonce = (1 << 40) + int(time.monotonic() * 1000)
        self._keepalive_nonces.add(nonce)
        self.send({"type": "ping", "nonce": nonce})

    def move(self, dx, dy) -> None:
        self.send({"type": "move", "dx": dx, "dy": dy})

    # ---- world queries -------------------------------------------------------------
    def my_entity(self):
        with self.cond:
            return self.world.get(self.you)

    def find_player(self, player_id: int):
        """(entity id, components) of the entity whose player_id component is player_id."""
        with self.cond:
            for eid, comps in self.world.items():
                if comps.get("player_id") == player_id:
                    return eid, dict(comps)
        return None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
