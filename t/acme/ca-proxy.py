#!/usr/bin/env python3
"""t/acme/ca-proxy.py: a small fault-injecting HTTPS proxy in front of
pebble, for t/acme/e2e.sh and bench/acme.sh.

    ca-proxy.py LISTEN_PORT PEBBLE_PORT CERT KEY

Forwards every request to https://127.0.0.1:PEBBLE_PORT with its Host
header unchanged (pebble builds its URLs from it, so the client keeps
talking to the proxy), and:

  * answers new-order POSTs with HTTP 429, a rateLimited problem and
    Retry-After while a 429 budget is set (POST /__fault/ratelimit
    {"count": N, "retry_after": S});
  * offers ACME Renewal Information (RFC 9773), which pebble 2.4 lacks,
    when a window is set (POST /__fault/ari {"start": T, "end": T,
    "retry_after": S}, unix seconds): the directory gains "renewalInfo"
    and GET /renewal-info/ID answers the window;
  * offers ACME profiles (draft-aaron-acme-profiles), which pebble 2.4
    lacks: the directory gains meta.profiles (classic, tlsserver,
    shortlived, as Let's Encrypt's); a newOrder's "profile" is checked
    against them: an unknown one is answered here with
    urn:ietf:params:acme:error:invalidProfile and never reaches pebble; a
    known one is forwarded as it is (the payload is signed by the
    account key, so the proxy cannot take the field out; pebble ignores
    a member it does not know).  Which profile each order asked for is
    in the stats ("profiles_for": name -> [profile or null, ...]).
    POST /__fault/profiles {"offer": [...], "accept": [...]} sets what
    the directory lists and what newOrder accepts (both default to the
    three).  The certificate's lifetime stays pebble's
    certificateValidityPeriod: the profile is not applied to it;
  * counts what went through: GET /__fault/stats (new orders per name
    in "orders_for", from the JWS payloads).

Talks only to 127.0.0.1.  Stops on SIGTERM.
"""
import base64
import http.client
import json
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, PEBBLE, CERT, KEY = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
    sys.argv[4]
lock = threading.Lock()
PROFILES = {"classic": "The same profile you know and love",
            "tlsserver": "45 days, TLS server authentication only",
            "shortlived": "160 hours, TLS server authentication only"}
state = {"ratelimit": 0, "retry_after": 2, "ari": None,
         "offer": sorted(PROFILES), "accept": sorted(PROFILES)}
stats = {"requests": 0, "new_order": 0, "rate_limited": 0, "bad_nonce": 0,
         "renewal_info": 0, "new_account": 0, "finalize": 0,
         "orders_for": {}, "orders_created": 0, "profiles_for": {},
         "invalid_profile": 0}
client_ctx = ssl.create_default_context()
client_ctx.check_hostname = False
client_ctx.verify_mode = ssl.CERT_NONE


def order_payload(body):
    """The payload of a newOrder JWS (flattened JSON), or {}."""
    try:
        pay = json.loads(body)["payload"]
        pay += "=" * (-len(pay) % 4)
        obj = json.loads(base64.urlsafe_b64decode(pay))
        return obj if isinstance(obj, dict) else {}
    except (ValueError, KeyError, TypeError):
        return {}


def order_names(payload):
    """The identifiers of a newOrder payload."""
    try:
        return [i["value"] for i in payload["identifiers"]]
    except (KeyError, TypeError):
        return []


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body, ctype="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def control(self, method):
        if self.path == "/__fault/stats":
            with lock:
                return self.reply(200, json.dumps(stats))
        req = json.loads(self.body() or b"{}")
        with lock:
            if self.path == "/__fault/ratelimit":
                state["ratelimit"] = int(req.get("count", 0))
                state["retry_after"] = int(req.get("retry_after", 2))
            elif self.path == "/__fault/ari":
                state["ari"] = req if req.get("end") else None
            elif self.path == "/__fault/profiles":
                state["offer"] = req.get("offer", sorted(PROFILES))
                state["accept"] = req.get("accept", sorted(PROFILES))
            else:
                return self.reply(404, "{}")
        return self.reply(200, "{}")

    def forward(self, method):
        if self.path.startswith("/__fault/"):
            return self.control(method)
        body = self.body() if method == "POST" else None
        host = self.headers.get("Host", "127.0.0.1:%d" % LISTEN)
        with lock:
            stats["requests"] += 1
            ari = state["ari"]
        if self.path.startswith("/renewal-info/"):
            with lock:
                stats["renewal_info"] += 1
            if not ari:
                return self.reply(404, json.dumps({
                    "type": "urn:ietf:params:acme:error:malformed",
                    "detail": "no renewal information"}))
            return self.reply(200, json.dumps({"suggestedWindow": {
                "start": rfc3339(ari["start"]), "end": rfc3339(ari["end"])}}),
                headers=[("Retry-After", str(ari.get("retry_after", 5)))])
        if method == "POST" and "order-plz" in self.path:
            payload = order_payload(body)
            profile = payload.get("profile")
            with lock:
                stats["new_order"] += 1
                for name in order_names(payload):
                    stats["orders_for"][name] = \
                        stats["orders_for"].get(name, 0) + 1
                    stats["profiles_for"].setdefault(name, []).append(
                        profile)
                bad_profile = profile is not None \
                    and profile not in state["accept"]
                if bad_profile:
                    stats["invalid_profile"] += 1
            # draft-aaron-acme-profiles: an unknown profile is refused
            # with invalidProfile (before pebble, which would ignore it).
            if bad_profile:
                return self.reply(400, json.dumps({
                    "type": "urn:ietf:params:acme:error:invalidProfile",
                    "detail": "profile %r is not offered (ca-proxy.py)"
                              % profile}),
                    "application/problem+json")
            with lock:
                limited = state["ratelimit"] > 0
                if limited:
                    state["ratelimit"] -= 1
                    stats["rate_limited"] += 1
                    ra = state["retry_after"]
            if limited:
                return self.reply(429, json.dumps({
                    "type": "urn:ietf:params:acme:error:rateLimited",
                    "detail": "too many new orders (ca-proxy.py)"}),
                    "application/problem+json",
                    [("Retry-After", str(ra))])
        if method == "POST" and "sign-me-up" in self.path:
            with lock:
                stats["new_account"] += 1
        if method == "POST" and "finalize" in self.path:
            with lock:
                stats["finalize"] += 1
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("connection", "content-length",
                                     "accept-encoding")}
        hdrs["Host"] = host
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", PEBBLE,
                                               context=client_ctx, timeout=30)
            conn.request(method, self.path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self.reply(502, json.dumps({
                "type": "urn:ietf:params:acme:error:serverInternal",
                "detail": "ca-proxy.py: pebble unreachable: %s" % e}),
                "application/problem+json")
        if b"badNonce" in data:
            with lock:
                stats["bad_nonce"] += 1
        if method == "POST" and "order-plz" in self.path \
                and resp.status == 201:
            with lock:
                stats["orders_created"] += 1
        if self.path == "/dir" and resp.status == 200:
            d = json.loads(data)
            if ari:
                d["renewalInfo"] = "https://%s/renewal-info/" % host
            with lock:
                offer = list(state["offer"])
            if offer:
                d.setdefault("meta", {})["profiles"] = {
                    n: PROFILES.get(n, "ca-proxy.py test profile")
                    for n in offer}
            data = json.dumps(d).encode()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection",
                                 "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)
        conn.close()

    def do_GET(self):
        self.forward("GET")

    def do_HEAD(self):
        self.forward("HEAD")

    def do_POST(self):
        self.forward("POST")


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    main()
