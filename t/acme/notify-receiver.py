#!/usr/bin/env python3
"""t/acme/notify-receiver.py: a webhook receiver for CertService's
notifications (docs/certservice-api.md, "Notifications"), for
t/acme/e2e.sh.

    notify-receiver.py LISTEN_PORT SECRET_FILE LOG_FILE [FAIL_FIRST]

Listens on 127.0.0.1:LISTEN_PORT.  Every POST is checked as the docs tell
a receiver to: HMAC-SHA256 with the secret file's content (trailing white
space removed) over "<X-CertService-Timestamp>.<body>", compared in
constant time with X-CertService-Signature; the timestamp within 300 s of
the clock; the body's id equal to X-CertService-Event-Id.  A request that
fails a check gets 401.  The first FAIL_FIRST (default 1) requests that
pass get 503 (to show the retry); after that, 200, and an id seen before
is answered 200 again but marked as a duplicate.

Each request is one JSON line in LOG_FILE: {"n", "id", "type", "domain",
"sig_ok", "ts_ok", "id_ok", "status" (what was answered), "dup",
"event" (the body parsed)}.  GET /stats answers counters.

Talks only to 127.0.0.1.  Stops on SIGTERM.
"""
import hashlib
import hmac
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, SECRET_FILE, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 1
with open(SECRET_FILE, "rb") as f:
    SECRET = f.read().rstrip()
lock = threading.Lock()
state = {"n": 0, "failed": 0, "seen": set(), "bad": 0, "ok": 0}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            with lock:
                self.answer(200, {"requests": state["n"], "ok": state["ok"],
                                  "bad": state["bad"],
                                  "failed_on_purpose": state["failed"],
                                  "ids": len(state["seen"])})
        else:
            self.answer(404, {})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ts = self.headers.get("X-CertService-Timestamp", "")
        sig = self.headers.get("X-CertService-Signature", "")
        want = "sha256=" + hmac.new(SECRET, ts.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
        sig_ok = hmac.compare_digest(want, sig)
        try:
            ts_ok = abs(time.time() - int(ts)) <= 300
        except ValueError:
            ts_ok = False
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        eid = event.get("id")
        id_ok = eid is not None \
            and eid == self.headers.get("X-CertService-Event-Id")
        dup = False
        with lock:
            state["n"] += 1
            n = state["n"]
            if not (sig_ok and ts_ok and id_ok):
                status = 401
                state["bad"] += 1
            elif state["failed"] < FAIL_FIRST:
                status = 503
                state["failed"] += 1
            else:
                status = 200
                dup = eid in state["seen"]
                state["seen"].add(eid)
                state["ok"] += 1
            with open(LOG, "a") as f:
                f.write(json.dumps({"n": n, "id": eid,
                                    "type": event.get("type"),
                                    "domain": event.get("domain"),
                                    "sig_ok": sig_ok, "ts_ok": ts_ok,
                                    "id_ok": id_ok, "status": status,
                                    "dup": dup, "event": event}) + "\n")
        self.answer(status, {"status": status})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(
        target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
