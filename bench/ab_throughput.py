#!/usr/bin/env python3
"""A/B of two megaphone binaries on the throughput load, alternating run after run.

    bench/ab_throughput.py --old OLD/bin/megaphone --new build-bench/bin/megaphone [--runs 4]
        [--threads 2] [--rate R] [--publishers N] [--old-arg ARG ...] [--new-arg ARG ...]

--rate R drives the `rate` mode (a fixed R msg/s: CPU per message at a given load) instead of
`throughput`; --old-arg/--new-arg pass more options to one server (e.g. --new-arg
--no-thread-moves to compare a switch within one binary).

Each run starts one server (`--port P --threads 2 --creation-burst 0`; the new one also with
`--internal-port 0 --publish-key-file K`, when --new-has-doors, the default) and drives it with
`megaphone-loadgen --mode throughput --connections 1000 --duration 10 --publishers 16` (with
`--publish-key` for the new one: every publish passes the key check). Server CPU is utime+stime
from /proc/PID/stat over the load generator's run, per delivered message. Prints each run and
the medians. For binaries older than the internal door (issue 16), whose options bench/run now
passes and they do not know. Loopback only; every run bounded (120 s).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CLK = os.sysconf("SC_CLK_TCK")
KEY = "ab-test-publish-key-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def run(binary, loadgen, doors, key_file, a, extra):
    port = free_port()
    args = [binary, "--port", str(port), "--threads", str(a.threads), "--creation-burst", "0",
            "--log-level", "warn"] + extra
    if doors:
        args += ["--internal-port", "0", "--publish-key-file", key_file]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while "listening on" not in server.stdout.readline():
            pass
        lg = [loadgen, "--target", "megaphone", "--port", str(port), "--connections", "1000",
              "--duration", str(a.duration), "--publishers", str(a.publishers), "--settle", "0.5"]
        lg += ["--mode", "rate", "--rate", str(a.rate)] if a.rate else ["--mode", "throughput"]
        if doors:
            lg += ["--publish-key", KEY]
        before = cpu_seconds(server.pid)
        out = subprocess.run(lg, capture_output=True, text=True, timeout=120)
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
    return summary["msg_per_s"], used / summary["received"] * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--loadgen", default=os.path.join(HERE, "..", "build-bench", "bin",
                                                      "megaphone-loadgen"))
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--old-has-doors", action="store_true")
    ap.add_argument("--new-no-doors", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rate", type=int, default=0, help="fixed msg/s (rate mode); 0: throughput")
    ap.add_argument("--publishers", type=int, default=16)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--old-arg", action="append", default=[])
    ap.add_argument("--new-arg", action="append", default=[])
    a = ap.parse_args()
    key_dir = tempfile.mkdtemp()
    key_file = os.path.join(key_dir, "key")
    with open(key_file, "w") as f:
        f.write(KEY + "\n")
    os.chmod(key_file, 0o600)
    results = {"old": [], "new": []}
    for i in range(a.runs):
        for which, binary, doors, extra in (("old", a.old, a.old_has_doors, a.old_arg),
                                            ("new", a.new, not a.new_no_doors, a.new_arg)):
            msgs, cpu = run(binary, a.loadgen, doors, key_file, a, extra)
            results[which].append((msgs, cpu))
            print(f"{which} run {i + 1}: {msgs:,.0f} msg/s, {cpu:.1f} us CPU per message",
                  flush=True)
    med = {w: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for w, rs in results.items()}
    for w, (m, c) in med.items():
        print(f"{w}: median {m:,.0f} msg/s, {c:.1f} us CPU per message")
    print(f"new/old: {med['new'][0] / med['old'][0]:.3f}x msg/s, "
          f"{med['new'][1] / med['old'][1]:.3f}x CPU per message")


if __name__ == "__main__":
    main()
