#!/usr/bin/env python3
"""Memory per channel kept by the bus: a channel with one message in its history.

    bench/channel_memory.py [--megaphone BUILD/bin/megaphone] [--channels 20000]

Starts `megaphone --threads 1` on free loopback ports (its internal door on port 0, a publish key
of its own in a 0600 file), publishes 200 warm-up messages, then one message `{"a":1}` to each of
N new channels over one keep-alive connection (`POST /publish/ch-N` with the key), and prints the
server's VmRSS growth divided by N: what the bus keeps for a channel with one message (its
position, epoch and history) plus what one publish leaves behind. No subscribers: the engines keep
nothing. Bounded: N publishes, then the server is stopped.
"""
import argparse
import http.client
import os
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "channel-memory-publish-key-0123456789"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megaphone", default=os.path.join(HERE, "..", "build-bench", "bin",
                                                        "megaphone"))
    ap.add_argument("--channels", type=int, default=20000)
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = os.path.join(tmp, "key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(KEY)
        srv = subprocess.Popen([a.megaphone, "--port", str(port), "--threads", "1",
                                "--internal-port", "0", "--publish-key-file", key_file,
                                "--log-level", "warn"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            deadline = time.monotonic() + 10
            while "listening on" not in srv.stdout.readline():
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise SystemExit("channel_memory: the server did not start")

            def rss():
                with open(f"/proc/{srv.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS"):
                            return int(line.split()[1]) * 1024
                return 0

            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

            def publish(n):
                c.request("POST", f"/publish/ch-{n:07d}", body='{"a":1}',
                          headers={"Authorization": f"Bearer {KEY}",
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"channel_memory: publish answered {r.status}")

            for i in range(200):
                publish(9_000_000 + i)
            time.sleep(0.2)
            before = rss()
            for i in range(a.channels):
                publish(i)
            time.sleep(0.2)
            after = rss()
            print(f"{a.megaphone}: {(after - before) / a.channels:.0f} B per channel with one "
                  f"message ({a.channels:,} channels, VmRSS growth)")
        finally:
            srv.terminate()
            srv.wait(timeout=10)


if __name__ == "__main__":
    main()
