#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_x509_chain and fuzz_acme_docs into
t/fuzz/corpus/x509_chain/ and t/fuzz/corpus/acme_docs/.

The certificates come from t/fuzz/acme_pki/ (made once with openssl: an EC
root "Fuzz Root", an intermediate, a leaf for fuzz.example and
*.fuzz.example whose key the harnesses embed, and "Fuzz Alt Root" with
the same intermediate key cross-signed; valid 2026-12-05 to 2126; and
two certificates self-signed by the leaf key valid only in 2020 and in
2028, made with `openssl ca -selfsign -startdate -enddate`).
Files named seed_* are rewritten; others (found by fuzzing and merged in
with -merge=1, or regression inputs) are left alone.

    python3 t/fuzz/make_corpus_acme.py

acme_docs input: byte 0 picks the flow, byte 1 holds flags, then the
CA's answers in order, separated by "\\n@@\\n"; each answer is a status
line ("200"; "X": no answer at all; "B": body too large), header lines,
an empty line, the body.
"""
import base64
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKI = os.path.join(HERE, "acme_pki")


def pem(name):
    with open(os.path.join(PKI, name), "rb") as f:
        return f.read()


LEAF, INTER, ROOT = pem("leaf.pem"), pem("inter.pem"), pem("root.pem")
ALT, INTER_ALT = pem("alt.pem"), pem("inter-alt.pem")


def write(corpus, name, data):
    d = os.path.join(HERE, "corpus", corpus)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def name_index(data, i):
    """fuzz_x509_chain checks the name names[len % 4]: pad to pick i."""
    while len(data) % 4 != i:
        data += b"\n"
    return data


def x509_chain():
    w = lambda n, d: write("x509_chain", n, d)
    # Self-signed by the leaf key, for the time checks (the harness's
    # "now" is 2027-06-01).
    w("future", name_index(pem("leaf-future.pem"), 0))
    w("expired", name_index(pem("leaf-expired.pem"), 0))
    lines = LEAF.split(b"\n")
    last = lines[-3]        # the last base64 line: the signature's end
    lines[-3] = last[:-6] + (b"A" if last[-6:-5] != b"A" else b"B") \
        + last[-5:]
    # Times that do not read (month 13, a letter): the leaf is not signed
    # by anything the harness checks, so only the time checks see them.
    for n, old, new in (("bad_not_before", b"200101000000Z", b"201301000000Z"),
                        ("bad_not_after", b"210101000000Z", b"21010100000xZ")):
        der = base64.b64decode(b"".join(pem("leaf-expired.pem")
                                        .split(b"\n")[1:-2]))
        assert old in der
        der = der.replace(old, new)
        b64 = base64.b64encode(der)
        w(n, name_index(b"-----BEGIN CERTIFICATE-----\n"
                        + b"\n".join(b64[i:i + 64]
                                      for i in range(0, len(b64), 64))
                        + b"\n-----END CERTIFICATE-----\n", 0))
    w("bad_signature", name_index(b"\n".join(lines) + INTER, 0))
    w("chain", LEAF + INTER)
    w("chain_root", LEAF + INTER + ROOT)
    w("chain_alt", LEAF + INTER_ALT + ALT)
    w("leaf_only", LEAF)
    w("wrong_order", INTER + LEAF)
    w("root_only", ROOT)
    w("crlf", (LEAF + INTER).replace(b"\n", b"\r\n"))
    w("junk_between", b"garbage\n" + LEAF + b"text in between\n" + INTER)
    w("key_block", LEAF + pem("leaf.key"))
    w("truncated", (LEAF + INTER)[:-200])
    w("bad_base64", LEAF.replace(b"MII", b"M!I", 1))
    w("empty", b"")
    w("no_pem", b"<html>not a chain</html>\n")
    w("x509_label", LEAF.replace(b"BEGIN CERTIFICATE", b"BEGIN X509 "
                                 b"CERTIFICATE").replace(
        b"END CERTIFICATE", b"END X509 CERTIFICATE"))


CA = b"https://ca.test"
DIR = (b'{"newNonce":"' + CA + b'/nonce","newAccount":"' + CA + b'/acct",'
       b'"newOrder":"' + CA + b'/order","revokeCert":"' + CA + b'/revoke",'
       b'"keyChange":"' + CA + b'/key","renewalInfo":"' + CA + b'/ari/",'
       b'"meta":{"termsOfService":"' + CA + b'/tos"}}')
SEP = b"\n@@\n"

# Flows (byte 0, modulo their number): see fuzz_acme_docs.c.
F_DIRECTORY, F_ACCOUNT, F_ISSUE, F_KEY_CHANGE, F_REVOKE, F_ARI, \
    F_HEADERS, F_JWS = range(8)
PREFERRED = 1       # flag bits (byte 1)
REPLACES = 2
HTTP01_FAILS = 4
PROFILE = 8


def answer(status, headers=(), body=b""):
    h = b"".join(x + b"\n" for x in headers)
    return str(status).encode() + b"\n" + h + b"\n" + body


def doc(flow, flags, *answers):
    return bytes([flow, flags]) + SEP.join(answers)


def nonce(n):
    return b"Replay-Nonce: " + n


def problem(t, detail, status=400, extra=b""):
    return answer(status, [b"Content-Type: application/problem+json",
                           nonce(b"pn")],
                  b'{"type":"urn:ietf:params:acme:error:' + t
                  + b'","detail":"' + detail + b'"' + extra + b"}")


DIR_OK = answer(200, [b"Content-Type: application/json"], DIR)
NONCE_OK = answer(200, [nonce(b"oFvnlFP1wIhRlYS2jTaXbA")])
ACCT_OK = answer(201, [nonce(b"n-acct"), b"Location: " + CA + b"/acct/1"],
                 b'{"status":"valid","contact":[]}')
ORDER_OK = answer(201, [nonce(b"n-order"), b"Location: " + CA + b"/o/1"],
                  b'{"status":"pending","identifiers":[{"type":"dns",'
                  b'"value":"fuzz.example"}],"authorizations":["' + CA
                  + b'/authz/1"],"finalize":"' + CA + b'/o/1/fin"}')
AUTHZ_PENDING = answer(200, [nonce(b"n-az")],
                       b'{"status":"pending","identifier":{"type":"dns",'
                       b'"value":"fuzz.example"},"challenges":[{"type":'
                       b'"dns-01","url":"' + CA + b'/ch/d","token":"t0"},'
                       b'{"type":"http-01","url":"' + CA + b'/ch/1",'
                       b'"token":"DGyRejmCefe7v4NfDGDKfA","status":'
                       b'"pending"}]}')
CHALLENGE_OK = answer(200, [nonce(b"n-ch"), b"Link: <" + CA
                            + b'/authz/1>;rel="up"'],
                      b'{"type":"http-01","status":"processing"}')
AUTHZ_VALID = answer(200, [nonce(b"n-az2")], b'{"status":"valid"}')
ORDER_READY = answer(200, [nonce(b"n-o2")],
                     b'{"status":"ready","finalize":"' + CA
                     + b'/o/1/fin"}')
FINALIZE_OK = answer(200, [nonce(b"n-fin"), b"Retry-After: 3"],
                     b'{"status":"processing"}')
ORDER_VALID = answer(200, [nonce(b"n-o3")],
                     b'{"status":"valid","certificate":"' + CA
                     + b'/cert/1"}')
CERT_OK = answer(200, [nonce(b"n-cert"),
                       b"Content-Type: application/pem-certificate-chain",
                       b"Link: <" + CA + b'/cert/1/1>;rel="alternate", <'
                       + CA + b'/dir>;rel="index"',
                       b"Link: <" + CA + b"/cert/1/2>; rel=alternate"],
                 LEAF + INTER)
CERT_ALT = answer(200, [nonce(b"n-alt")], LEAF + INTER_ALT)


def acme_docs():
    w = lambda n, d: write("acme_docs", n, d)
    w("directory", doc(F_DIRECTORY, 0, DIR_OK))
    w("directory_no_ari", doc(F_DIRECTORY, 0, answer(
        200, [], b'{"newNonce":"' + CA + b'/n","newAccount":"' + CA
        + b'/a","newOrder":"' + CA + b'/o"}')))
    w("directory_http", doc(F_DIRECTORY, 0, answer(
        200, [], DIR.replace(b"https://ca.test/nonce",
                             b"http://ca.test/nonce"))))
    w("directory_html", doc(F_DIRECTORY, 0, answer(
        200, [b"Content-Type: text/html"], b"<html>maintenance</html>")))
    w("directory_503", doc(F_DIRECTORY, 0, problem(
        b"serverInternal", b"down", 503)))
    w("directory_unreachable", doc(F_DIRECTORY, 0, b"X\n\n"))
    w("directory_too_big", doc(F_DIRECTORY, 0, b"B\n\n"))

    # meta.profiles (draft-aaron-acme-profiles), with names the client
    # cannot send and descriptions that are not strings or hold controls.
    dir_profiles = DIR.replace(
        b'"meta":{', b'"meta":{"profiles":{"classic":"The same profile",'
        b'"shortlived":"6 days\u0007\n","bad name":"x","":"y",'
        b'"tlsserver":7},')
    w("directory_profiles", doc(F_DIRECTORY, 0, answer(200, [],
                                                       dir_profiles)))
    w("directory_profiles_not_object", doc(F_DIRECTORY, 0, answer(
        200, [], DIR.replace(b'"meta":{', b'"meta":{"profiles":["a"],'))))

    w("account", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK, ACCT_OK))
    w("account_existing", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK, answer(
        200, [b"Location: " + CA + b"/acct/9"], b"{}")))
    w("account_bad_nonce", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK,
                               problem(b"badNonce", b"stale"), ACCT_OK))
    w("account_rate_limited", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK, answer(
        429, [b"Retry-After: Wed, 21 Oct 2037 07:28:00 GMT"],
        b'{"type":"urn:ietf:params:acme:error:rateLimited","detail":'
        b'"too many","subproblems":[{"type":"x","detail":"y"},{}]}')))
    w("account_no_location", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK,
                                 answer(201, [nonce(b"z")], b"{}")))
    w("account_bad_location", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK, answer(
        201, [b"Location: /acct/1 \x01\xff"], b"{}")))
    w("account_nonce_missing", doc(F_ACCOUNT, 0, DIR_OK, answer(200)))
    w("account_nonce_invalid", doc(F_ACCOUNT, 0, DIR_OK, answer(
        200, [nonce(b"a+b/c=")]), answer(200, [nonce(b"")])))

    full = [DIR_OK, NONCE_OK, ACCT_OK, ORDER_OK, AUTHZ_PENDING,
            CHALLENGE_OK, AUTHZ_VALID, ORDER_READY, FINALIZE_OK,
            ORDER_VALID, CERT_OK]
    w("issue", doc(F_ISSUE, 0, *full))
    w("issue_profile", doc(F_ISSUE, PROFILE, answer(200, [], dir_profiles),
                           *full[1:]))
    w("issue_profile_not_offered", doc(F_ISSUE, PROFILE, *full))
    w("issue_preferred_alt", doc(F_ISSUE, PREFERRED | REPLACES,
                                 *(full + [CERT_ALT])))
    w("issue_preferred_none", doc(F_ISSUE, PREFERRED, *(full + [
        problem(b"malformed", b"gone", 404), CERT_OK])))
    w("issue_authz_valid", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                               ORDER_OK, AUTHZ_VALID, answer(
                                   200, [], b'{"status":"valid",'
                                   b'"finalize":"' + CA + b'/f",'
                                   b'"certificate":"' + CA + b'/c"}'),
                               answer(200, [], b'{"status":"valid",'
                                      b'"certificate":"' + CA + b'/c"}'),
                               CERT_OK))
    w("issue_invalid", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK, ORDER_OK,
                           answer(200, [], b'{"status":"invalid",'
                                  b'"challenges":[{"type":"http-01",'
                                  b'"error":{"type":"urn:ietf:params:acme:'
                                  b'error:unauthorized","detail":'
                                  b'"404 \\u00e9\\u2603"}}]}')))
    w("issue_pending_polls", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                                 ORDER_OK, AUTHZ_PENDING, CHALLENGE_OK,
                                 answer(200, [b"Retry-After: 99999"],
                                        b'{"status":"pending"}'),
                                 answer(200, [b"Retry-After: -5"],
                                        b'{"status":"processing"}'),
                                 AUTHZ_VALID))
    w("issue_http01_fails", doc(F_ISSUE, HTTP01_FAILS, DIR_OK, NONCE_OK,
                                ACCT_OK, ORDER_OK, AUTHZ_PENDING))
    w("issue_bad_token", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                             ORDER_OK, AUTHZ_PENDING.replace(
                                 b"DGyRejmCefe7v4NfDGDKfA", b"../../etc")))
    w("issue_order_http_location", doc(F_ISSUE, 0, DIR_OK, NONCE_OK,
                                       ACCT_OK, ORDER_OK.replace(
                                           b"Location: https",
                                           b"Location: http")))
    w("issue_no_pem", doc(F_ISSUE, 0, *(full[:-1] + [answer(
        200, [], b"-----BEGIN CERTIFICATE-----\nAAAA\n"
        b"-----END CERTIFICATE-----\n")])))
    w("issue_subproblems", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                               problem(b"rejectedIdentifier", b"no",
                                       extra=b',"subproblems":[' + b",".join(
                                           [b'{"type":"urn:ietf:params:acme'
                                            b':error:caa","detail":"d'
                                            + str(i).encode() + b'"}'
                                            for i in range(40)]) + b"]")))

    w("account_http_nonce_url", doc(F_ACCOUNT, 0, answer(200, [], DIR.replace(
        b"https://ca.test/nonce", b"http://ca.test/nonce"))))
    w("account_bad_nonce_forever", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK,
                                       *([problem(b"badNonce", b"x")] * 6)))
    w("account_429_no_retry_after", doc(F_ACCOUNT, 0, DIR_OK, NONCE_OK,
                                        answer(429, [], b"slow down")))
    w("directory_incomplete", doc(F_DIRECTORY, 0, answer(
        200, [], b'{"newNonce":"' + CA + b'/n"}')))
    w("key_change_none", doc(F_KEY_CHANGE, 0, answer(200, [], DIR.replace(
        b'"keyChange"', b'"keyChangeX"')), NONCE_OK, ACCT_OK))
    w("revoke_none", doc(F_REVOKE, 0, answer(200, [], DIR.replace(
        b'"revokeCert"', b'"revokeCertX"')), NONCE_OK, ACCT_OK))
    w("issue_order_pending_timeout", doc(F_ISSUE, 0, DIR_OK, NONCE_OK,
                                         ACCT_OK, ORDER_OK, AUTHZ_VALID,
                                         *([answer(200, [nonce(b"p")],
                                                   b'{"status":"pending"}')]
                                           * 3)))
    w("issue_not_ready", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK, ORDER_OK,
                             AUTHZ_VALID, answer(200, [], b'{"status":'
                                                 b'"invalid"}')))
    w("account_nonce_unreachable", doc(F_ACCOUNT, 0, DIR_OK, b"X\n\n"))
    w("issue_authz_not_string", doc(F_ISSUE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                                    ORDER_OK.replace(b'"authorizations":["',
                                                     b'"authorizations":[7,'
                                                     b'null,"'),
                                    AUTHZ_VALID, ORDER_READY,
                                    problem(b"badCSR", b"no", 400)))
    w("key_change", doc(F_KEY_CHANGE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                        answer(200, [nonce(b"k")], b"{}")))
    w("key_change_conflict", doc(F_KEY_CHANGE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                                 answer(409, [b"Location: " + CA
                                              + b"/acct/2"],
                                        b'{"type":"urn:ietf:params:acme:'
                                        b'error:malformed"}')))
    w("revoke", doc(F_REVOKE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                    answer(200, [nonce(b"r")])))
    w("revoke_already", doc(F_REVOKE, 0, DIR_OK, NONCE_OK, ACCT_OK,
                            problem(b"alreadyRevoked", b"yes")))

    w("ari", doc(F_ARI, 0, DIR_OK, answer(
        200, [b"Retry-After: 21600"],
        b'{"suggestedWindow":{"start":"2027-05-01T00:00:00Z",'
        b'"end":"2027-05-03T00:00:00.5+02:00"},'
        b'"explanationURL":"' + CA + b'/why"}')))
    w("ari_inverted", doc(F_ARI, 0, DIR_OK, answer(
        200, [], b'{"suggestedWindow":{"start":"2027-05-03T00:00:00Z",'
        b'"end":"2027-05-01T00:00:00Z"}}')))
    w("ari_404", doc(F_ARI, 0, DIR_OK, problem(b"malformed", b"unknown",
                                               404)))
    w("ari_none", doc(F_ARI, 0, answer(200, [], DIR.replace(
        b'"renewalInfo"', b'"renewalInfoX"'))))
    w("ari_no_slash", doc(F_ARI, 0, answer(200, [], DIR.replace(
        b"/ari/", b"/ari")), answer(200, [], b'{"suggestedWindow":'
                                    b'{"start":"2027-05-01t00:00:00z",'
                                    b'"end":"2027-05-02 00:00:00-01:30"}}')))

    w("headers", doc(F_HEADERS, 0, answer(200, [
        b"Retry-After: 120", b"Retry-After: Sun, 06 Nov 1994 08:49:37 GMT",
        b"Retry-After: 99999999999999999999", b"Retry-After: -1",
        b"Retry-After: \t 7 ", b"Retry-After: soon",
        b"Link: <https://ca.test/a>;rel=\"alternate\",<x>;rel=alternate",
        b"Link: <https://ca.test/b>, junk, <>;rel=alternate",
        b"Replay-Nonce: abc_-09", b"Location: https://ca.test/l"])))
    w("jws", doc(F_JWS, 0, b'{"protected":"eyJhbGciOiJFUzI1NiJ9",'
                 b'"payload":"","signature":"' + b"A" * 86 + b'"}'))


def main():
    x509_chain()
    acme_docs()


if __name__ == "__main__":
    sys.exit(main())
