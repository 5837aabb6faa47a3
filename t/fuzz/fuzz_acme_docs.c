/*
 * fuzz_acme_docs.c: libFuzzer harness for everything an ACME CA sends
 * back to the client (lib/cs_acme.c, cs_acme_order.c): the directory,
 * account, order, authorization, challenge and problem documents, the
 * Replay-Nonce, Retry-After, Link and Location headers, ARI answers and
 * the PEM chain of a download, through the real client and its real parse
 * paths over a transport (cs_http.h) that answers from the input.
 *
 * Input: byte 0 picks a flow (directory, account, issue, key change,
 * revoke, renewal info, one answer's headers and error mapping, a JWS),
 * byte 1 holds flags (a preferred chain, an ARI "replaces", an http-01
 * responder that fails, a profile), then the CA's answers in order, separated by
 * "\n@@\n".  An answer is a status line ("201"; "X": no answer at all;
 * "B": a body over the size limit), header lines as libcurl hands them to
 * cs_http_curl.c (parsed the same way), an empty line, the body (any
 * bytes).  When the answers run out the CA is unreachable, so every flow
 * ends.  t/fuzz/make_corpus_acme.py writes the seeds.
 *
 * Invariants (besides ASan/UBSan/LSan):
 *  - every request goes to an absolute https URL of printable ASCII;
 *    every POST is a JWS for that URL with exactly one of kid and jwk and
 *    the nonce of the last answer since the previous POST that brought a
 *    valid one (base64url, at most 255 characters);
 *  - the account URL (kid) is the newAccount answer's Location and an
 *    https URL; the client's nonce is empty or valid;
 *  - a Retry-After is within 0..7 days; a rate limit (APR_EAGAIN) has
 *    one of at least a second; waits between polls are 1..10 s (slept
 *    in slices of 100 ms, so that a stop is not kept waiting);
 *  - results are one of the documented statuses; an error has a text,
 *    valid UTF-8, without control characters, at most 1023 bytes; log
 *    lines likewise;
 *  - an issued chain is a chain the CA sent (DER for DER) with its leaf
 *    first; the default one unless it does not match the preferred
 *    issuer and an alternate does; every challenge answer published is taken
 *    down again, and its key authorization is token.thumbprint;
 *  - an ARI window has start < end, and was asked for at
 *    renewalInfo/<certificate id>;
 *  - the directory's profiles are names the client may send with texts
 *    fit for a log line; an order with a profile succeeds only when the
 *    directory offered it.
 *
 * apr_sleep() is replaced here (the poll's wait): the harness must not
 * sleep, and it checks what the client asked to wait.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to run
 * the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>

#include <apr_strings.h>
#include <apr_time.h>
#include <jansson.h>
#include <openssl/x509.h>

#include "cs_acme.h"
#include "cs_acme_private.h"
#include "cs_crypto.h"
#include "cs_http.h"
#include "cs_jws.h"
#include "fuzz_acme_common.h"

#define CA_DIR          "https://ca.test/dir"
#define DOMAIN          "fuzz.example"
#define PREFERRED       "Fuzz Alt Root"
#define ERR_MAX         1023
#define SEP             "\n@@\n"

enum {
    F_DIRECTORY, F_ACCOUNT, F_ISSUE, F_KEY_CHANGE, F_REVOKE, F_ARI,
    F_HEADERS, F_JWS, F_COUNT
};
#define FL_PREFERRED    1
#define FL_REPLACES     2
#define FL_HTTP01_FAILS 4
#define FL_PROFILE      8
#define PROFILE         "shortlived"

/* The leaf of t/fuzz/acme_pki (an AKI, a 16-byte serial). */
static const char leaf_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIB1DCCAXmgAwIBAgIQAKGyw9Tl9gcYKTpLXG1+jzAKBggqhkjOPQQDAjAcMRow\n"
    "GAYDVQQDDBFGdXp6IEludGVybWVkaWF0ZTAgFw0yNjEyMDUxMTMwNDlaGA8yMTI2\n"
    "MTExMTExMzA0OVowFzEVMBMGA1UEAwwMZnV6ei5leGFtcGxlMFkwEwYHKoZIzj0C\n"
    "AQYIKoZIzj0DAQcDQgAE3tHw7RA+rsi1jdnDbxBMSat1s4xWaDA5NKQmRzrKP8FG\n"
    "9+wGzrQqbeeuC/gEoWXeAXmX/QOI9KiPW4XxNfuduqOBnzCBnDAMBgNVHRMBAf8E\n"
    "AjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4E\n"
    "FgQUFPzCizKYqnrFKghszdl86inNy4wwHwYDVR0jBBgwFoAUtTn0lTg9pJRVzULN\n"
    "wokMt2akXUwwJwYDVR0RBCAwHoIMZnV6ei5leGFtcGxlgg4qLmZ1enouZXhhbXBs\n"
    "ZTAKBggqhkjOPQQDAgNJADBGAiEAs340jvhn7Ub/7cKP3wboMQiDVwcqI/7DIDgG\n"
    "w/A+LrkCIQDzyGjEN+bZQrRwANTGv+0zdKTKgV5riTj0J+5Br+GY+Q==\n"
    "-----END CERTIFICATE-----\n";

static EVP_PKEY *account_key, *new_account_key;
static X509 *leaf_cert;
static const char *account_thumb;

typedef struct {
    const char *data;
    apr_size_t len;
} body_t;

/* The CA: the answers left in the input, and what it saw. */
typedef struct {
    apr_pool_t *p;
    const uint8_t *next, *end;
    int requests;
    char nonce[256];            /* the valid nonce the client should send */
    const char *location;       /* of the last answer */
    const char *last_url;
    apr_array_header_t *chains; /* bodies served as a chain: body_t */
    int published;              /* challenge answers up */
    int waits;                  /* 100 ms slices slept */
    int slices;                 /* ... since the last request */
} ca_t;

static ca_t *ca;                /* the current input's (the sleep hook) */

/* The client's poll waits come here (see the top of this file). */
void apr_sleep(apr_interval_time_t t)
{
    REQUIRE(t == apr_time_from_msec(100));
    if (ca) {
        ca->waits++;
        ca->slices++;
    }
}

static int url_ok(const char *u)
{
    const unsigned char *c;

    if (!u || strncmp(u, "https://", 8) != 0 || !u[8]) {
        return 0;
    }
    for (c = (const unsigned char *)u; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7F) {
            return 0;
        }
    }
    return 1;
}

static int nonce_valid(const char *n)
{
    size_t len = strlen(n);

    return len >= 1 && len <= 255 && fuzz_b64url_only(n, len);
}

/* An error or log text: bounded, valid UTF-8, one line. */
static void check_text_max(const char *s, size_t max)
{
    const unsigned char *c;

    REQUIRE(s != NULL);
    REQUIRE(strlen(s) <= max);
    REQUIRE(fuzz_utf8_ok(s));
    for (c = (const unsigned char *)s; *c; c++) {
        REQUIRE(*c >= 0x20 && *c != 0x7F);
    }
}

static void check_text(const char *s)
{
    check_text_max(s, ERR_MAX);
}

static void on_log(void *baton, cs_log_level_t level, const char *msg)
{
    (void)baton;
    (void)level;
    check_text(msg);
}

/* The next answer's bytes, or NULL when the input has no more. */
static int next_answer(const uint8_t **a, size_t *alen)
{
    const uint8_t *s = ca->next, *e;
    size_t left;

    if (s >= ca->end) {
        return 0;
    }
    left = (size_t)(ca->end - s);
    e = memmem(s, left, SEP, sizeof(SEP) - 1);
    *a = s;
    *alen = e ? (size_t)(e - s) : left;
    ca->next = e ? e + sizeof(SEP) - 1 : ca->end;
    return 1;
}

/* One header line, the way cs_http_curl.c's on_header() takes it. */
static void add_header(apr_table_t *t, apr_pool_t *p, const uint8_t *l,
                       size_t n)
{
    char *line = apr_pstrndup(p, (const char *)l, n), *v, *end;

    while ((end = line + strlen(line)) > line
           && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '
               || end[-1] == '\t')) {
        end[-1] = '\0';
    }
    if (strncmp(line, "HTTP/", 5) == 0) {
        apr_table_clear(t);
        return;
    }
    if (!(v = strchr(line, ':')) || v == line) {
        return;
    }
    *v++ = '\0';
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    apr_table_addn(t, line, v);
}

/* The protected header of a POST: for the URL, one of kid and jwk, the
 * expected nonce, never a nonce twice. */
static void check_post(const cs_http_req_t *req, apr_pool_t *p)
{
    json_t *j, *h;
    const char *prot, *n;
    unsigned char *raw;
    apr_size_t len;

    REQUIRE(req->body != NULL && req->body_len == strlen(req->body));
    j = json_loads(req->body, 0, NULL);
    REQUIRE(j != NULL);
    prot = json_string_value(json_object_get(j, "protected"));
    REQUIRE(prot && cs_b64url_decode(&raw, &len, p, prot) == APR_SUCCESS);
    h = json_loadb((const char *)raw, len, 0, NULL);
    REQUIRE(h != NULL);
    REQUIRE(json_string_value(json_object_get(h, "url"))
            && strcmp(json_string_value(json_object_get(h, "url")),
                      req->url) == 0);
    REQUIRE(!json_object_get(h, "kid") != !json_object_get(h, "jwk"));
    if (json_object_get(h, "kid")) {
        REQUIRE(url_ok(json_string_value(json_object_get(h, "kid"))));
    }
    n = json_string_value(json_object_get(h, "nonce"));
    REQUIRE(n != NULL && nonce_valid(n));
    /* The challenge is answered ("{}") only with its token published. */
    if (json_string_value(json_object_get(j, "payload"))
        && strcmp(json_string_value(json_object_get(j, "payload")), "e30")
           == 0) {
        REQUIRE(ca->published >= 1);
    }
    /* Given since the last POST (the CA's to repeat one or not). */
    REQUIRE(strcmp(n, ca->nonce) == 0);
    ca->nonce[0] = '\0';
    json_decref(h);
    json_decref(j);
}

static apr_status_t ca_send(void *baton, cs_http_resp_t *resp,
                            const cs_http_req_t *req, apr_pool_t *p,
                            const char **err)
{
    const uint8_t *a, *nl, *end;
    const char *accept = NULL, *n;
    const char *const *hp;
    size_t alen;
    long status = 0;
    int digits = 0;

    (void)baton;
    ca->requests++;
    /* A wait before this request: 1..10 s in all. */
    REQUIRE(ca->slices == 0 || (ca->slices >= 10 && ca->slices <= 100));
    ca->slices = 0;
    REQUIRE(url_ok(req->url));
    REQUIRE(strcmp(req->method, "GET") == 0
            || strcmp(req->method, "HEAD") == 0
            || strcmp(req->method, "POST") == 0);
    REQUIRE((strcmp(req->method, "POST") == 0) == (req->body != NULL));
    for (hp = req->headers; hp && *hp; hp++) {
        if (strncmp(*hp, "Accept: ", 8) == 0) {
            accept = *hp + 8;
        }
    }
    if (req->body) {
        check_post(req, p);
    }
    ca->last_url = apr_pstrdup(ca->p, req->url);
    resp->headers = apr_table_make(p, 4);
    if (!next_answer(&a, &alen)) {
        *err = "fuzz: the CA has nothing more to say";
        return APR_ECONNREFUSED;
    }
    end = a + alen;
    nl = memchr(a, '\n', alen);
    nl = nl ? nl : end;
    if (a < nl && *a == 'X') {
        *err = "fuzz: no answer";
        return APR_ECONNREFUSED;
    }
    if (a < nl && *a == 'B') {
        *err = "fuzz: body too large";
        return APR_ENOSPC;
    }
    for (; a < nl && digits < 3 && *a >= '0' && *a <= '9'; a++, digits++) {
        status = status * 10 + (*a - '0');
    }
    a = nl < end ? nl + 1 : end;
    /* Header lines up to an empty one. */
    while (a < end) {
        nl = memchr(a, '\n', (size_t)(end - a));
        nl = nl ? nl : end;
        if (nl == a || (nl == a + 1 && *a == '\r')) {
            a = nl < end ? nl + 1 : end;
            break;
        }
        add_header(resp->headers, p, a, (size_t)(nl - a));
        a = nl < end ? nl + 1 : end;
    }
    resp->status = status;
    resp->len = (apr_size_t)(end - a);
    resp->body = apr_palloc(p, resp->len + 1);
    memcpy(resp->body, a, resp->len);
    resp->body[resp->len] = '\0';

    /* The model of the client's nonce: the last valid one it was given. */
    n = apr_table_get(resp->headers, "Replay-Nonce");
    if (n && nonce_valid(n)) {
        apr_cpystrn(ca->nonce, n, sizeof(ca->nonce));
    }
    ca->location = apr_table_get(resp->headers, "Location");
    ca->location = ca->location ? apr_pstrdup(ca->p, ca->location) : NULL;
    if (accept && strcmp(accept, "application/pem-certificate-chain") == 0
        && status < 400) {
        body_t *b = apr_array_push(ca->chains);

        b->data = apr_pstrmemdup(ca->p, resp->body, resp->len);
        b->len = resp->len;
    }
    return APR_SUCCESS;
}

static apr_status_t answer(void *baton, const cs_acme_challenge_t *ch,
                           int setup)
{
    int fails = *(const int *)baton;
    const char *token = ch->token, *keyauth = ch->keyauth;

    REQUIRE(strcmp(ch->domain, DOMAIN) == 0);
    /* One type, named as RFC 8555 / 8737 name it. */
    REQUIRE((ch->type == CS_ACME_HTTP01 && !strcmp(ch->name, "http-01"))
            || (ch->type == CS_ACME_TLSALPN01
                && !strcmp(ch->name, "tls-alpn-01"))
            || (ch->type == CS_ACME_DNS01 && !strcmp(ch->name, "dns-01")));
    REQUIRE(strlen(token) >= 1 && strlen(token) <= 128
            && fuzz_b64url_only(token, strlen(token)));
    REQUIRE(strncmp(keyauth, token, strlen(token)) == 0
            && keyauth[strlen(token)] == '.'
            && strcmp(keyauth + strlen(token) + 1, account_thumb) == 0);
    if (setup) {
        if (fails) {
            return APR_EGENERAL;
        }
        ca->published++;
    }
    else {
        REQUIRE(ca->published > 0);
        ca->published--;
    }
    return APR_SUCCESS;
}

static void init(void)
{
    const char *err;
    apr_array_header_t *certs;

    if (account_key) {
        return;
    }
    fuzz_init();
    /* The account key and its successor: any P-256 keys will do. */
    account_key = fuzz_leaf_key;
    REQUIRE(cs_key_generate(&new_account_key, fuzz_pool, CS_KEY_EC_P256)
            == APR_SUCCESS);
    REQUIRE(cs_jwk_thumbprint(&account_thumb, fuzz_pool, account_key)
            == APR_SUCCESS);
    REQUIRE(cs_pem_read_certs(&certs, fuzz_pool, leaf_pem, strlen(leaf_pem),
                              &err) == APR_SUCCESS);
    leaf_cert = APR_ARRAY_IDX(certs, 0, X509 *);
}

/* What every result of the client must be. */
static void check_result(cs_acme_t *acme, apr_status_t rv, const char *err)
{
    apr_int64_t ra = cs_acme_retry_after(acme);

    REQUIRE(rv == APR_SUCCESS || rv == APR_EAGAIN || rv == APR_ECONNREFUSED
            || rv == APR_TIMEUP || rv == APR_EGENERAL || rv == APR_EINVAL
            || rv == APR_ENOTIMPL || rv == APR_NOTFOUND);
    if (rv != APR_SUCCESS) {
        check_text(err);
    }
    REQUIRE(ra >= 0 && ra <= ACME_MAX_RETRY_AFTER);
    if (rv == APR_EAGAIN) {
        REQUIRE(ra >= 1);
    }
    REQUIRE(acme->nonce[0] == '\0' || nonce_valid(acme->nonce));
    REQUIRE(acme->stats.requests == ca->requests);
    REQUIRE(acme->stats.bad_nonces <= acme->stats.requests);
    REQUIRE_NO_SSL_ERROR();
}

static int same_chain(apr_pool_t *p, const apr_array_header_t *chain,
                      const body_t *pem)
{
    apr_array_header_t *sent;
    const char *err;
    int i, same = 1;

    if (cs_pem_read_certs(&sent, p, pem->data, pem->len, &err)
        || sent->nelts != chain->nelts) {
        ERR_clear_error();
        return 0;
    }
    for (i = 0; same && i < chain->nelts; i++) {
        unsigned char *x = NULL, *y = NULL;
        int lx = i2d_X509(APR_ARRAY_IDX(chain, i, X509 *), &x);
        int ly = i2d_X509(APR_ARRAY_IDX(sent, i, X509 *), &y);

        same = lx > 0 && lx == ly && memcmp(x, y, (size_t)lx) == 0;
        OPENSSL_free(x);
        OPENSSL_free(y);
    }
    ERR_clear_error();
    return same;
}

static int top_matches(const apr_array_header_t *chain, const char *text)
{
    X509 *top = APR_ARRAY_IDX(chain, chain->nelts - 1, X509 *);
    char buf[512];

    X509_NAME_oneline(X509_get_issuer_name(top), buf, sizeof(buf));
    if (strstr(buf, text)) {
        return 1;
    }
    X509_NAME_oneline(X509_get_subject_name(top), buf, sizeof(buf));
    return strstr(buf, text) != NULL;
}

static void check_issued(apr_pool_t *p, const apr_array_header_t *chain,
                         int preferred)
{
    const body_t *first;
    int i, found = 0;

    REQUIRE(chain != NULL && chain->nelts >= 1);
    for (i = 0; i < chain->nelts; i++) {
        REQUIRE(APR_ARRAY_IDX(chain, i, X509 *) != NULL);
    }
    REQUIRE(ca->chains->nelts >= 1);
    first = &APR_ARRAY_IDX(ca->chains, 0, body_t);
    if (same_chain(p, chain, first)) {
        return;
    }
    /* Not the default: only an alternate that matches when the default
     * does not. */
    REQUIRE(preferred);
    REQUIRE(top_matches(chain, PREFERRED));
    for (i = 1; i < ca->chains->nelts && !found; i++) {
        found = same_chain(p, chain, &APR_ARRAY_IDX(ca->chains, i, body_t));
    }
    REQUIRE(found);
}

/* The directory's profiles: names the client may send, texts fit for a
 * log line; none before the directory was read. */
static void check_profiles(cs_acme_t *acme, apr_status_t dir_rv)
{
    const apr_table_t *t = cs_acme_profiles(acme);
    const apr_array_header_t *e;
    int i;

    if (!acme->have_dir || dir_rv != APR_SUCCESS) {
        REQUIRE(t == NULL || acme->have_dir);
        return;
    }
    if (!t) {
        return;
    }
    e = apr_table_elts(t);
    REQUIRE(e->nelts > 0);
    for (i = 0; i < e->nelts; i++) {
        const apr_table_entry_t *en = &APR_ARRAY_IDX(e, i, apr_table_entry_t);

        REQUIRE(cs_acme_profile_name_ok(en->key));
        REQUIRE(en->val != NULL && strlen(en->val) <= 200);
        check_text(en->val);
    }
}

/* newAccount, as every flow past the directory needs one. */
static apr_status_t account(cs_acme_t *acme, const char **err)
{
    const char *kid = NULL;
    apr_status_t rv = cs_acme_account(&kid, acme, account_key, NULL, err);

    check_result(acme, rv, *err);
    if (rv == APR_SUCCESS) {
        REQUIRE(kid != NULL && url_ok(kid));
        REQUIRE(ca->location && strcmp(kid, ca->location) == 0);
    }
    return rv;
}

/* One answer: what acme_http() takes out of its headers, and the error
 * an error answer maps to. */
static void headers(cs_acme_t *acme, apr_pool_t *p)
{
    acme_resp_t r;
    const char *err = NULL, *n;
    apr_status_t rv;
    json_t *j;
    int i;

    for (;;) {
        char before[sizeof(acme->nonce)];

        memcpy(before, acme->nonce, sizeof(before));
        rv = acme_http(&r, acme, p, "GET", "https://ca.test/h", NULL, NULL,
                       &err);
        if (rv != APR_SUCCESS) {
            check_text(err);
            return;
        }
        REQUIRE(r.retry_after >= 0 && r.retry_after <= ACME_MAX_RETRY_AFTER);
        n = apr_table_get(r.headers, "Replay-Nonce");
        if (n && nonce_valid(n)) {
            REQUIRE(strcmp(acme->nonce, n) == 0);
        }
        else {
            REQUIRE(strcmp(acme->nonce, before) == 0);
        }
        for (i = 0; i < r.alternates->nelts; i++) {
            const char *u = APR_ARRAY_IDX(r.alternates, i, const char *);

            REQUIRE(u != NULL && !strchr(u, '>') && !strchr(u, ','));
        }
        REQUIRE(r.location == apr_table_get(r.headers, "Location"));
        rv = acme_answer_error(acme, p, &r, "fuzz", &err);
        /* "fuzz: " and the problem document, at most ACME_ERR_MAX. */
        check_text_max(err, 6 + ACME_ERR_MAX);
        REQUIRE(acme->retry_after >= 0
                && acme->retry_after <= ACME_MAX_RETRY_AFTER);
        if (r.status == 429) {
            REQUIRE(rv == APR_EAGAIN && acme->retry_after >= 1);
        }
        else if (rv != APR_EAGAIN) {
            REQUIRE(rv == (r.status >= 500 ? APR_ECONNREFUSED
                                           : APR_EGENERAL));
        }
        if ((j = acme_body_json(p, &r, "fuzz", &err)) != NULL) {
            REQUIRE(json_is_object(j));
            json_decref(j);
        }
        else {
            check_text(err);
        }
    }
}

/* A flattened JWS from outside, and base64url. */
static void jws(apr_pool_t *p, const uint8_t *data, size_t size)
{
    char *text = apr_pstrmemdup(p, (const char *)data, size);
    const char *hdr = NULL, *payload = NULL, *err = NULL, *again;
    unsigned char *raw, *raw2;
    apr_size_t len, len2;
    apr_status_t rv;

    rv = cs_jws_verify(&hdr, &payload, p, account_key, text, &err);
    REQUIRE(rv == APR_SUCCESS || rv == APR_EINVAL || rv == APR_EGENERAL);
    if (rv == APR_SUCCESS) {
        REQUIRE(hdr != NULL && payload != NULL);
    }
    else {
        REQUIRE(err != NULL);
    }
    REQUIRE_NO_SSL_ERROR();
    if (cs_b64url_decode(&raw, &len, p, text) == APR_SUCCESS) {
        again = cs_b64url_encode(p, raw, len);
        REQUIRE(strlen(again) == (len * 4 + 2) / 3);
        REQUIRE(cs_b64url_decode(&raw2, &len2, p, again) == APR_SUCCESS);
        REQUIRE(len2 == len && memcmp(raw, raw2, len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    cs_acme_conf_t conf;
    cs_http_t http;
    cs_acme_t *acme;
    ca_t state;
    apr_array_header_t *chain = NULL;
    cs_acme_order_t order;
    const char *err = NULL, *id;
    apr_int64_t start, end, ra;
    apr_status_t rv;
    int flow, flags, fails;

    if (size < 2) {
        return 0;
    }
    init();
    ERR_clear_error();
    flow = data[0] % F_COUNT;
    flags = data[1];
    apr_pool_create(&p, fuzz_pool);
    if (flow == F_JWS) {
        jws(p, data + 2, size - 2);
        apr_pool_destroy(p);
        return 0;
    }

    memset(&state, 0, sizeof(state));
    state.p = p;
    state.next = data + 2;
    state.end = data + size;
    state.chains = apr_array_make(p, 2, sizeof(body_t));
    ca = &state;
    http.send = ca_send;
    http.baton = NULL;
    fails = (flags & FL_HTTP01_FAILS) != 0;
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = CA_DIR;
    conf.http = &http;
    conf.log = on_log;
    conf.challenge = answer;
    conf.challenge_baton = &fails;
    conf.challenges = CS_ACME_HTTP01 | CS_ACME_TLSALPN01 | CS_ACME_DNS01;
    conf.preferred_chain = (flags & FL_PREFERRED) ? PREFERRED : NULL;
    REQUIRE(cs_acme_create(&acme, p, &conf) == APR_SUCCESS);

    switch (flow) {
    case F_DIRECTORY:
        rv = cs_acme_directory(acme, &err);
        check_result(acme, rv, err);
        if (rv == APR_SUCCESS) {
            REQUIRE(acme->new_nonce && acme->new_account && acme->new_order);
        }
        REQUIRE(cs_acme_has_ari(acme)
                == (rv == APR_SUCCESS && acme->renewal_info != NULL));
        check_profiles(acme, rv);
        break;
    case F_ACCOUNT:
        account(acme, &err);
        break;
    case F_ISSUE:
        if (account(acme, &err)) {
            break;
        }
        memset(&order, 0, sizeof(order));
        order.replaces = (flags & FL_REPLACES) ? "AAAA.AQ" : NULL;
        order.profile = (flags & FL_PROFILE) ? PROFILE : NULL;
        rv = cs_acme_issue(&chain, p, acme, fuzz_leaf_key, DOMAIN, &order,
                           &err);
        check_result(acme, rv, err);
        REQUIRE(ca->published == 0);
        if (rv == APR_SUCCESS) {
            check_issued(p, chain, conf.preferred_chain != NULL);
        }
        /* Ordered with a profile only when the directory offered it;
         * APR_NOTFOUND is that refusal only. */
        REQUIRE(rv != APR_NOTFOUND || (flags & FL_PROFILE));
        if (rv == APR_SUCCESS && (flags & FL_PROFILE)) {
            REQUIRE(cs_acme_profiles(acme) != NULL
                    && apr_table_get(cs_acme_profiles(acme), PROFILE));
        }
        check_profiles(acme, APR_SUCCESS);
        break;
    case F_KEY_CHANGE:
        if (account(acme, &err)) {
            break;
        }
        rv = cs_acme_key_change(acme, new_account_key, &err);
        check_result(acme, rv, err);
        REQUIRE(acme->key == (rv == APR_SUCCESS ? new_account_key
                                                : account_key));
        break;
    case F_REVOKE:
        if (account(acme, &err)) {
            break;
        }
        rv = cs_acme_revoke(acme, leaf_cert, 4, &err);
        check_result(acme, rv, err);
        break;
    case F_ARI:
        rv = cs_acme_renewal_info(&start, &end, &ra, acme, p, leaf_cert,
                                  &err);
        check_result(acme, rv, err);
        if (rv == APR_SUCCESS) {
            REQUIRE(start < end);
            REQUIRE(ra >= 0 && ra <= ACME_MAX_RETRY_AFTER);
            REQUIRE(cs_acme_cert_id(&id, p, leaf_cert) == APR_SUCCESS);
            REQUIRE(strlen(ca->last_url) > strlen(id) + 1);
            REQUIRE(strcmp(ca->last_url + strlen(ca->last_url) - strlen(id),
                           id) == 0);
            REQUIRE(ca->last_url[strlen(ca->last_url) - strlen(id) - 1]
                    == '/');
        }
        REQUIRE((rv == APR_ENOTIMPL)
                == (acme->have_dir && (!acme->renewal_info
                                       || !*acme->renewal_info)));
        break;
    case F_HEADERS:
        headers(acme, p);
        break;
    }
    ca = NULL;
    apr_pool_destroy(p);
    return 0;
}
