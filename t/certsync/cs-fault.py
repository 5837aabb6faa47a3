#!/usr/bin/env python3
"""t/certsync/cs-fault.py: a fault-injecting HTTPS proxy in front of a real
CertService, for t/certsync/service-faults.sh: the certsync proxy's
CertSyncServiceURL points here.

    cs-fault.py LISTEN_PORT CS_PORT CERT KEY CA CLIENT_CERT CLIENT_KEY

Serves TLS with CERT/KEY (the CertService certificate of the test PKI, so
the proxy's CertSyncServiceCA accepts it) and forwards each /v1/ request
to https://127.0.0.1:CS_PORT, verified with CA, as CLIENT_CERT (the
proxy's own client certificate: CertService sees the same host).  What
it answers depends on the mode, set with POST /__fault/mode
{"mode": M} (GET /__fault/mode shows it and what was served):

  pass      the real answer
  stall     reads the request, never answers (until the mode changes;
            then the connection is closed)
  truncate  the real answer's headers and half of its body, then closes
  html      200, text/html: an error page from something in the way
  badjson   200, application/json, a body that is not JSON
  http500   500 {"error": "database is down"}
  huge      200, application/json, 100 MB (a JSON array of zeros)
  drip      the real answer, one byte every half second

Talks only to 127.0.0.1.  Stops on SIGTERM.
"""
import http.client
import json
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, CS = int(sys.argv[1]), int(sys.argv[2])
CERT, KEY, CA, CCERT, CKEY = sys.argv[3:8]
MODES = ("pass", "stall", "truncate", "html", "badjson", "http500", "huge",
         "drip")
lock = threading.Lock()
state = {"mode": "pass", "gen": 0}
stats = {m: 0 for m in MODES}

upstream_ctx = ssl.create_default_context(cafile=CA)
upstream_ctx.check_hostname = False
upstream_ctx.load_cert_chain(CCERT, CKEY)


def mode():
    with lock:
        return state["mode"], state["gen"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, data, ctype="application/json", length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length",
                         str(len(data) if length is None else length))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def upstream(self, body):
        c = http.client.HTTPSConnection("127.0.0.1", CS, timeout=60,
                                        context=upstream_ctx)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() in ("content-type", "accept")}
        c.request(self.command, self.path, body=body or None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r.getheader("Content-Type") or "application/json", \
            data

    def control(self):
        if self.command == "POST":
            try:
                m = json.loads(self.body())["mode"]
            except (ValueError, KeyError, TypeError):
                m = None
            if m not in MODES:
                self.reply(400, b'{"error": "unknown mode"}')
                return
            with lock:
                state["mode"] = m
                state["gen"] += 1
        with lock:
            out = dict(state, served=dict(stats))
        self.reply(200, json.dumps(out).encode())

    def handle_any(self):
        if self.path.startswith("/__fault/mode"):
            self.control()
            return
        body = self.body()
        m, gen = mode()
        with lock:
            stats[m] += 1
        if m == "stall":
            # Never an answer; the connection goes once the fault does.
            while mode()[1] == gen:
                time.sleep(0.1)
            self.close_connection = True
            return
        if m == "html":
            self.reply(200, b"<html><body><h1>502 Bad Gateway</h1>"
                       b"</body></html>\n", "text/html")
            return
        if m == "badjson":
            self.reply(200, b'{"changes": [{"seq": 1, "domain": ')
            return
        if m == "http500":
            self.reply(500, b'{"error": "database is down"}')
            return
        if m == "huge":
            size = 100 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"[" + b"0," * (512 * 1024 - 1)
            sent = 0
            while sent < size:
                part = chunk[:size - sent]
                self.wfile.write(part)
                sent += len(part)
                chunk = b"0," * (512 * 1024)
            return
        status, ctype, data = self.upstream(body)
        if m == "truncate":
            self.reply(status, data[:len(data) // 2], ctype, len(data))
            self.close_connection = True
            return
        if m == "drip":
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                if mode()[1] != gen:
                    break
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.5)
            self.close_connection = True
            return
        self.reply(status, data, ctype)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError,
                TimeoutError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", LISTEN), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    main()
