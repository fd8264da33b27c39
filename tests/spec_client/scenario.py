"""Scenario for client.py, written from docs/protocol.md alone: two binary clients (alice,
bob) and one JSON-lines client (carol) on one server, plus probes of the spec's rules
(framing, errors, request ids), each check naming what the spec says.

Its author never read Hearth's source; it is kept so that the spec and the server cannot
drift apart (tests/spec_client.rs runs it against the demo server). Python 3 standard
library only. Exits 0 when every check passed, 1 otherwise.

Usage: python3 tests/spec_client/scenario.py HOST PORT
"""
import os
import random
import socket
import string
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import (HearthClient, PREAMBLE, MPFloat, f32,  # noqa: E402
                    shortest_f32_text, mp_decode, mp_encode, encode_frame, varint_decode)

if len(sys.argv) != 3:
    sys.exit(__doc__)
HOST = sys.argv[1]
PORT = int(sys.argv[2])
Q = 1.0 / 128.0  # the binary precision stated in protocol.md (position_q64)

results = []   # (status, name, detail)


def check(name, ok, detail=""):
    results.append(("PASS" if ok else "FAIL", name, detail))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f"  -- {detail}" if detail else ""), flush=True)
    return ok


def note(name, detail):
    results.append(("NOTE", name, detail))
    print(f"[NOTE] {name}  -- {detail}", flush=True)


def pos_of(comps):
    p = comps["position"]
    return float(p["x"]), float(p["y"])


def dist(a, b):
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]))


suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
PW = "correct horse battery"
names = {k: f"{k}_{suffix}" for k in ("alice", "bob", "carol")}

clients = []
stop_keepalive = threading.Event()


def keepalive_loop():
    while not stop_keepalive.wait(8):
        for c in list(clients):
            try:
                if not c.closed:
                    c.keepalive()
            except OSError:
                pass


def raw_binary_conn():
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(PREAMBLE)
    got = b""
    while len(got) < 6:
        chunk = s.recv(6 - len(got))
        if not chunk:
            break
        got += chunk
    return s, got


def recv_all_until_close(s, limit=1.5):
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False


def read_frame_message(data):
    """The first message frame in `data` (bytes read from a binary connection), decoded."""
    try:
        ln, p = varint_decode(data, 0)
        if data[p] != 1:
            return f"frame of kind {data[p]}"
        return mp_decode(data[p + 1:p + ln])
    except Exception as e:  # noqa
        return f"undecodable {data!r} ({e})"


def binary_words_ok(message):
    """An error for a binary client says what is wrong once, and in binary terms."""
    words = str(message)
    return "JSON" not in words and words.count("not a valid MessagePack message") <= 1


def spec_probes():
    # --- "Request ids": the exact bytes of ping with id 5 and of its answer --------------------
    s, pre = raw_binary_conn()
    check("preamble answered with the same six bytes", pre == PREAMBLE, pre.hex(" "))
    req = bytes.fromhex("17 01 83 a4 74 79 70 65 a4 70 69 6e 67 a5 6e 6f 6e 63 65 07 a2 69 64 05".replace(" ", ""))
    want = bytes.fromhex("17 01 83 a4 74 79 70 65 a4 70 6f 6e 67 a2 69 64 05 a5 6e 6f 6e 63 65 07".replace(" ", ""))
    s.sendall(req)
    s.settimeout(3)
    got = b""
    while len(got) < len(want):
        chunk = s.recv(len(want) - len(got))
        if not chunk:
            break
        got += chunk
    check("\"Request ids\": the ping-with-id frame is answered byte for byte as shown", got == want,
          got.hex(" "))
    # "Frames": a frame with an unknown kind: bad_request, then the connection closes
    s.sendall(bytes([0x02, 0x03, 0x00]))
    data, closed = recv_all_until_close(s)
    msg = read_frame_message(data)
    check("unknown frame kind 03 -> bad_request 'unknown frame kind 0x..' then close",
          isinstance(msg, dict) and msg.get("code") == "bad_request"
          and "unknown frame kind" in str(msg.get("message")) and closed, f"{msg!r} closed={closed}")
    s.close()

    # --- "Opening": a preamble of version 2 -> one JSON line and close ----------------
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(b"\x00HRTH\x02")
    data, closed = recv_all_until_close(s)
    want_line = b'{"type":"error","code":"bad_request","message":"unsupported binary protocol version 2; this server speaks 1; closing"}\n'
    check("preamble version 2 -> the JSON error line quoted in \"Opening\", then close",
          data == want_line and closed, f"{data!r} closed={closed}")
    s.close()

    # --- "Frames" table: a frame of length 0 --------------------------------------------------
    s, _ = raw_binary_conn()
    s.sendall(b"\x00")
    data, closed = recv_all_until_close(s)
    msg = read_frame_message(data)
    check("frame of length 0 -> bad_request 'a frame must hold at least its kind byte', closed",
          isinstance(msg, dict) and msg.get("code") == "bad_request" and closed, f"{msg!r} closed={closed}")
    s.close()

    # --- "Frames": a length prefix that is no 64-bit varint (10 bytes without an end) ----------
    # bad_request "a varint over the range ...", or too_large when the server judged the
    # prefix by its first 4 bytes; either way the connection closes.
    s, _ = raw_binary_conn()
    s.sendall(bytes([0x80] * 10 + [0x01]))
    data, closed = recv_all_until_close(s)
    msg = read_frame_message(data)
    check("an over-range varint length -> bad_request (varint over the range) or too_large, closed",
          isinstance(msg, dict) and closed and (
              (msg.get("code") == "bad_request" and "varint" in str(msg.get("message")))
              or msg.get("code") == "too_large"), f"{msg!r} closed={closed}")
    s.close()

    # --- A message frame that is not a map: bad_request, stays open --------------
    c = HearthClient(HOST, PORT, "binary", "probe")
    c._send_raw(bytes([0x02, 0x01, 0x93]))  # kind 01, MessagePack fixarray header, truncated
    e1 = c.expect("error", 5)
    c._send_raw(bytes([0x02, 0x01, 0x07]))  # kind 01, the integer 7: not a map
    e2 = c.expect("error", 5)
    p = c.ping(99)
    check("invalid MessagePack / non-map message frames -> bad_request, connection stays open",
          e1.get("code") == "bad_request" and e2.get("code") == "bad_request" and p.get("nonce") == 99,
          f"{e1.get('message')!r}; {e2.get('message')!r}")
    check("those errors speak of MessagePack, once, never of JSON",
          binary_words_ok(e1.get("message")) and binary_words_ok(e2.get("message")),
          f"{e1.get('message')!r}; {e2.get('message')!r}")
    # A MessagePack bin value has no JSON form -> bad_request
    c._send_raw(encode_frame(1, mp_encode({"type": "ping", "nonce": b"\x07"})))
    e3 = c.expect(("error", "pong"), 5)
    check("a MessagePack bin value -> bad_request", e3.get("code") == "bad_request", repr(e3))
    # A map that repeats a key -> bad_request, as a JSON object repeating a field
    ping = mp_encode("type") + mp_encode("ping")
    nonce = mp_encode("nonce")
    c._send_raw(encode_frame(1, bytes([0x83]) + ping + nonce + b"\x01" + nonce + b"\x02"))
    e5 = c.expect(("error", "pong"), 5)
    check("a map repeating a key -> bad_request (duplicate field)",
          e5.get("code") == "bad_request" and "duplicate" in str(e5.get("message"))
          and binary_words_ok(e5.get("message")), repr(e5))
    # Bytes after the map -> bad_request, as characters after a JSON line's object
    c._send_raw(encode_frame(1, mp_encode({"type": "ping", "nonce": 9}) + b"\xc0"))
    e6 = c.expect(("error", "pong"), 5)
    check("bytes after the map -> bad_request", e6.get("code") == "bad_request"
          and binary_words_ok(e6.get("message")), repr(e6))
    # A non-minimal varint length is accepted when read whole (93 00 = 19)
    c._send_raw(bytes([0x93, 0x00]) + bytes.fromhex("0182a474797065a470696e67a56e6f6e636507"))
    p = c.expect(("error", "pong"), 5)
    check("a non-minimal varint length (93 00) is accepted", p.get("type") == "pong" and p.get("nonce") == 7,
          repr(p))
    p = c.ping(98)
    check("after those refusals the connection is still open", p.get("nonce") == 98, repr(p))
    # "Which error comes first": a malformed move before login is bad_request, not not_logged_in
    c.move(1e39, 0)
    e7 = c.expect(("error",), 5)
    check("a malformed move before login -> bad_request (decoding comes first)",
          e7.get("code") == "bad_request", repr(e7))
    # a well-formed move before login -> not_logged_in
    c.move(1, 0)
    e4 = c.expect(("error",), 5)
    check("move before login -> not_logged_in", e4.get("code") == "not_logged_in", repr(e4))
    # "Request ids": a string id on binary
    p = c.ping(5, rid="req-é")
    check("string request id echoed on pong", p.get("id") == "req-é", repr(p))
    c.close()


def main():
    t0 = time.monotonic()
    threading.Thread(target=keepalive_loop, daemon=True).start()
    print(f"server {HOST}:{PORT}, usernames suffix {suffix}", flush=True)
    spec_probes()

    alice = HearthClient(HOST, PORT, "binary", "alice")
    bob = HearthClient(HOST, PORT, "binary", "bob")
    carol = HearthClient(HOST, PORT, "json", "carol")
    clients.extend([alice, bob, carol])
    who = {"alice": alice, "bob": bob, "carol": carol}

    # --- register + login ---------------------------------------------------------------------
    pids = {}
    for n, c in who.items():
        r = c.register(names[n], PW, rid=f"r-{n}")
        check(f"{n}: register ({c.encoding})", r["type"] == "registered" and r.get("id") == f"r-{n}", repr(r))
        pids[n] = r["player_id"]
    states = {}
    for n, c in who.items():
        rid = "l-1" if n == "carol" else 1000 + len(n)
        r = c.login(names[n], PW, rid=rid)
        ok = r["type"] == "logged_in" and r.get("player_id") == pids[n] and bool(r.get("resume_token")) \
            and r.get("id") == rid
        check(f"{n}: login ({c.encoding}) -> logged_in with player_id, state, resume_token, id", ok,
              {k: v for k, v in r.items() if k not in ("resume_token", "_raw")}.__repr__())
        states[n] = r["state"]
        if n == "carol":
            raw = r["_raw"]
            check("carol: JSON answer writes id right after type", raw.startswith('{"type":"logged_in","id":"l-1",'),
                  raw[:60])
        tok = r.get("resume_token", "")
        check(f"{n}: resume_token is '<player_id>.<43 chars of URL-safe base64>'",
              tok.split(".")[0] == str(pids[n]) and len(tok.split(".", 1)[1]) == 43, f"len {len(tok)}")

    # "Field types": in a message frame every float field is a float64, whole ones too
    sx = states["alice"]["position"]["x"]
    check("binary logged_in.state.position.x is a MessagePack float64",
          isinstance(sx, MPFloat) and sx.bits == 64, f"{type(sx).__name__} {sx!r}")
    # "Where a player appears": a new account of the demo game starts at the origin
    for n in ("alice", "bob", "carol"):
        p = states[n]["position"]
        check(f"{n}: a new account appears at the origin", (float(p["x"]), float(p["y"])) == (0.0, 0.0),
              repr(p))
    note("logged_in.state sections", repr(sorted(states["alice"].keys())))

    # --- replication then update ----------------------------------------------------------------
    for n, c in who.items():
        c.wait_until(lambda c=c: c.replication_msg is not None and c.updates_since_replication >= 1, 5,
                     "replication + first update")
        order = [t for t in c.all_types if t in ("logged_in", "replication", "update")][:3]
        check(f"{n}: logged_in, then replication, then update", order == ["logged_in", "replication", "update"],
              repr(order))
        first = c.first_update_after_replication
        check(f"{n}: first update enters our own entity (you={c.you})",
              any(e["id"] == c.you for e in first["entered"]), repr(first)[:200])
        comps = [(x["name"], x["encoding"]) for x in c.components]
        check(f"{n}: replication components", comps == [("position", "position_q64"), ("player_id", "messagepack")],
              repr(comps))
        rh = c.rate_hz
        if c.encoding == "binary":
            check(f"{n}: replication.rate_hz is a MessagePack float64", isinstance(rh, MPFloat) and rh.bits == 64,
                  f"{rh!r} ({type(rh).__name__})")
        else:
            check(f"{n}: replication.rate_hz is a JSON float", getattr(rh, "text", "").endswith(".0"), repr(rh))

    # everyone sees everyone (by player_id)
    for n, c in who.items():
        try:
            c.wait_until(lambda c=c: all(c.find_player(pids[m]) for m in who), 5, "all three players")
            check(f"{n}: sees alice, bob and carol in its world", True,
                  repr({m: c.find_player(pids[m])[1].get("position") for m in who}))
        except TimeoutError as e:
            check(f"{n}: sees alice, bob and carol in its world", False, str(e))

    # update rate
    u0 = alice.updates
    time.sleep(1.0)
    rate = alice.updates - u0
    check("alice: about rate_hz updates a second (idle)", abs(rate - float(alice.rate_hz)) <= 3, f"{rate}/s")

    # --- bob walks 10 steps -----------------------------------------------------------------------
    start = pos_of(bob.my_entity())
    # the server steps 1.0 unit in the normalised direction (3,4)/5 (ints over binary: "any JSON number")
    ux, uy = f32(3 / 5), f32(4 / 5)
    ex, ey = start
    steps_seen = 0
    for i in range(10):
        before = pos_of(bob.my_entity())
        bob.move(3, 4)
        try:
            bob.wait_until(lambda: dist(pos_of(bob.my_entity()), before) > 0.25, 3, f"step {i + 1}")
            steps_seen += 1
        except TimeoutError:
            pass
        ex, ey = f32(ex + ux), f32(ey + uy)
        time.sleep(1 / 60 + 0.005)
    check("bob: each of 10 moves showed as one step in his own updates", steps_seen == 10, f"{steps_seen}/10")
    bob_own = pos_of(bob.my_entity())
    check("bob: own position after 10 steps is ~ start + 10*(0.6,0.8) within 1/128",
          dist(bob_own, (ex, ey)) <= Q + 1e-4, f"own {bob_own}, expected {(ex, ey)}")
    # let the others converge (a few rounds), then compare
    try:
        alice.wait_until(lambda: alice.find_player(pids["bob"]) and
                         dist(pos_of(alice.find_player(pids["bob"])[1]), bob_own) <= Q, 3, "alice sees bob")
        carol.wait_until(lambda: carol.find_player(pids["bob"]) and
                         dist(pos_of(carol.find_player(pids["bob"])[1]), bob_own) <= Q, 3, "carol sees bob")
    except TimeoutError as e:
        print("  ", e)
    time.sleep(0.5)   # and it stays so
    bob_own = pos_of(bob.my_entity())
    a_view = alice.find_player(pids["bob"])
    c_view = carol.find_player(pids["bob"])
    check("alice (binary) sees bob where bob's own update says (within 1/128)",
          a_view is not None and dist(pos_of(a_view[1]), bob_own) <= Q,
          f"alice sees {a_view and pos_of(a_view[1])}, bob says {bob_own}")
    check("alice's entity id for bob == bob's `you`", a_view is not None and a_view[0] == bob.you,
          f"{a_view and a_view[0]} vs {bob.you}")
    check("carol (JSON) sees bob where bob's own update says (within 1/128)",
          c_view is not None and dist(pos_of(c_view[1]), bob_own) <= Q,
          f"carol sees {c_view and pos_of(c_view[1])}, bob says {bob_own}")
    if c_view:
        cx, cy = pos_of(c_view[1])
        check("carol's exact JSON position of bob == f32 sum of 10 unit steps (to 1e-5)",
              dist((cx, cy), (ex, ey)) <= 1e-5, f"{(cx, cy)} vs {(ex, ey)}")
        px = c_view[1]["position"]["x"]
        txt = getattr(px, "text", None)
        check("carol: JSON x written as the shortest decimal reading back as the same f32",
              txt == shortest_f32_text(float(px)), f"text {txt!r}, shortest {shortest_f32_text(float(px))!r}")
        bq = (round(cx * 64) / 64, round(cy * 64) / 64)
        check("bob's binary position == carol's exact position rounded to 1/64", bq == bob_own, f"{bq} vs {bob_own}")

    # level_up: 10 steps * 10 xp = 100 xp -> level 2
    try:
        lu = bob.expect("level_up", 3)
        check("bob: level_up to level 2 after 10 steps (100 xp)", lu.get("level") == 2, repr(lu))
    except TimeoutError:
        check("bob: level_up to level 2 after 10 steps (100 xp)", False, "no level_up")

    # ping with id on binary
    p = alice.ping(7, rid=5)
    check("alice: ping nonce 7 id 5 -> pong with the same nonce and id", p.get("nonce") == 7 and p.get("id") == 5,
          repr(p))

    # resume while logged in -> bad_request
    e = alice.resume("1.xxxx")
    check("resume while logged in -> bad_request (already logged in)", e.get("code") == "bad_request", repr(e))

    # --- bob logs out: others see him leave; bob logs in again: state exact, world cleared -------
    bob_eid = bob.you
    r = bob.logout(rid="bye")
    check("bob: logout -> logged_out (with id)", r["type"] == "logged_out" and r.get("id") == "bye", repr(r))
    try:
        alice.wait_until(lambda: alice.find_player(pids["bob"]) is None, 3, "bob leaves")
        carol.wait_until(lambda: carol.find_player(pids["bob"]) is None, 3, "bob leaves")
        check("alice and carol see bob leave (left) after his logout", True)
    except TimeoutError as e:
        check("alice and carol see bob leave (left) after his logout", False, str(e))
    n_upd = bob.updates
    time.sleep(0.3)
    check("bob: no updates after logged_out", bob.updates == n_upd, f"{bob.updates - n_upd} more")
    old_replication = bob.replication_msg
    r = bob.login(names["bob"], PW)
    check("bob: log in again on the same connection", r["type"] == "logged_in", repr(r)[:100])
    sp = r["state"]["position"]
    sx, sy = float(sp["x"]), float(sp["y"])
    note("bob relogin state position (binary MessagePack)",
         f"x={sp['x']!r} ({'float%d' % sp['x'].bits if isinstance(sp['x'], MPFloat) else type(sp['x']).__name__}),"
         f" y={sp['y']!r}; carol's JSON saw {c_view and pos_of(c_view[1])}")
    if c_view:
        check("bob relogin: saved position == carol's exact JSON view (as f32)",
              (f32(sx), f32(sy)) == (f32(cx), f32(cy)), f"{(sx, sy)} vs {(cx, cy)}")
        # "Field types": the float64 holds the f32's shortest decimal, not the f32 widened
        check("bob relogin: the float64 x is the f32's shortest decimal (cast to f32 for the exact value)",
              sx == float(shortest_f32_text(sx)), f"{sx!r} vs {shortest_f32_text(sx)}")
    check("bob relogin: progress xp 100, level 2", r["state"].get("progress") == {"xp": 100, "level": 2},
          repr(r["state"].get("progress")))
    # A new login sends a new `replication` (then an update entering us again).
    bob.wait_until(lambda: bob.replication_msg is not old_replication and bob.my_entity() is not None, 3,
                   "a new replication and own entity after relogin")
    check("bob relogin: new replication cleared the world (his old entity id gone unless re-entered)",
          bob.replication_msg is not None and all(isinstance(k, int) for k in bob.world), f"you {bob_eid} -> {bob.you}")
    # "Logout and coming back": a new entity with a new id (ids are never reused)
    check("bob relogin: a new entity id", bob.you != bob_eid, f"bob was {bob_eid}, now {bob.you}")

    # --- alice: logout, new connection, resume -----------------------------------------------------
    alice_pos = pos_of(alice.my_entity())
    r = alice.logout()
    check("alice: logout -> logged_out", r["type"] == "logged_out", repr(r))
    token1 = alice.resume_token
    alice.close()
    clients.remove(alice)
    a2 = HearthClient(HOST, PORT, "binary", "alice2")
    clients.append(a2)
    r = a2.resume(token1)
    check("alice: resume with token on a new connection -> logged_in, new token",
          r["type"] == "logged_in" and r.get("player_id") == pids["alice"] and r.get("resume_token") not in (None, token1),
          repr({k: v for k, v in r.items() if k != "resume_token"})[:160])
    if r["type"] == "logged_in":
        a2.wait_until(lambda: a2.my_entity() is not None and a2.find_player(pids["carol"]) and
                      a2.find_player(pids["bob"]), 5, "world after resume")
        check("alice resumed: replication + full state (self, bob, carol), same position",
              dist(pos_of(a2.my_entity()), alice_pos) <= Q,
              f"{pos_of(a2.my_entity())} vs {alice_pos}; world {len(a2.world)} entities")
    # the used token is refused now (spends 1 failure of the lockout quota)
    a3 = HearthClient(HOST, PORT, "binary", "alice3")
    e = a3.resume(token1)
    check("the spent token is refused with invalid_credentials", e.get("code") == "invalid_credentials", repr(e))
    a3.close()

    # --- alice: drop the connection without logout, resume at once --------------------------------
    token2 = a2.resume_token
    a2.close()
    clients.remove(a2)
    a4 = HearthClient(HOST, PORT, "binary", "alice4")
    clients.append(a4)
    tries = []
    for _ in range(20):
        r = a4.resume(token2)
        tries.append(r.get("code", r["type"]))
        if r["type"] == "logged_in" or r.get("code") != "already_online":
            break
        time.sleep(0.1)
    check("alice: resume right after a dropped connection (retrying already_online)",
          r["type"] == "logged_in", repr(tries))

    # --- final: no client saw a replication rule broken --------------------------------------------
    for c in [bob, carol, a4]:
        check(f"{c.name}: no replication rule broken", not c.violations, repr(c.violations[:5]))
        if c.notes:
            note(f"{c.name}: notes", repr(c.notes[:5]))
    stop_keepalive.set()
    for c in list(clients):
        try:
            if c.player_id is not None:
                c.logout()
        except Exception:  # noqa
            pass
        c.close()
    fails = [r for r in results if r[0] == "FAIL"]
    print(f"\n{sum(r[0] == 'PASS' for r in results)} passed, {len(fails)} failed "
          f"({time.monotonic() - t0:.1f}s)")
    for f in fails:
        print("FAILED:", f[1], "--", f[2])
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
