#!/usr/bin/env python3
"""t/ondemand/ask-server.py: the operator's "ask" URL for CertService's
on-demand issuance (CertServiceOnDemandAsk), for t/ondemand/e2e.sh and
bench/ondemand.sh.

    ask-server.py LISTEN_PORT ALLOW_REGEX

GET /allow?domain=NAME answers 200 when NAME matches ALLOW_REGEX (a full
match), else 403.  GET /stats answers {"asks": N, "allowed": N,
"domains": {NAME: times asked}}.  Each ask is counted once, whatever the
answer.  Talks only to 127.0.0.1.  Stops on SIGTERM.
"""
import json
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LISTEN, ALLOW = int(sys.argv[1]), re.compile(sys.argv[2])
lock = threading.Lock()
state = {"asks": 0, "allowed": 0, "domains": {}}


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/stats":
            with lock:
                self._send(200, state)
            return
        if url.path != "/allow":
            self._send(404, {"error": "no such path"})
            return
        domain = parse_qs(url.query).get("domain", [""])[0]
        ok = bool(ALLOW.fullmatch(domain))
        with lock:
            state["asks"] += 1
            state["allowed"] += ok
            state["domains"][domain] = state["domains"].get(domain, 0) + 1
        self._send(200 if ok else 403, {"domain": domain, "allowed": ok})

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(
    target=server.shutdown).start())
server.serve_forever()
