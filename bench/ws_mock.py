#!/usr/bin/env python3
"""A stand-in for Megaphone's WebSocket transport, strict about RFC 6455 client frames: checks
megaphone-loadgen's `--target megaphone --transport ws` path before the server has it.

    bench/ws_mock.py LOADGEN     # ctest bench.loadgen_ws_mock: exit 0 when every check holds

It serves, on a free loopback port, the wire protocol announced for Megaphone's WebSocket:
`POST /comet` creates a session (`{"sid":...}`), `GET /comet?sid=S` with `Upgrade: websocket` and
`Sec-WebSocket-Protocol: megaphone` is answered 101, then `{"type":"ready","heartbeat":ms}` and a
ping; `POST /publish/CH` sends every stream a `{"id":N,"messages":[...]}` batch, in turn as one
frame, as a frame padded past 65,535 bytes (a 64-bit length), and as two fragments with a ping
between them. It checks that every client frame is masked, that each pong carries its ping's
payload, and runs the load generator's fan-out (exactly once, in order) against it. Python
standard library only; every wait is bounded.
"""
import base64
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
clients, lock = [], threading.Lock()
stats = dict(pongs_ok=0, pongs_bad=0, unmasked=0, closes=0, sessions=0, upgrades=0)
offset = [0]


def dumps(x):
    return json.dumps(x, separators=(",", ":")).encode()


def frame(op, payload, fin=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        head = bytes([b0, n])
    elif n < 65536:
        head = bytes([b0, 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 127]) + struct.pack(">Q", n)
    return head + payload


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_client_frames(s):
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", recv_exact(s, 8))[0]
        if not b1 & 0x80:
            with lock:
                stats["unmasked"] += 1
            return
        mask = recv_exact(s, 4)
        payload = bytes(x ^ mask[i % 4] for i, x in enumerate(recv_exact(s, n)))
        op = b0 & 0xF
        with lock:
            if op == 0xA:
                stats["pongs_ok" if payload == b"hb" else "pongs_bad"] += 1
            elif op == 0x8:
                stats["closes"] += 1
                return


def answer(s, body, status=b"200 OK"):
    s.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)


def publish(channel, body):
    with lock:
        offset[0] += 1
        k = offset[0]
        streams = list(clients)
    for c in streams:
        with c["lock"]:
            c["id"] += 1
            m = dumps({"id": c["id"], "messages": [
                {"epoch": "e", "offset": k, "channel": channel, "data": json.loads(body)}]})
            if k % 3 == 0:  # two fragments, a ping between them (RFC 6455 §5.4)
                wire = frame(1, m[:40], fin=False) + frame(9, b"hb") + frame(0, m[40:])
            elif k % 3 == 1:  # padded past 65,535 bytes: a 64-bit length
                wire = frame(1, m[:-1] + b" " * 70000 + b"}")
            else:
                wire = frame(1, m)
            try:
                c["sock"].sendall(wire)
            except OSError:
                pass
    return dumps({"epoch": "e", "offset": k, "sessions": len(streams)})


def handle(s):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ")
            h = {k.strip().lower(): v.strip() for k, _, v in
                 (line.partition(":") for line in lines[1:])}
            n = int(h.get("content-length", 0))
            while len(buf) < n:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:n], buf[n:]
            if method == "POST" and path == "/comet":
                with lock:
                    stats["sessions"] += 1
                    sid = f"s{stats['sessions']}"
                answer(s, dumps({"sid": sid, "rid": json.loads(body)["rid"]}))
            elif (method == "GET" and path.startswith("/comet?sid=") and
                  h.get("upgrade", "").lower() == "websocket" and
                  h.get("sec-websocket-protocol") == "megaphone"):
                accept = base64.b64encode(hashlib.sha1(
                    h["sec-websocket-key"].encode() + GUID).digest())
                s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                          b"\r\nSec-WebSocket-Protocol: megaphone\r\n\r\n" +
                          frame(1, b'{"type":"ready","heartbeat":25000}') + frame(9, b"hb"))
                with lock:
                    stats["upgrades"] += 1
                    clients.append(dict(sock=s, id=0, lock=threading.Lock()))
                read_client_frames(s)
                return
            elif method == "POST" and path.startswith("/publish/"):
                answer(s, publish(path[len("/publish/"):], body))
            else:
                answer(s, b"{}", b"404 Not Found")
    except (EOFError, OSError, ValueError, KeyError):
        pass


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    port = ls.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    subs, publishes = 50, 9
    p = subprocess.run([sys.argv[1], "--target", "megaphone", "--port", str(port),
                        "--publish-key", "mock", "--mode", "fanout", "--transport", "ws",
                        "--connections", str(subs), "--publishes", str(publishes),
                        "--publish-timeout", "5", "--setup-timeout", "10"],
                       capture_output=True, text=True, timeout=60)
    ls.close()
    time.sleep(0.5)  # the last pongs are read by the connections' threads
    result = json.loads(p.stdout.strip().splitlines()[-1])
    with lock:
        got = dict(stats)
    print(json.dumps(dict(loadgen={k: result.get(k) for k in (
        "error_count", "errors", "complete", "received", "duplicates", "skipped",
        "short_of_publishes", "frames", "pings", "ws_control")}, server=got)))
    checks = [result.get("error_count") == 0, result.get("complete") == publishes,
              result.get("received") == subs * publishes, result.get("ws_control") == subs,
              got["upgrades"] == subs, got["unmasked"] == 0, got["pongs_bad"] == 0,
              got["pongs_ok"] >= subs * (1 + publishes // 3)]
    sys.exit(0 if all(checks) else 1)


if __name__ == "__main__":
    main()
