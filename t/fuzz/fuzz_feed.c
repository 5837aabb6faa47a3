/*
 * fuzz_feed.c: libFuzzer harness for what a proxy reads from CertService:
 * the change feed (GET /v1/changes), the bundles (POST /v1/bundles) and
 * the lease answers, as the sync client parses them
 * (mod_certsync/csy_sync.c), over a stub transport (lib/cs_http.h) that
 * answers from the input, into a real store (csy_store.c) on /dev/shm.
 *
 * Input: one flags byte, then the answers, one per request, separated by
 * "\n--\n".  An answer starting "HTTP " is "HTTP <status>[ <Name: value>]"
 * on its first line and the body after it; any other answer is a 200 with
 * that body.  A request after the last answer fails like an unreachable
 * server.  In bodies, $KEY, $RKEY and $OKEY become the base64 envelope
 * (to the fixed wrapping certificate, fuzz_pki.h) of the EC leaf key, the
 * RSA leaf key and a key of no certificate; $CHAIN and $RCHAIN the
 * JSON-escaped chain PEM of the EC leaf (example.com, *.example.com,
 * xn--bcher-kva.example) and of the RSA leaf (rsa.example.com); so valid
 * bundles are one token away.  Flags: 1 keep envelopes (dynamic mode),
 * 2 the store already serves example.com (serial "aa", cursor 5), 4
 * serial 1002 of example.com is quarantined, 8 no sealing keys, 0x30
 * batch size - 1, 0x40 www.example.com failed in an earlier cycle.
 *
 * One cycle (csy_sync_once), then from the answers left a lease
 * (csy_lease_acquire), its release and a report (csy_lease_release,
 * csy_report).  Invariants (abort otherwise):
 *  - success exactly when there is no error text; the cursor never goes
 *    back, and the store holds the one the result says;
 *  - every name in the manifest is a normalised domain name, once, with
 *    a current version whose chain and key pass cs_bundle_verify now,
 *    whose private key belongs to the certificate (cs_key_belongs), and
 *    whose key.seal, if any, opens to that key; in dynamic mode a worker
 *    (csy_bundle_load) reads the same leaf, chain and key; a domain made
 *    current and still served is at the serial the result says;
 *  - the client asks only for valid names, at most batch size at a time,
 *    never the same twice in a batch, the feed from no earlier than its
 *    cursor, and releases only the lease it was granted;
 *  - log lines and error texts are one printable line (no control
 *    characters from the answers);
 *  - a lease granted is a lease name as the API defines it (1 to 64 of
 *    A-Z a-z 0-9 . _ -), a refusal waits 1 to 3600 s.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to
 * run the corpus in `make check` without libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/err.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_layout.h"
#include "cs_name.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_dyn.h"
#include "csy_store.h"
#include "csy_sync.h"
#include "fuzz_pki.h"
#include "testkit.h"

#include "fuzz.h"

#define CS_URL      "https://cs.test"
#define SEP         "\n--\n"

static apr_pool_t *root;
static fuzz_pki_t pki;
static const char *tok_key, *tok_rkey, *tok_okey, *tok_chain, *tok_rchain;
static const char *aa_env;              /* example.com serial aa */
static apr_size_t aa_env_len;
/* The envelopes behind the tokens (DER) and their keys: a key.cms the
 * client stored is one of them, checked without another RSA operation. */
static struct { unsigned char *der; apr_size_t len; EVP_PKEY *key; } known[3];
static char base[] = "/dev/shm/fuzz-feed-XXXXXX";

/* ------------------------------------------------------------------ */
/* The stub transport                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *in;             /* the answers left */
    apr_size_t left;
    long long since;            /* the last feed request's cursor */
    int batch;
    int requests;
    const char *lease;          /* granted: what a DELETE may name */
} stub_t;

/* body with the tokens replaced, from p. */
static char *expand(apr_pool_t *p, const char *body, apr_size_t len,
                    apr_size_t *olen)
{
    static const struct { const char *tok; const char **val; } t[] = {
        { "$KEY", &tok_key }, { "$RKEY", &tok_rkey },
        { "$OKEY", &tok_okey }, { "$CHAIN", &tok_chain },
        { "$RCHAIN", &tok_rchain }
    };
    apr_size_t cap = len + 1, n = 0, i, k, tl, vl;
    char *out = apr_palloc(p, cap), *bigger;

    for (i = 0; i < len;) {
        const char *val = NULL;

        if (body[i] == '$') {
            for (k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
                tl = strlen(t[k].tok);
                /* the longest token wins ($RKEY, not $R...) */
                if (len - i >= tl && memcmp(body + i, t[k].tok, tl) == 0
                    && (!val || tl > strlen(val))) {
                    val = t[k].tok;
                }
            }
        }
        if (val) {
            for (k = 0; strcmp(t[k].tok, val) != 0; k++) {
            }
            vl = strlen(*t[k].val);
            if (n + vl + 1 > cap) {
                cap = (n + vl + 1) * 2 + (len - i);
                bigger = apr_palloc(p, cap);
                memcpy(bigger, out, n);
                out = bigger;
            }
            memcpy(out + n, *t[k].val, vl);
            n += vl;
            i += strlen(val);
            continue;
        }
        if (n + 2 > cap) {
            cap = cap * 2 + 2;
            bigger = apr_palloc(p, cap);
            memcpy(bigger, out, n);
            out = bigger;
        }
        out[n++] = body[i++];
    }
    out[n] = '\0';
    *olen = n;
    return out;
}

/* What the client asks: valid names, batch size at most, no repeat; the
 * feed from no earlier than before. */
static void check_request(stub_t *s, const cs_http_req_t *req,
                          apr_pool_t *rp)
{
    const char *q;
    json_t *body, *arr, *v;
    apr_hash_t *seen;
    apr_pool_t *p;
    size_t i;

    REQUIRE(strncmp(req->url, CS_URL "/v1/", sizeof(CS_URL "/v1/") - 1)
            == 0);
    if (strcmp(req->method, "GET") == 0
        && (q = strstr(req->url, "/v1/changes?since=")) != NULL) {
        long long since = strtoll(q + sizeof("/v1/changes?since=") - 1,
                                  NULL, 10);
        REQUIRE(since >= s->since);
        s->since = since;
    }
    else if (strcmp(req->method, "DELETE") == 0) {
        /* Only the lease granted, in the pool's path. */
        REQUIRE(s->lease != NULL);
        REQUIRE(strcmp(req->url, apr_pstrcat(rp, CS_URL
                                             "/v1/pools/web/leases/",
                                             s->lease, NULL)) == 0);
    }
    else if (strcmp(req->method, "POST") == 0
             && strcmp(req->url, CS_URL "/v1/bundles") == 0) {
        body = json_loadb(req->body, req->body_len, 0, NULL);
        REQUIRE(body != NULL);
        arr = json_object_get(body, "domains");
        REQUIRE(json_is_array(arr));
        REQUIRE(json_array_size(arr) >= 1
                && json_array_size(arr) <= (size_t)s->batch);
        apr_pool_create(&p, root);
        seen = apr_hash_make(p);
        json_array_foreach(arr, i, v) {
            const char *d = json_string_value(v), *norm;
            REQUIRE(d != NULL);
            REQUIRE(cs_name_normalize(&norm, p, d) == NULL);
            REQUIRE(strcmp(norm, d) == 0);
            REQUIRE(apr_hash_get(seen, d, APR_HASH_KEY_STRING) == NULL);
            apr_hash_set(seen, d, APR_HASH_KEY_STRING, d);
        }
        apr_pool_destroy(p);
        json_decref(body);
    }
}

static apr_status_t stub_send(void *baton, cs_http_resp_t *resp,
                              const cs_http_req_t *req, apr_pool_t *p,
                              const char **err)
{
    stub_t *s = baton;
    const char *chunk, *end, *nl, *h;
    apr_size_t clen;

    check_request(s, req, p);
    s->requests++;
    if (!s->in) {
        *err = apr_psprintf(p, "%s %s: stub: no more answers", req->method,
                            req->url);
        return APR_ECONNREFUSED;
    }
    chunk = s->in;
    end = s->left ? memmem(s->in, s->left, SEP, sizeof(SEP) - 1) : NULL;
    if (end) {
        clen = (apr_size_t)(end - chunk);
        s->left -= clen + sizeof(SEP) - 1;
        s->in = end + sizeof(SEP) - 1;
    }
    else {
        clen = s->left;
        s->in = NULL;
        s->left = 0;
    }
    memset(resp, 0, sizeof(*resp));
    resp->headers = apr_table_make(p, 2);
    resp->status = 200;
    if (clen >= 8 && memcmp(chunk, "HTTP ", 5) == 0) {
        nl = memchr(chunk, '\n', clen);
        h = apr_pstrmemdup(p, chunk + 5, nl ? (apr_size_t)(nl - chunk) - 5
                                            : clen - 5);
        resp->status = strtol(h, (char **)&h, 10);
        if (*h == ' ' && strchr(h + 1, ':')) {
            const char *colon = strchr(h + 1, ':');
            apr_table_set(resp->headers,
                          apr_pstrmemdup(p, h + 1, (apr_size_t)(colon - h
                                                                - 1)),
                          colon + 1 + (colon[1] == ' '));
        }
        if (nl) {
            clen -= (apr_size_t)(nl + 1 - chunk);
            chunk = nl + 1;
        }
        else {
            chunk += clen;
            clen = 0;
        }
    }
    resp->body = expand(p, chunk, clen, &resp->len);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static void require_line(const char *s)
{
    for (; *s; s++) {
        REQUIRE((unsigned char)*s >= 0x20 && *s != 0x7f);
    }
}

static void log_cb(void *baton, cs_log_level_t level, const char *msg)
{
    (void)baton;
    (void)level;
    REQUIRE(msg != NULL);
    require_line(msg);
}

/* One served domain: a current version that is a valid bundle. */
static void check_served(csy_store_t *store, apr_pool_t *p, const char *d,
                         int envelopes, const char *made)
{
    const char *serial = csy_store_current(store, p, d), *dir, *err, *norm;
    apr_array_header_t *chain;
    EVP_PKEY *key = NULL, *sealed = NULL;
    char *buf;
    apr_size_t len;
    int i;

    REQUIRE(cs_name_normalize(&norm, p, d) == NULL && strcmp(norm, d) == 0);
    REQUIRE(serial != NULL);
    if (made) {
        REQUIRE(strcmp(serial, made) == 0);
    }
    dir = csy_store_version_dir(store, p, d, serial);
    REQUIRE(cs_file_read_certs(&chain, p, apr_pstrcat(p, dir, "/"
                                                      CS_LAYOUT_CHAIN, NULL),
                               &err) == APR_SUCCESS);
    if (csy_store_read_file(&buf, &len, p, apr_pstrcat(p, dir, "/"
                                                       CS_LAYOUT_ENVELOPE,
                                                       NULL))
        == APR_SUCCESS) {
        for (i = 0; i < 3 && !key; i++) {
            if (len == known[i].len && memcmp(buf, known[i].der, len) == 0) {
                key = known[i].key;
            }
        }
        if (!key && (len != aa_env_len || memcmp(buf, aa_env, len) != 0)) {
            REQUIRE(cs_envelope_open(&key, p, (unsigned char *)buf, len,
                                     pki.wrap, pki.wrap_key, &err)
                    == APR_SUCCESS);
        }
        else if (!key) {
            key = pki.leaf_key;
        }
    }
    else {
        /* A proxy that keeps envelopes never writes privkey.pem. */
        REQUIRE(!envelopes);
        REQUIRE(cs_file_read_key(&key, p, apr_pstrcat(p, dir, "/"
                                                      CS_LAYOUT_KEY, NULL),
                                 &err) == APR_SUCCESS);
    }
    REQUIRE(cs_bundle_verify(chain, key, d, apr_time_now(), &err)
            == APR_SUCCESS);
    REQUIRE(cs_key_belongs(key, X509_get0_pubkey(APR_ARRAY_IDX(chain, 0,
                                                              X509 *))));
    if (envelopes) {
        /* A worker reads what the daemon verified (its own PEM reading,
         * csy_dyn.c): the same leaf, chain and key. */
        csy_bundle_t *b = NULL;
        char why[512];

        why[0] = '\0';
        if (csy_bundle_load(&b, csy_store_dir(store), d, pki.wrap_certs,
                            pki.wrap_keys, why, sizeof(why))
            != APR_SUCCESS) {
            fprintf(stderr, "worker cannot load %s: %s\n", d, why);
            abort();
        }
        REQUIRE(X509_cmp(b->leaf, APR_ARRAY_IDX(chain, 0, X509 *)) == 0);
        REQUIRE(sk_X509_num(b->chain) == chain->nelts - 1);
        for (i = 1; i < chain->nelts; i++) {
            REQUIRE(X509_cmp(sk_X509_value(b->chain, i - 1),
                             APR_ARRAY_IDX(chain, i, X509 *)) == 0);
        }
        REQUIRE(EVP_PKEY_eq(b->key, key) == 1);
        REQUIRE(strcmp(b->serial, serial) == 0);
        csy_bundle_release(b);
    }
    if (csy_store_read_file(&buf, &len, p, apr_pstrcat(p, dir, "/"
                                                       CS_LAYOUT_SEAL, NULL))
        == APR_SUCCESS) {
        for (i = 0; i < pki.seal_keys->nelts; i++) {
            if (cs_seal_open(&sealed, (unsigned char *)buf, len,
                             APR_ARRAY_IDX(chain, 0, X509 *),
                             &APR_ARRAY_IDX(pki.seal_keys, i,
                                            cs_seal_key_t), d, serial,
                             &err) == APR_SUCCESS) {
                break;
            }
        }
        REQUIRE(sealed != NULL);
        REQUIRE(EVP_PKEY_eq(sealed, key) == 1);
        EVP_PKEY_free(sealed);
    }
}

static void check_store(csy_store_t *store, apr_pool_t *p,
                        const csy_result_t *res, int envelopes)
{
    apr_array_header_t *served;
    apr_hash_t *seen = apr_hash_make(p);
    apr_hash_index_t *hi;
    long long cursor;
    int i;

    REQUIRE(csy_store_cursor_get(&cursor, store, p) == APR_SUCCESS);
    REQUIRE(cursor == res->cursor_after);
    REQUIRE(res->cursor_after >= res->cursor_before);
    REQUIRE(csy_store_manifest_read(&served, store, p) == APR_SUCCESS);
    for (i = 0; i < served->nelts; i++) {
        const char *d = APR_ARRAY_IDX(served, i, const char *);
        REQUIRE(apr_hash_get(seen, d, APR_HASH_KEY_STRING) == NULL);
        apr_hash_set(seen, d, APR_HASH_KEY_STRING, d);
        check_served(store, p, d, envelopes,
                     apr_hash_get(res->made_current, d,
                                  APR_HASH_KEY_STRING));
    }
    REQUIRE(res->installed >= (int)apr_hash_count(res->made_current));
    for (hi = apr_hash_first(p, res->failures); hi; hi = apr_hash_next(hi)) {
        const char *d = apr_hash_this_key(hi), *norm;
        REQUIRE(cs_name_normalize(&norm, p, d) == NULL);
        require_line(apr_hash_this_val(hi));
    }
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

static const char *envelope_b64(int i, EVP_PKEY *key)
{
    const char *err;

    REQUIRE(cs_envelope_seal(&known[i].der, &known[i].len, root, key,
                             pki.wrap_certs, &err) == APR_SUCCESS);
    known[i].key = key;
    return cs_base64_encode(root, known[i].der, known[i].len);
}

/* The PEM text as the inside of a JSON string. */
static const char *json_inner(const char *pem)
{
    json_t *s = json_string(pem);
    char *text = json_dumps(s, JSON_ENCODE_ANY);
    const char *inner;

    REQUIRE(text != NULL && strlen(text) >= 2);
    inner = apr_pstrmemdup(root, text + 1, strlen(text) - 2);
    free(text);
    json_decref(s);
    return inner;
}

static void cleanup(void)
{
    rmdir(base);
    apr_pool_destroy(root);
}

static void init(void)
{
    unsigned char *der;
    const char *err;

    if (root) {
        return;
    }
    apr_initialize();
    apr_pool_create(&root, NULL);
    fuzz_pki_load(&pki, root);
    tok_key = envelope_b64(0, pki.leaf_key);
    tok_rkey = envelope_b64(1, pki.rleaf_key);
    tok_okey = envelope_b64(2, pki.other_key);
    tok_chain = json_inner(pki.chain_pem);
    tok_rchain = json_inner(pki.rchain_pem);
    REQUIRE(cs_envelope_seal(&der, &aa_env_len, root, pki.leaf_key,
                             pki.wrap_certs, &err) == APR_SUCCESS);
    aa_env = (const char *)der;
    if (access("/dev/shm", W_OK) != 0) {
        memcpy(base, "/tmp/fuzz-feed-XXXXXX",
               sizeof("/tmp/fuzz-feed-XXXXXX"));
    }
    REQUIRE(mkdtemp(base) != NULL);
    atexit(cleanup);
}

/* The store as the flags say: empty, or serving example.com. */
static csy_store_t *make_store(apr_pool_t *p, const char *dir, int flags)
{
    apr_array_header_t *list;
    csy_store_t *store;
    char *pem;
    apr_size_t pem_len;

    REQUIRE(csy_store_open(&store, p, dir) == APR_SUCCESS);
    if (flags & 2) {
        if (flags & 1) {
            REQUIRE(csy_store_install(store, p, "example.com", "aa",
                                      pki.chain_pem, aa_env, aa_env_len, 1)
                    == APR_SUCCESS);
        }
        else {
            pem = cs_pem_write_key(p, pki.leaf_key, &pem_len);
            REQUIRE(pem != NULL);
            REQUIRE(csy_store_install(store, p, "example.com", "aa",
                                      pki.chain_pem, pem, pem_len, 0)
                    == APR_SUCCESS);
        }
        list = apr_array_make(p, 1, sizeof(const char *));
        APR_ARRAY_PUSH(list, const char *) = "example.com";
        REQUIRE(csy_store_manifest_write(store, p, list) == APR_SUCCESS);
        REQUIRE(csy_store_cursor_set(store, 5, p) == APR_SUCCESS);
    }
    return store;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csy_config_t cfg;
    csy_client_t *client;
    csy_result_t res;
    csy_store_t *store;
    stub_t stub;
    cs_http_t http;
    apr_hash_t *failures;
    apr_pool_t *p, *keep;
    const char *dir, *lease = NULL, *err = NULL;
    long retry = -1;
    apr_status_t rv;
    int flags, i;

    if (size < 1 || size > 256 * 1024) {
        return 0;
    }
    init();
    flags = data[0];
    apr_pool_create(&p, root);
    apr_pool_create(&keep, root);
    dir = apr_pstrcat(p, base, "/s", NULL);
    store = make_store(p, dir, flags);

    memset(&stub, 0, sizeof(stub));
    stub.in = (const char *)data + 1;
    stub.left = size - 1;
    stub.batch = ((flags >> 4) & 3) + 1;
    http.send = stub_send;
    http.baton = &stub;

    memset(&cfg, 0, sizeof(cfg));
    cfg.url = CS_URL;
    cfg.http = &http;
    cfg.wrap_certs = pki.wrap_certs;
    cfg.wrap_keys = pki.wrap_keys;
    cfg.seal_keys = (flags & 8) ? NULL : pki.seal_keys;
    cfg.batch_size = stub.batch;
    cfg.keep_envelopes = flags & 1;
    cfg.pool_name = "web";
    cfg.host_name = "h1";
    cfg.log = log_cb;
    if (flags & 4) {
        cfg.quarantine = apr_hash_make(p);
        apr_hash_set(cfg.quarantine, "example.com", APR_HASH_KEY_STRING,
                     "1002");
    }
    failures = apr_hash_make(keep);
    if (flags & 0x40) {
        apr_hash_set(failures, "www.example.com", APR_HASH_KEY_STRING,
                     "earlier");
    }
    REQUIRE(csy_client_create(&client, p, &cfg) == APR_SUCCESS);

    rv = csy_sync_once(&res, client, store, failures, p);
    REQUIRE((rv == APR_SUCCESS) == (res.error == NULL));
    if (res.error) {
        require_line(res.error);
    }
    REQUIRE(res.failures == failures);
    check_store(store, p, &res, flags & 1);

    /* A restart lease from what is left. */
    if (stub.in) {
        rv = csy_lease_acquire(&lease, &retry, client, p, 60, &err);
        if (rv == APR_SUCCESS) {
            REQUIRE(lease != NULL);
            REQUIRE(strlen(lease) >= 1 && strlen(lease) <= 64);
            for (i = 0; lease[i]; i++) {
                REQUIRE(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789._-",
                               lease[i]) != NULL);
            }
        }
        else if (rv == APR_EAGAIN) {
            REQUIRE(retry >= 1 && retry <= 3600);
        }
        else {
            REQUIRE(lease == NULL && err != NULL);
            require_line(err);
        }
    }
    /* Its release, and the report, from what is left (only statuses are
     * read; check_request sees what is sent). */
    if (stub.in && lease) {
        stub.lease = lease;
        rv = csy_lease_release(client, p, lease);
        REQUIRE(rv == APR_SUCCESS || rv == APR_EGENERAL);
    }
    if (stub.in) {
        rv = csy_report(client, p, res.cursor_after, "idle", failures);
        REQUIRE(rv == APR_SUCCESS || rv == APR_EGENERAL);
    }

    testkit_rm_tree(dir);
    apr_pool_destroy(p);
    apr_pool_destroy(keep);
    ERR_clear_error();
    return 0;
}
