#!/usr/bin/env python3
"""A backend for --auth-url tests (tests/integration/test_auth_hook.cpp): a real HTTP/1.1
server (Python's http.server, keep-alive) that decides by the channel's name and writes every
question it gets, one JSON object a line, to the log file.

    auth_backend.py PORT LOG [KEEPALIVE_SECONDS]

Channels:  ok*   -> 200              no*   -> 403
           err*  -> 500              slow* -> 200 after 2 s
           ro*   -> 200 for subscribe, 403 for publish
           user-NAME -> 200 when the question's user is NAME, else 403
           anything else -> 403
KEEPALIVE_SECONDS (default: none) closes a kept connection idle that long, as Node's and
many frameworks' servers do, so the client's reconnect-on-a-stale-connection path runs.
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = sys.argv[2]
IDLE = float(sys.argv[3]) if len(sys.argv) > 3 else None
lock = threading.Lock()


def verdict(q):
    ch, action, user = q["channel"], q["action"], q["user"]
    if ch.startswith("ok"):
        return 200
    if ch.startswith("no"):
        return 403
    if ch.startswith("err"):
        return 500
    if ch.startswith("slow"):
        time.sleep(2)
        return 200
    if ch.startswith("ro"):
        return 200 if action == "subscribe" else 403
    if ch.startswith("user-"):
        return 200 if user == ch[len("user-"):] else 403
    return 403


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        if IDLE is not None:
            self.connection.settimeout(IDLE)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        q = json.loads(self.rfile.read(length))
        with lock, open(LOG, "a") as f:
            f.write(json.dumps({"question": q,
                                "content_type": self.headers.get("Content-Type"),
                                "path": self.path}) + "\n")
        status = verdict(q)
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (socket.timeout, TimeoutError):
            self.close_connection = True

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
