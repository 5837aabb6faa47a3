/*
 * test_cs_acme_drive.c: unit tests of CertService's ACME job
 * (mod_certservice/cs_acme_drive.c) end to end through the real ACME
 * client (lib/cs_acme*.c, the production ops cs_acme_client_ops) over the
 * fake transport (fake_http.h), on a real SQLite store in a temporary
 * file, with a clock of the test's own.
 *
 * The fake plays an RFC 8555 CA at the HTTP level: directory (with and
 * without renewalInfo), newNonce and Replay-Nonce (each nonce good once),
 * newAccount (a key's account found again, or made), every other POST
 * checked as a JWS signed by the account's key for its kid (an unknown kid
 * is accountDoesNotExist), newOrder, the authorization and its http-01
 * challenge (validated by reading the key authorization from the store,
 * as GET /.well-known/acme-challenge/TOKEN through the proxies would),
 * finalize (the certificate issued for the CSR's key), the certificate
 * download, keyChange, renewalInfo, and problem documents (rateLimited
 * with Retry-After).  The pre-check's probe goes through a second fake
 * transport (probe_http), the name resolved by a DNS server on loopback.
 * The CA settles every state at once, so the client's polls never sleep.
 * No case needs the drive's ops table played by the test any more.
 *
 * Cases: an order that succeeds (http-01 answered from the store, the
 * bundle stored sealed, the account made once); an invalid challenge;
 * rateLimited with Retry-After (the job and the cluster-wide limiter
 * wait); the renewal time by lifetime fraction without ARI for two
 * different lifetimes (nothing assumes 90 days), inside an ARI window, and
 * a renewal that names the certificate it replaces; ACME profiles (the
 * newOrder carries the domain's or the pool's, a 160-hour shortlived and
 * a 45-day tlsserver certificate renew at about 2/3 of their own
 * lifetime, one the CA does not offer fails before any order); account
 * re-registration (the CA forgot the account; another instance rolled the
 * key over with keyChange); backoff growth and cap; the pre-check.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <jansson.h>

#include <openssl/core_names.h>
#include <openssl/x509v3.h>

#include "cs_acme_drive.h"
#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_http.h"
#include "cs_jws.h"
#include "cs_store.h"
#include "cs_x509.h"
#include "fake_dns.h"
#include "fake_http.h"
#include "unit.h"

#define DAY 86400
#define CA          "https://ca.test"
#define DIR_URL     CA "/directory"         /* a CA without renewalInfo */
#define ARI_DIR_URL CA "/ari/directory"     /* the same CA, with it */
#define EAB_DIR_URL CA "/eab/directory"     /* requiring EAB */
#define ACME_ERR    "urn:ietf:params:acme:error:"
#define STARTS(s, prefix) (strncmp((s), (prefix), strlen(prefix)) == 0)

static apr_pool_t *root;
static cs_db_t db;
static apr_int64_t clock_now;   /* the drive's clock */
static int logged_errors;
/* The tags of the warnings and errors logged (test_store_failures). */
static char logged_tags[1024];

/* ------------------------------------------------------------------ */
/* The fake CA, at the HTTP level                                      */
/* ------------------------------------------------------------------ */

typedef enum {
    CA_VALID,                   /* the challenge validates if served */
    CA_INVALID,                 /* the CA cannot reach the domain */
    CA_RATE_LIMITED             /* newOrder: 429 rateLimited, Retry-After */
} ca_mode_t;

typedef struct {
    const char *url;
    EVP_PKEY *key;
    const char *thumb;
} ca_account_t;

typedef struct {
    int id;
    const ca_account_t *account;
    const char *domain;
    const char *status;         /* pending ready valid invalid */
    const char *authz;          /* pending valid invalid */
    const char *token;
    const char *error;          /* the challenge's problem type */
    const char *chain_pem;
    apr_interval_time_t lifetime;   /* of its profile, or ca.lifetime */
} ca_order_t;

typedef struct {
    apr_pool_t *pool;
    cs_ca_t *ca;
    fake_http_t *http;          /* the CA */
    fake_http_t *probe;         /* the domains, as the pre-check sees them */
    apr_array_header_t *accounts;   /* ca_account_t * */
    apr_array_header_t *orders;     /* ca_order_t * */
    apr_hash_t *nonces;         /* handed out, not used yet */
    apr_hash_t *issued;         /* RFC 9773 certificate id -> "1" */
    int next_nonce;
    ca_mode_t mode;
    apr_interval_time_t lifetime;
    apr_int64_t ari_start;      /* the suggested window */
    apr_int64_t ari_end;
    /* What happened. */
    int accounts_made;
    int validated;              /* the key authorization was served */
    int bad_requests;           /* POSTs refused for a bad JWS */
    const char *replaces;       /* of the last newOrder */
    const char *profile;        /* of the last newOrder; NULL: none */
    const char *last_key;       /* thumbprint of the last newAccount key */
    const char *last_account;   /* the URL it answered */
    int probes_served;          /* probes that found our token published */
    int precheck_fail;          /* the domain does not reach us */
    /* tls-alpn-01: offer it instead of http-01, and open the challenge
     * certificate's key with this wrapping certificate and key. */
    int alpn;
    X509 *alpn_wrap_cert;
    EVP_PKEY *alpn_wrap_key;
    int alpn_validated;         /* certificates that passed RFC 8737 */
} fake_ca_t;

static fake_ca_t ca;

static apr_status_t key_free_cleanup(void *k)
{
    EVP_PKEY_free(k);
    return APR_SUCCESS;
}

/* The EC P-256 key of a public JWK, in the CA's pool; NULL if not one. */
static EVP_PKEY *jwk_key(apr_pool_t *p, json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *sx = json_string_value(json_object_get(jwk, "x"));
    const char *sy = json_string_value(json_object_get(jwk, "y"));
    unsigned char *x, *y, pub[65];
    apr_size_t xl, yl;
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *key = NULL;

    if (!kty || strcmp(kty, "EC") || !sx || !sy
        || cs_b64url_decode(&x, &xl, p, sx) || cs_b64url_decode(&y, &yl, p, sy)
        || xl != 32 || yl != 32) {
        return NULL;
    }
    pub[0] = 4;
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)"P-256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  pub, sizeof(pub));
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    if (key) {
        apr_pool_cleanup_register(ca.pool, key, key_free_cleanup,
                                  apr_pool_cleanup_null);
    }
    return key;
}

static ca_account_t *account_by(const char *url, const char *thumb)
{
    ca_account_t *a;
    int i;

    for (i = 0; i < ca.accounts->nelts; i++) {
        a = APR_ARRAY_IDX(ca.accounts, i, ca_account_t *);
        if ((url && strcmp(a->url, url) == 0)
            || (thumb && strcmp(a->thumb, thumb) == 0)) {
            return a;
        }
    }
    return NULL;
}

/* The order of a URL ending in /order/N, /authz/N ...; NULL if none. */
static ca_order_t *order_of(const char *url, const char *prefix)
{
    apr_size_t n = strlen(prefix);
    int id;

    if (strncmp(url, prefix, n) != 0) {
        return NULL;
    }
    id = atoi(url + n);
    if (id < 1 || id > ca.orders->nelts) {
        return NULL;
    }
    return APR_ARRAY_IDX(ca.orders, id - 1, ca_order_t *);
}

/* An answer, with a fresh nonce as every answer of the CA has. */
static apr_status_t reply(cs_http_resp_t *resp, apr_pool_t *p, long status,
                          const char *ctype, const char *body)
{
    const char *nonce = apr_psprintf(ca.pool, "nonce%d", ++ca.next_nonce);

    apr_hash_set(ca.nonces, nonce, APR_HASH_KEY_STRING, "1");
    apr_table_set(resp->headers, "Replay-Nonce", nonce);
    if (ctype) {
        apr_table_set(resp->headers, "Content-Type", ctype);
    }
    resp->status = status;
    resp->body = apr_pstrdup(p, body ? body : "");
    resp->len = strlen(resp->body);
    return APR_SUCCESS;
}

static apr_status_t reply_json(cs_http_resp_t *resp, apr_pool_t *p,
                               long status, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    apr_status_t rv = reply(resp, p, status, "application/json", text);

    free(text);
    json_decref(j);
    return rv;
}

static apr_status_t problem(cs_http_resp_t *resp, apr_pool_t *p,
                            long status, const char *type,
                            const char *detail)
{
    json_t *j = json_pack("{s:s, s:s}", "type",
                          apr_pstrcat(p, ACME_ERR, type, NULL), "detail",
                          detail);
    char *text = json_dumps(j, JSON_COMPACT);
    apr_status_t rv = reply(resp, p, status, "application/problem+json",
                            text);

    free(text);
    json_decref(j);
    return rv;
}

/* A POST: a flattened JWS for this URL with a nonce of ours, signed by
 * the key of its jwk (*key) or of its account (*acct).  0 with the
 * payload; -1 when an error answer was made. */
static int open_jws(const char **payload, ca_account_t **acct,
                    EVP_PKEY **key, cs_http_resp_t *resp,
                    const cs_http_req_t *req, apr_pool_t *p)
{
    json_t *jws = json_loads(req->body ? req->body : "", 0, NULL), *hdr;
    const char *prot64 = json_string_value(json_object_get(jws, "protected"));
    const char *nonce, *url, *kid, *hdr_text, *err;
    const char *bad = NULL, *detail = NULL;
    unsigned char *prot;
    apr_size_t plen;

    *acct = NULL;
    *key = NULL;
    if (!prot64 || cs_b64url_decode(&prot, &plen, p, prot64)
        || !(hdr = json_loadb((const char *)prot, plen, 0, NULL))) {
        json_decref(jws);
        ca.bad_requests++;
        problem(resp, p, 400, "malformed", "not a JWS");
        return -1;
    }
    json_decref(jws);
    nonce = json_string_value(json_object_get(hdr, "nonce"));
    url = json_string_value(json_object_get(hdr, "url"));
    kid = json_string_value(json_object_get(hdr, "kid"));
    if (!url || strcmp(url, req->url) != 0) {
        bad = "malformed";
        detail = "url mismatch";
    }
    else if (!nonce || !apr_hash_get(ca.nonces, nonce, APR_HASH_KEY_STRING)) {
        bad = "badNonce";
        detail = "unknown nonce";
    }
    else {
        apr_hash_set(ca.nonces, nonce, APR_HASH_KEY_STRING, NULL);
        if (kid) {
            if ((*acct = account_by(kid, NULL))) {
                *key = (*acct)->key;
            }
            else {
                bad = "accountDoesNotExist";
                detail = "no such account";
            }
        }
        else if (!(*key = jwk_key(p, json_object_get(hdr, "jwk")))) {
            bad = "malformed";
            detail = "no usable jwk";
        }
    }
    json_decref(hdr);
    if (bad) {
        /* A kid the CA forgot is no fault of the client's. */
        ca.bad_requests += strcmp(bad, "accountDoesNotExist") != 0;
        problem(resp, p, 400, bad, detail);
        return -1;
    }
    if (cs_jws_verify(&hdr_text, payload, p, *key, req->body, &err)) {
        ca.bad_requests++;
        problem(resp, p, 400, "malformed", apr_pstrcat(p, "JWS: ", err,
                                                       NULL));
        return -1;
    }
    return 0;
}

static json_t *order_json(const ca_order_t *o)
{
    json_t *j = json_pack("{s:s, s:[{s:s, s:s}], s:[s], s:s}", "status",
                          o->status, "identifiers", "type", "dns", "value",
                          o->domain, "authorizations",
                          apr_psprintf(ca.pool, CA "/authz/%d", o->id),
                          "finalize",
                          apr_psprintf(ca.pool, CA "/order/%d/fin", o->id));

    if (o->chain_pem) {
        json_object_set_new(j, "certificate",
                            json_string(apr_psprintf(ca.pool, CA "/cert/%d",
                                                     o->id)));
    }
    return j;
}

static json_t *challenge_json(const ca_order_t *o)
{
    json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "type",
                          ca.alpn ? "tls-alpn-01" : "http-01", "url",
                          apr_psprintf(ca.pool, CA "/chall/%d", o->id),
                          "token", o->token, "status", o->authz);

    if (o->error) {
        json_object_set_new(c, "error",
                            json_pack("{s:s, s:s}", "type",
                                      apr_pstrcat(ca.pool, ACME_ERR,
                                                  o->error, NULL),
                                      "detail", "the key authorization "
                                      "was not served"));
    }
    return c;
}

static apr_status_t new_account(cs_http_resp_t *resp, apr_pool_t *p,
                                EVP_PKEY *key)
{
    ca_account_t *a;
    const char *thumb;
    long status = 200;

    cs_jwk_thumbprint(&thumb, ca.pool, key);
    ca.last_key = thumb;
    if (!(a = account_by(NULL, thumb))) {
        a = apr_pcalloc(ca.pool, sizeof(*a));
        a->url = apr_psprintf(ca.pool, CA "/acct/%d",
                              ++ca.accounts_made);
        a->key = key;
        a->thumb = thumb;
        APR_ARRAY_PUSH(ca.accounts, ca_account_t *) = a;
        status = 201;
    }
    ca.last_account = a->url;
    apr_table_set(resp->headers, "Location", a->url);
    return reply_json(resp, p, status, json_pack("{s:s}", "status",
                                                 "valid"));
}

static apr_status_t new_order(cs_http_resp_t *resp, apr_pool_t *p,
                              ca_account_t *acct, const char *payload)
{
    json_t *j = json_loads(payload, 0, NULL);
    const char *domain = json_string_value(json_object_get(
        json_array_get(json_object_get(j, "identifiers"), 0), "value"));
    const char *replaces = json_string_value(json_object_get(j,
                                                             "replaces"));
    const char *profile = json_string_value(json_object_get(j, "profile"));
    apr_interval_time_t lifetime = ca.lifetime;
    unsigned char raw[12];
    ca_order_t *o;

    ca.replaces = replaces ? apr_pstrdup(ca.pool, replaces) : NULL;
    ca.profile = profile ? apr_pstrdup(ca.pool, profile) : NULL;
    /* Let's Encrypt's profiles and their lifetimes. */
    if (profile) {
        if (strcmp(profile, "classic") == 0) {
            lifetime = apr_time_from_sec(90 * DAY);
        }
        else if (strcmp(profile, "tlsserver") == 0) {
            lifetime = apr_time_from_sec(45 * DAY);
        }
        else if (strcmp(profile, "shortlived") == 0) {
            lifetime = apr_time_from_sec(160 * 3600);
        }
        else {
            json_decref(j);
            return problem(resp, p, 400, "invalidProfile", "no such profile");
        }
    }
    if (!domain) {
        json_decref(j);
        return problem(resp, p, 400, "malformed", "no identifier");
    }
    o = apr_pcalloc(ca.pool, sizeof(*o));
    o->domain = apr_pstrdup(ca.pool, domain);
    json_decref(j);
    if (ca.mode == CA_RATE_LIMITED) {
        apr_table_set(resp->headers, "Retry-After", "3600");
        return problem(resp, p, 429, "rateLimited", "too many orders");
    }
    APR_ARRAY_PUSH(ca.orders, ca_order_t *) = o;
    o->id = ca.orders->nelts;
    o->account = acct;
    o->status = "pending";
    o->authz = "pending";
    o->lifetime = lifetime;
    apr_generate_random_bytes(raw, sizeof(raw));
    o->token = cs_b64url_encode(ca.pool, raw, sizeof(raw));
    apr_table_set(resp->headers, "Location",
                  apr_psprintf(p, CA "/order/%d", o->id));
    return reply_json(resp, p, 201, order_json(o));
}

/* tls-alpn-01 as a CA checks it (RFC 8737 3), on what a proxy would
 * hand out: the domain's certificate from the store, its key opened with
 * the wrapping key, the acmeIdentifier equal to SHA-256(want). */
static int alpn_validate(apr_pool_t *p, const char *domain,
                         const char *want)
{
    cs_tlsalpn_t *t;
    apr_array_header_t *certs;
    unsigned char *der, digest[32], expect[32];
    apr_size_t len;
    EVP_PKEY *key;
    const char *err = NULL;

    if (cs_store_tlsalpn_get(&t, &db, p, domain, clock_now)
        || cs_pem_read_certs(&certs, p, t->cert_pem, strlen(t->cert_pem),
                             &err) || certs->nelts != 1
        || cs_base64_decode(&der, &len, p, t->key_cms)
        || cs_envelope_open(&key, p, der, len, ca.alpn_wrap_cert,
                            ca.alpn_wrap_key, &err)
        || cs_tlsalpn_cert_check(digest, APR_ARRAY_IDX(certs, 0, X509 *),
                                 key, domain, apr_time_now(), &err)
        || !EVP_Digest(want, strlen(want), expect, NULL, EVP_sha256(), NULL)
        || memcmp(digest, expect, 32) != 0) {
        fprintf(stderr, "# tls-alpn-01 of %s refused: %s\n", domain,
                err ? err : "not in the store, or another digest");
        return 0;
    }
    ca.alpn_validated++;
    return 1;
}

/* The challenge: the CA fetches the key authorization at once (here
 * from the store, as GET /.well-known/acme-challenge/TOKEN would). */
static apr_status_t challenge(cs_http_resp_t *resp, apr_pool_t *p,
                              ca_order_t *o)
{
    const char *got = NULL, *want;

    if (strcmp(o->authz, "pending") == 0) {
        want = apr_pstrcat(p, o->token, ".", o->account->thumb, NULL);
        if (ca.alpn) {
            got = alpn_validate(p, o->domain, want) ? want : NULL;
        }
        else if (cs_store_challenge_get(&got, &db, p, o->token, clock_now)
            == APR_SUCCESS && strcmp(got, want) == 0) {
            ca.validated++;
        }
        else {
            got = NULL;
        }
        if (ca.mode == CA_INVALID || !got) {
            o->authz = "invalid";
            o->status = "invalid";
            o->error = "unauthorized";
        }
        else {
            o->authz = "valid";
            o->status = "ready";
        }
    }
    return reply_json(resp, p, 200, challenge_json(o));
}

/* Finalize: the certificate for the CSR's key, its id kept for ARI. */
static apr_status_t finalize(cs_http_resp_t *resp, apr_pool_t *p,
                             ca_order_t *o, const char *payload)
{
    json_t *j = json_loads(payload, 0, NULL);
    const char *csr64 = json_string_value(json_object_get(j, "csr"));
    const char *err = NULL, *id;
    unsigned char *der = NULL;
    const unsigned char *q;
    apr_size_t len = 0;
    apr_array_header_t *chain;
    X509_REQ *req = NULL;
    EVP_PKEY *pub;
    apr_status_t rv;

    if (strcmp(o->status, "ready") != 0) {
        json_decref(j);
        return problem(resp, p, 403, "orderNotReady", o->status);
    }
    if (csr64) {
        cs_b64url_decode(&der, &len, p, csr64);
    }
    json_decref(j);
    q = der;
    if (!der || !(req = d2i_X509_REQ(NULL, &q, (long)len))
        || !(pub = X509_REQ_get0_pubkey(req))
        || X509_REQ_verify(req, pub) != 1) {
        X509_REQ_free(req);
        return problem(resp, p, 400, "badCSR", "bad CSR");
    }
    rv = cs_ca_issue(&chain, p, ca.ca, pub, o->domain, o->lifetime, &err);
    X509_REQ_free(req);
    if (rv) {
        return problem(resp, p, 500, "serverInternal", err);
    }
    o->chain_pem = apr_pstrdup(ca.pool, cs_pem_write_certs(p, chain));
    if (cs_acme_cert_id(&id, ca.pool, APR_ARRAY_IDX(chain, 0, X509 *))
        == APR_SUCCESS) {
        apr_hash_set(ca.issued, id, APR_HASH_KEY_STRING, "1");
    }
    o->status = "valid";
    return reply_json(resp, p, 200, order_json(o));
}

/* keyChange (RFC 8555 7.3.5): the inner JWS, signed by the new key,
 * names the account and its old key. */
static apr_status_t key_change(cs_http_resp_t *resp, apr_pool_t *p,
                               ca_account_t *acct, const char *payload)
{
    json_t *inner = json_loads(payload, 0, NULL), *hdr = NULL, *in = NULL;
    const char *prot64 = json_string_value(json_object_get(inner,
                                                           "protected"));
    const char *hdr_text, *in_payload, *err, *old_thumb = NULL, *thumb;
    unsigned char *prot;
    apr_size_t plen;
    EVP_PKEY *key = NULL, *old;
    int ok = 0;

    if (prot64 && !cs_b64url_decode(&prot, &plen, p, prot64)
        && (hdr = json_loadb((const char *)prot, plen, 0, NULL))
        && (key = jwk_key(p, json_object_get(hdr, "jwk")))
        && !cs_jws_verify(&hdr_text, &in_payload, p, key, payload, &err)
        && (in = json_loads(in_payload, 0, NULL))
        && json_string_value(json_object_get(in, "account"))
        && strcmp(json_string_value(json_object_get(in, "account")),
                  acct->url) == 0
        && (old = jwk_key(p, json_object_get(in, "oldKey")))
        && !cs_jwk_thumbprint(&old_thumb, p, old)
        && strcmp(old_thumb, acct->thumb) == 0) {
        ok = 1;
    }
    json_decref(inner);
    json_decref(hdr);
    json_decref(in);
    if (!ok) {
        return problem(resp, p, 400, "malformed", "bad keyChange");
    }
    cs_jwk_thumbprint(&thumb, ca.pool, key);
    acct->key = key;
    acct->thumb = thumb;
    return reply_json(resp, p, 200, json_pack("{s:s}", "status", "valid"));
}

static const char *rfc3339(apr_pool_t *p, apr_int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[32];

    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return apr_pstrdup(p, buf);
}

static apr_status_t ca_get(cs_http_resp_t *resp, const cs_http_req_t *req,
                           apr_pool_t *p)
{
    const char *id;

    if (strcmp(req->url, DIR_URL) == 0 || strcmp(req->url, ARI_DIR_URL) == 0
        || strcmp(req->url, EAB_DIR_URL) == 0) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:{s:s, s:s, "
                              "s:s}}}",
                              "newNonce", CA "/nonce",
                              "newAccount", CA "/new-acct",
                              "newOrder", CA "/new-order",
                              "revokeCert", CA "/revoke",
                              "keyChange", CA "/key-change",
                              "meta", "profiles",
                              "classic", "The same profile you know",
                              "tlsserver", "45 days, TLS server only",
                              "shortlived", "160 hours");

        if (strcmp(req->url, ARI_DIR_URL) == 0) {
            json_object_set_new(j, "renewalInfo",
                                json_string(CA "/renewal-info/"));
        }
        if (strcmp(req->url, EAB_DIR_URL) == 0) {
            json_object_set_new(json_object_get(j, "meta"),
                                "externalAccountRequired", json_true());
        }
        return reply_json(resp, p, 200, j);
    }
    if (STARTS(req->url, CA "/renewal-info/")) {
        id = req->url + strlen(CA "/renewal-info/");
        if (!apr_hash_get(ca.issued, id, APR_HASH_KEY_STRING)) {
            return problem(resp, p, 404, "malformed", "unknown certificate");
        }
        return reply_json(resp, p, 200,
                          json_pack("{s:{s:s, s:s}}", "suggestedWindow",
                                    "start", rfc3339(p, ca.ari_start),
                                    "end", rfc3339(p, ca.ari_end)));
    }
    return FAKE_HTTP_DECLINED;
}

static apr_status_t ca_post(cs_http_resp_t *resp, const cs_http_req_t *req,
                            apr_pool_t *p)
{
    const char *payload, *url = req->url;
    ca_account_t *acct;
    ca_order_t *o;
    EVP_PKEY *key;

    if (open_jws(&payload, &acct, &key, resp, req, p)) {
        return APR_SUCCESS;
    }
    if (strcmp(url, CA "/new-acct") == 0) {
        return acct ? problem(resp, p, 400, "malformed", "jwk wanted")
                    : new_account(resp, p, key);
    }
    if (!acct) {
        return problem(resp, p, 400, "malformed", "kid wanted");
    }
    if (strcmp(url, CA "/new-order") == 0) {
        return new_order(resp, p, acct, payload);
    }
    if (strcmp(url, CA "/key-change") == 0) {
        return key_change(resp, p, acct, payload);
    }
    if (!(o = order_of(url, CA "/order/"))
        && !(o = order_of(url, CA "/authz/"))
        && !(o = order_of(url, CA "/chall/"))
        && !(o = order_of(url, CA "/cert/"))) {
        return problem(resp, p, 404, "malformed", "no such resource");
    }
    if (o->account != acct) {
        return problem(resp, p, 403, "unauthorized", "not your order");
    }
    if (STARTS(url, CA "/authz/")) {
        json_t *a = json_pack("{s:s, s:{s:s, s:s}, s:[o]}", "status",
                              o->authz, "identifier", "type", "dns", "value",
                              o->domain, "challenges", challenge_json(o));
        return reply_json(resp, p, 200, a);
    }
    if (STARTS(url, CA "/chall/")) {
        return challenge(resp, p, o);
    }
    if (STARTS(url, CA "/cert/")) {
        return o->chain_pem
               ? reply(resp, p, 200, "application/pem-certificate-chain",
                       o->chain_pem)
               : problem(resp, p, 404, "malformed", "no certificate");
    }
    if (strstr(url, "/fin")) {
        return finalize(resp, p, o, payload);
    }
    return reply_json(resp, p, 200, order_json(o));
}

static apr_status_t ca_serve(void *baton, cs_http_resp_t *resp,
                             const cs_http_req_t *req, apr_pool_t *p,
                             const char **err)
{
    if (strcmp(req->method, "HEAD") == 0
        && strcmp(req->url, CA "/nonce") == 0) {
        return reply(resp, p, 200, NULL, NULL);
    }
    if (strcmp(req->method, "GET") == 0) {
        return ca_get(resp, req, p);
    }
    if (strcmp(req->method, "POST") == 0) {
        return ca_post(resp, req, p);
    }
    return FAKE_HTTP_DECLINED;
}

/* The domains as the pre-check reaches them: our proxies answer the
 * probe token from the store; an unreachable domain refuses. */
static apr_status_t probe_serve(void *baton, cs_http_resp_t *resp,
                                const cs_http_req_t *req, apr_pool_t *p,
                                const char **err)
{
    const char *path = strstr(req->url, "/.well-known/acme-challenge/");
    const char *got;

    if (!path) {
        return FAKE_HTTP_DECLINED;
    }
    path += strlen("/.well-known/acme-challenge/");
    if (cs_store_challenge_get(&got, &db, p, path, clock_now)
        != APR_SUCCESS) {
        got = NULL;
    }
    ca.probes_served += got != NULL;
    if (ca.precheck_fail) {
        *err = "connection refused";
        return APR_ECONNREFUSED;
    }
    resp->status = got ? 200 : 404;
    resp->body = apr_pstrdup(p, got ? got : "not found");
    resp->len = strlen(resp->body);
    return APR_SUCCESS;
}

/* The pre-check's DNS server (fake_dns.h): A 127.0.0.1 for any name. */
static int dns_answer(const char *name, unsigned char addrs[][4], int max)
{
    static const unsigned char lo[4] = { 127, 0, 0, 1 };

    memcpy(addrs[0], lo, sizeof(lo));
    return 1;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static apr_int64_t test_clock(void *baton)
{
    return clock_now;
}

static void test_log(void *baton, cs_log_level_t level, const char *msg)
{
    if (level == CS_LOG_ERR) {
        logged_errors++;
    }
    if (level <= CS_LOG_WARN && !strncmp(msg, "CS", 2)
        && strlen(logged_tags) + 9 < sizeof(logged_tags)) {
        strncat(logged_tags, msg, 8);
        strcat(logged_tags, " ");
    }
    if (getenv("CS_TEST_VERBOSE")) {
        printf("  log %d: %s\n", (int)level, msg);
    }
}

static apr_status_t x509_free_cleanup(void *x)
{
    X509_free(x);
    return APR_SUCCESS;
}

/* A self-signed certificate for key: a CA unless leaf.  Its subject key
 * identifier becomes the AKI of what the CA issues (ARI ids). */
static X509 *self_signed(EVP_PKEY *key, const char *cn, int is_ca)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    X509 *x = X509_new();

    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                               MBSTRING_UTF8, (const unsigned char *)cn,
                               -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365 * 86400L);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
                               is_ca ? "critical,CA:TRUE"
                                     : "critical,CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_key_identifier,
                               "hash");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, key, EVP_sha256());
    apr_pool_cleanup_register(root, x, x509_free_cleanup,
                              apr_pool_cleanup_null);
    return x;
}

static void open_db(const char *path)
{
    const apr_dbd_driver_t *driver;
    const char *err = NULL;

    if (apr_dbd_get_driver(root, "sqlite3", &driver) != APR_SUCCESS
        || apr_dbd_open_ex(driver, root, path, &db.handle, &err)
           != APR_SUCCESS) {
        fprintf(stderr, "cannot open %s with apr_dbd sqlite3: %s\n", path,
                err ? err : "no driver");
        exit(2);
    }
    db.driver = driver;
    db.prepared = apr_hash_make(root);
    if (cs_store_schema(&db, root) != APR_SUCCESS) {
        fprintf(stderr, "schema: %s\n", cs_store_error(&db, root, 1));
        exit(2);
    }
}

/* A real ACME client over the fake CA (and the fake domains for the
 * pre-check), with the production ops and the drive's http-01 callback,
 * as mod_certservice_acme.c wires them. */
static cs_acme_t *acme_client(apr_pool_t *p, const char *directory_url,
                              cs_acme_drive_t *d)
{
    cs_acme_conf_t conf;
    cs_acme_t *acme;

    memset(&conf, 0, sizeof(conf));
    conf.directory_url = directory_url;
    conf.http = fake_http_transport(ca.http);
    conf.probe_http = fake_http_transport(ca.probe);
    conf.log = test_log;
    conf.challenge = d ? cs_acme_drive_challenge : NULL;
    conf.challenge_baton = d;
    if (cs_acme_create(&acme, p, &conf) != APR_SUCCESS) {
        fprintf(stderr, "cannot create an ACME client\n");
        exit(2);
    }
    return acme;
}

static cs_acme_drive_t *make_drive(apr_pool_t *p,
                                   const cs_acme_policy_t *pol,
                                   const char *owner)
{
    cs_acme_drive_t *d;

    cs_acme_drive_create(&d, p, pol, owner, test_log, NULL);
    cs_acme_drive_set_client(d, &cs_acme_client_ops,
                             acme_client(p, pol->directory_url, d));
    cs_acme_drive_set_clock(d, test_clock, NULL);
    return d;
}

/* Requests the CA saw. */
static int new_orders(void)
{
    return fake_http_count_of(ca.http, "POST", CA "/new-order");
}

static int registrations(void)
{
    return fake_http_count_of(ca.http, "POST", CA "/new-acct");
}

static const ca_order_t *last_order(void)
{
    return ca.orders->nelts
           ? APR_ARRAY_IDX(ca.orders, ca.orders->nelts - 1, ca_order_t *)
           : NULL;
}

/* What PUT /v1/domains/DOMAIN does with ACME: known, pending, queued. */
static void enqueue(const char *domain)
{
    CHECK_EQ_INT(cs_store_set_error(&db, root, domain, NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, root, domain, "ec-p256", NULL,
                                      clock_now), APR_SUCCESS);
}

/* Claim the next due job, which must be want's (NULL: any), and run it. */
static cs_acme_result_t run(cs_acme_outcome_t *out, cs_acme_drive_t *d,
                            apr_pool_t *p, const char *want)
{
    const char *domain = NULL;

    memset(out, 0, sizeof(*out));
    if (!CHECK_EQ_INT(cs_acme_drive_claim(&domain, d, &db, p), APR_SUCCESS)
        || !CHECK(domain != NULL)) {
        return CS_ACME_JOB_NONE;
    }
    if (want) {
        CHECK_STR(domain, want);
    }
    CHECK_EQ_INT(cs_acme_drive_job(out, d, &db, p, domain), APR_SUCCESS);
    return out->result;
}

static cs_job_t *job_of(apr_pool_t *p, const char *domain)
{
    cs_job_t *job = NULL;

    CHECK_EQ_INT(cs_store_job_get(&job, &db, p, domain), APR_SUCCESS);
    return job;
}

/* Nothing due now (the job waits, or is claimed). */
static int nothing_due(cs_acme_drive_t *d, apr_pool_t *p)
{
    const char *domain = NULL;

    cs_acme_drive_claim(&domain, d, &db, p);
    return domain == NULL;
}

/* The RFC 9773 id of the leaf of a stored bundle, or NULL. */
static const char *leaf_id(apr_pool_t *p, const cs_bundle_t *b)
{
    apr_array_header_t *chain;
    const char *err, *id;

    if (!b || !b->chain_pem
        || cs_pem_read_certs(&chain, p, b->chain_pem, strlen(b->chain_pem),
                             &err) || !chain->nelts
        || cs_acme_cert_id(&id, p, APR_ARRAY_IDX(chain, 0, X509 *))) {
        return NULL;
    }
    return id;
}

/* ------------------------------------------------------------------ */
/* Cases                                                               */
/* ------------------------------------------------------------------ */

static void test_success(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_bundle_t *b;
    cs_job_t *job;
    const char *kid, *cms, *keyauth;
    apr_int64_t life;

    UNIT_CASE("an order that succeeds");
    apr_pool_create(&p, root);
    enqueue("ok.test");
    CHECK_EQ_INT(run(&out, d, p, "ok.test"), CS_ACME_JOB_ISSUED);
    CHECK(out.new_account != NULL);
    CHECK_EQ_INT(ca.accounts_made, 1);
    CHECK_EQ_INT(new_orders(), 1);
    CHECK_EQ_INT(ca.validated, 1);
    CHECK(ca.replaces == NULL);
    CHECK_EQ_INT(fake_http_count_of(ca.http, "POST", CA "/order/1/fin"), 1);
    CHECK_EQ_INT(fake_http_count_of(ca.http, "POST", CA "/cert/1"), 1);
    /* The http-01 answer is gone once the order is over. */
    if (CHECK(last_order() != NULL)) {
        CHECK(APR_STATUS_IS_NOTFOUND(cs_store_challenge_get(
            &keyauth, &db, p, last_order()->token, clock_now)));
    }
    /* The bundle is stored, its key sealed, its certificate the CA's. */
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "ok.test"), APR_SUCCESS)) {
        CHECK(b->serial != NULL);
        CHECK(b->key_cms != NULL);
        CHECK_STR(b->state, "active");
        CHECK(out.bundle && strcmp(out.bundle->serial, b->serial) == 0);
        CHECK(leaf_id(p, b) != NULL
              && apr_hash_get(ca.issued, leaf_id(p, b), APR_HASH_KEY_STRING));
    }
    /* The queue row: valid, renewal by lifetime at 61.7% .. 66.7%. */
    job = job_of(p, "ok.test");
    if (job && out.bundle) {
        life = out.bundle->not_after - out.bundle->not_before;
        CHECK_STR(job->state, "valid");
        CHECK_EQ_INT(job->attempts, 0);
        CHECK(job->last_error == NULL);
        CHECK_STR(out.how, "lifetime");
        CHECK(job->renew_at >= out.bundle->not_before
                               + life * (pol->renew_pm - pol->jitter_pm)
                                 / 1000 - 1);
        CHECK(job->renew_at <= out.bundle->not_before
                               + life * pol->renew_pm / 1000 + 1);
        CHECK_EQ_INT(job->next_at, job->renew_at);
    }
    /* The account is stored, sealed, for every instance. */
    if (CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &db, p,
                                          pol->directory_url),
                     APR_SUCCESS)) {
        CHECK_STR(kid, ca.last_account);
    }
    /* Not due again before its renewal. */
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "ok.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_invalid_challenge(cs_acme_drive_t *d,
                                   const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_bundle_t *b;
    cs_job_t *job;
    int orders = new_orders();

    UNIT_CASE("an invalid challenge");
    apr_pool_create(&p, root);
    ca.mode = CA_INVALID;
    enqueue("bad.test");
    CHECK_EQ_INT(run(&out, d, p, "bad.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(new_orders(), orders + 1);
    CHECK(last_order() && strcmp(last_order()->status, "invalid") == 0);
    job = job_of(p, "bad.test");
    if (job) {
        CHECK_STR(job->state, "failed");
        CHECK_EQ_INT(job->attempts, 1);
        CHECK(job->last_error && strstr(job->last_error, "unauthorized"));
        CHECK_EQ_INT(job->next_at, clock_now + pol->backoff);
        CHECK_EQ_INT(out.delay, pol->backoff);
    }
    /* The domain shows the error, and has no certificate. */
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "bad.test"), APR_SUCCESS)) {
        CHECK(b->last_error && strstr(b->last_error, "unauthorized"));
        CHECK(b->key_cms == NULL);
    }
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "bad.test"), APR_SUCCESS);
    ca.mode = CA_VALID;
    apr_pool_destroy(p);
}

static void test_rate_limited(cs_acme_drive_t *d,
                              const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    int orders;

    UNIT_CASE("rateLimited with Retry-After");
    apr_pool_create(&p, root);
    ca.mode = CA_RATE_LIMITED;
    enqueue("busy.test");
    CHECK_EQ_INT(run(&out, d, p, "busy.test"), CS_ACME_JOB_FAILED);
    job = job_of(p, "busy.test");
    if (job) {
        /* The CA's hour, not the first backoff step. */
        CHECK_EQ_INT(job->attempts, 1);
        CHECK_EQ_INT(out.delay, 3600);
        CHECK_EQ_INT(job->next_at, clock_now + 3600);
        CHECK(job->last_error && strstr(job->last_error, "rateLimited"));
    }
    /* Everyone waits: another domain is held by the limiter without
     * asking the CA. */
    ca.mode = CA_VALID;
    orders = new_orders();
    enqueue("other.test");
    CHECK_EQ_INT(run(&out, d, p, "other.test"), CS_ACME_JOB_LIMITED);
    CHECK(out.delay > 3500 && out.delay <= 3600);
    CHECK_EQ_INT(new_orders(), orders);
    /* After the pause both go through. */
    clock_now += 3601;
    CHECK_EQ_INT(run(&out, d, p, NULL), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(run(&out, d, p, NULL), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(new_orders(), orders + 2);
    CHECK(nothing_due(d, p));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "busy.test"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "other.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* Renewal time of a certificate of the given lifetime, without ARI. */
static void check_lifetime_fraction(cs_acme_drive_t *d,
                                    const cs_acme_policy_t *pol,
                                    const char *domain, apr_int64_t days)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    apr_int64_t nb, life;

    apr_pool_create(&p, root);
    ca.lifetime = apr_time_from_sec(days * DAY);
    enqueue(domain);
    CHECK_EQ_INT(run(&out, d, p, domain), CS_ACME_JOB_ISSUED);
    job = job_of(p, domain);
    if (job && out.bundle) {
        nb = out.bundle->not_before;
        life = out.bundle->not_after - nb;
        CHECK(life > (days - 1) * DAY && life <= days * DAY + 60);
        CHECK_STR(out.how, "lifetime");
        CHECK(job->renew_at >= nb + life * 617 / 1000 - 1);
        CHECK(job->renew_at <= nb + life * 667 / 1000 + 1);
        CHECK_EQ_INT(job->next_at, job->renew_at);
    }
    apr_pool_destroy(p);
}

/* A domain queued with profile (NULL: none of its own), ordered through
 * d: the newOrder carries want (NULL: no "profile"), and the renewal
 * without ARI falls between 61.7% and 66.7% of the lifetime the
 * certificate states, which must be life_s. */
static void check_profile_order(cs_acme_drive_t *d, const char *domain,
                                const char *profile, const char *want,
                                apr_int64_t life_s)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    apr_int64_t nb, life;

    apr_pool_create(&p, root);
    CHECK_EQ_INT(cs_store_set_error(&db, p, domain, NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, p, domain, "ec-p256", profile,
                                      clock_now), APR_SUCCESS);
    ca.profile = "(none yet)";
    CHECK_EQ_INT(run(&out, d, p, domain), CS_ACME_JOB_ISSUED);
    if (want) {
        CHECK_STR(ca.profile, want);
    }
    else {
        CHECK(ca.profile == NULL);
    }
    job = job_of(p, domain);
    if (job && out.bundle) {
        nb = out.bundle->not_before;
        life = out.bundle->not_after - nb;
        CHECK(life > life_s - 120 && life <= life_s + 60);
        CHECK_STR(out.how, "lifetime");
        CHECK(job->renew_at >= nb + life * 617 / 1000 - 1);
        CHECK(job->renew_at <= nb + life * 667 / 1000 + 1);
        CHECK_EQ_INT(job->next_at, job->renew_at);
        if (profile) {
            CHECK_STR(job->profile, profile);
        }
    }
    apr_pool_destroy(p);
}

static void test_profiles(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_policy_t ppol = *pol;
    cs_acme_drive_t *pd;
    cs_job_t *job;
    cs_bundle_t *b;
    apr_int64_t nb, life, first_renew;
    int orders;

    UNIT_CASE("profiles: shortlived (160 h) renews after about 2/3");
    apr_pool_create(&p, root);
    check_profile_order(d, "short.test", "shortlived", "shortlived",
                        160 * 3600);
    job = job_of(p, "short.test");
    if (CHECK(job != NULL)
        && CHECK_EQ_INT(cs_store_get(&b, &db, p, "short.test"),
                        APR_SUCCESS)) {
        /* About 4 days of the 6 and 2/3: 98.7 to 106.7 hours. */
        nb = b->not_before;
        CHECK(job->renew_at - nb >= 98 * 3600
              && job->renew_at - nb <= 107 * 3600);
        first_renew = job->renew_at;
        /* Not before then; then renewed, with the same profile. */
        clock_now = first_renew - 60;
        CHECK(nothing_due(d, p));
        clock_now = first_renew;
        ca.profile = NULL;
        CHECK_EQ_INT(run(&out, d, p, "short.test"), CS_ACME_JOB_RENEWED);
        CHECK_STR(ca.profile, "shortlived");
        job = job_of(p, "short.test");
        if (job && out.bundle) {
            CHECK(job->renew_at - out.bundle->not_before >= 98 * 3600
                  && job->renew_at - out.bundle->not_before <= 107 * 3600);
            CHECK(strcmp(out.bundle->serial, b->serial) != 0);
        }
    }
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "short.test"), APR_SUCCESS);

    UNIT_CASE("profiles: tlsserver (45 days) as the pool's default");
    ppol.profile = "tlsserver";
    pd = make_drive(p, &ppol, "test:1:5");
    check_profile_order(pd, "tls.test", NULL, "tlsserver", 45 * DAY);
    job = job_of(p, "tls.test");
    if (CHECK(job != NULL)
        && CHECK_EQ_INT(cs_store_get(&b, &db, p, "tls.test"),
                        APR_SUCCESS)) {
        /* 61.7 % to 66.7 % of the 45 days (27.8 to 30.0), not of 90:
         * the jitter, drawn from the serial, may land anywhere in it. */
        nb = b->not_before;
        life = b->not_after - nb;
        CHECK(life > 45 * DAY - 120 && life <= 45 * DAY + 60);
        CHECK(job->renew_at >= nb + life * 617 / 1000 - 1
              && job->renew_at <= nb + life * 667 / 1000 + 1);
        CHECK(job->profile == NULL);
    }
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "tls.test"), APR_SUCCESS);
    UNIT_CASE("profiles: the domain's own wins over the pool's");
    check_profile_order(pd, "classic.test", "classic", "classic", 90 * DAY);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "classic.test"), APR_SUCCESS);
    UNIT_CASE("profiles: none anywhere: no \"profile\" in newOrder");
    check_profile_order(d, "plain.test", NULL, NULL,
                        apr_time_sec(ca.lifetime));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "plain.test"), APR_SUCCESS);

    UNIT_CASE("profiles: one the CA does not offer fails before any order");
    orders = new_orders();
    CHECK_EQ_INT(cs_store_set_error(&db, p, "nope.test", NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, p, "nope.test", "ec-p256",
                                      "bogus", clock_now), APR_SUCCESS);
    CHECK_EQ_INT(run(&out, d, p, "nope.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(new_orders(), orders);
    job = job_of(p, "nope.test");
    if (job) {
        CHECK_EQ_INT(job->attempts, 1);
        CHECK_EQ_INT(job->next_at, clock_now + pol->backoff);
        CHECK(job->last_error
              && strstr(job->last_error, "profile 'bogus' (chosen for the "
                                         "domain): the CA's directory does "
                                         "not offer the profile 'bogus'")
              && strstr(job->last_error, "shortlived"));
    }
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "nope.test"), APR_SUCCESS)) {
        CHECK(b->last_error && strstr(b->last_error, "'bogus'"));
        CHECK_STR(b->state, "error");
    }
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "nope.test"), APR_SUCCESS);
    UNIT_CASE("profiles: a pool default the CA does not offer, named");
    ppol.profile = "longlived";
    pd = make_drive(p, &ppol, "test:1:6");
    CHECK_EQ_INT(cs_store_set_error(&db, p, "dflt.test", NULL), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_enqueue(&db, p, "dflt.test", "ec-p256", NULL,
                                      clock_now), APR_SUCCESS);
    CHECK_EQ_INT(run(&out, pd, p, "dflt.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(new_orders(), orders);
    job = job_of(p, "dflt.test");
    CHECK(job && job->last_error
          && strstr(job->last_error, "profile 'longlived' "
                                     "(CertServiceACMEProfile)"));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "dflt.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_ari(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_policy_t ari_pol = *pol;
    cs_acme_drive_t *ad;
    cs_job_t *job;
    cs_bundle_t *b;
    apr_int64_t start;
    const char *old_id = NULL;

    UNIT_CASE("no ARI: renewal by lifetime fraction, 6 and 30 days");
    /* d's directory has no renewalInfo. */
    check_lifetime_fraction(d, pol, "six.test", 6);
    CHECK_EQ_INT(cs_store_job_delete(&db, root, "six.test"), APR_SUCCESS);
    check_lifetime_fraction(d, pol, "thirty.test", 30);
    CHECK_EQ_INT(fake_http_count_of(ca.http, "GET", CA "/renewal-info/*"),
                 0);

    UNIT_CASE("ARI: renewal time inside the window");
    apr_pool_create(&p, root);
    /* The same CA through a directory with renewalInfo. */
    ari_pol.directory_url = ARI_DIR_URL;
    ad = make_drive(p, &ari_pol, "test:1:2");
    /* At the look scheduled by lifetime (about day 19 of 30), the CA
     * suggests a later window: the renewal moves into it. */
    job = job_of(p, "thirty.test");
    if (!job) {
        apr_pool_destroy(p);
        return;
    }
    if (CHECK_EQ_INT(cs_store_get(&b, &db, p, "thirty.test"), APR_SUCCESS)) {
        old_id = leaf_id(p, b);
    }
    CHECK(old_id != NULL);
    clock_now = job->next_at;
    start = clock_now + 2 * DAY;
    ca.ari_start = start;
    ca.ari_end = start + DAY;
    CHECK_EQ_INT(run(&out, ad, p, "thirty.test"), CS_ACME_JOB_NOT_DUE);
    CHECK_STR(out.how, "ARI window");
    /* Asked for this very certificate. */
    CHECK_EQ_INT(fake_http_count_of(ca.http, "GET",
                                    apr_pstrcat(p, CA "/renewal-info/",
                                                old_id, NULL)), 1);
    job = job_of(p, "thirty.test");
    if (job) {
        CHECK(job->renew_at >= start && job->renew_at < start + DAY);
        /* Looked at again no later than the renewal time. */
        CHECK(job->next_at <= job->renew_at && job->next_at > clock_now);
    }

    UNIT_CASE("ARI: inside the window the certificate is renewed");
    if (job) {
        clock_now = job->renew_at;
    }
    CHECK_EQ_INT(run(&out, ad, p, "thirty.test"), CS_ACME_JOB_RENEWED);
    /* The new order names the certificate it replaces (RFC 9773). */
    CHECK(ca.replaces && old_id && strcmp(ca.replaces, old_id) == 0);
    if (out.bundle && CHECK_EQ_INT(cs_store_get(&b, &db, p, "thirty.test"),
                                   APR_SUCCESS)) {
        CHECK_STR(b->serial, out.bundle->serial);
        CHECK(leaf_id(p, b) && old_id && strcmp(leaf_id(p, b), old_id));
    }
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "thirty.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_account_again(cs_acme_drive_t *d,
                               const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    const char *kid, *cms, *old_kid, *thumb, *k2 = NULL, *err = NULL;
    apr_array_header_t *rcpt;
    unsigned char *der;
    apr_size_t len;
    EVP_PKEY *key, *old_key = NULL;
    cs_acme_t *other;
    int made, bad;

    UNIT_CASE("account re-registration: the CA forgot the account");
    apr_pool_create(&p, root);
    /* The test's clock is some 21 days ahead of the certificates' by
     * now: longer ones, so that none is due for renewal meanwhile. */
    ca.lifetime = apr_time_from_sec(60 * DAY);
    CHECK_EQ_INT(cs_store_account_get(&old_kid, &cms, &db, p,
                                      pol->directory_url), APR_SUCCESS);
    /* A test CA restarted: no account for any key. */
    apr_array_clear(ca.accounts);
    made = ca.accounts_made;
    enqueue("again.test");
    CHECK_EQ_INT(run(&out, d, p, "again.test"), CS_ACME_JOB_FAILED);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "accountDoesNotExist"));
    /* The retry registers the stored key again, and the new account URL
     * is what the database holds afterwards. */
    clock_now += pol->backoff;
    CHECK_EQ_INT(run(&out, d, p, "again.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(ca.accounts_made, made + 1);
    CHECK(out.new_account == NULL);     /* the same key: not a new one */
    if (CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &db, p,
                                          pol->directory_url),
                     APR_SUCCESS)) {
        CHECK_STR(kid, ca.last_account);
        CHECK(strcmp(kid, old_kid) != 0);
    }

    UNIT_CASE("account re-registration: the key was rolled over");
    /* Another instance rolls the account over to a new key: it unseals
     * the stored key, logs in, asks the CA (keyChange), and stores the
     * new key sealed.  The CA no longer accepts the old key. */
    rcpt = apr_array_make(p, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(rcpt, X509 *) = pol->seal_cert;
    CHECK_EQ_INT(cs_base64_decode(&der, &len, p, cms), APR_SUCCESS);
    CHECK_EQ_INT(cs_envelope_open(&old_key, p, der, len, pol->seal_cert,
                                  pol->seal_key, &err), APR_SUCCESS);
    other = acme_client(p, pol->directory_url, NULL);
    if (!CHECK(old_key != NULL)
        || !CHECK_EQ_INT(cs_acme_account(&k2, other, old_key, NULL, &err),
                         APR_SUCCESS)) {
        apr_pool_destroy(p);
        return;
    }
    CHECK_STR(k2, kid);
    CHECK_EQ_INT(cs_key_generate(&key, p, CS_KEY_EC_P256), APR_SUCCESS);
    CHECK_EQ_INT(cs_acme_key_change(other, key, &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_envelope_seal(&der, &len, p, key, rcpt, &err),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_jwk_thumbprint(&thumb, p, key), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_account_put(&db, p, pol->directory_url, kid,
                                      cs_base64_encode(p, der, len), 0),
                 APR_SUCCESS);
    bad = ca.bad_requests;
    made = ca.accounts_made;
    enqueue("rolled.test");
    CHECK_EQ_INT(run(&out, d, p, "rolled.test"), CS_ACME_JOB_ISSUED);
    /* The worker logged in with the new key before ordering: the same
     * account, and no request signed with the old key. */
    CHECK_STR(ca.last_key, thumb);
    CHECK_STR(ca.last_account, kid);
    CHECK_EQ_INT(ca.accounts_made, made);
    CHECK_EQ_INT(ca.bad_requests, bad);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "again.test"), APR_SUCCESS);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "rolled.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* SQL on the test's database: triggers that make one store call fail. */
static void sql(const char *stmt)
{
    int n = 0;

    if (apr_dbd_query(db.driver, db.handle, &n, stmt) != 0) {
        CHECK_STR(apr_dbd_error(db.driver, db.handle, 1), "");
    }
}

/*
 * The store refuses a write the job makes on the side (issue 17, "seen
 * while reading"): the domain's error (cs_store_set_error) and the
 * account (cs_store_account_put) are not dropped silently.
 */
static void test_store_failures(cs_acme_drive_t *d,
                                const cs_acme_policy_t *pol)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_drive_t *fresh;
    cs_job_t *job;
    const char *kid, *cms, *old_kid;
    int errors = logged_errors;

    UNIT_CASE("store failure: the domain's error cannot be recorded");
    apr_pool_create(&p, root);
    ca.mode = CA_INVALID;
    enqueue("noerror.test");
    sql("CREATE TRIGGER t_no_error BEFORE UPDATE ON cs_domains"
        " WHEN NEW.last_error IS NOT NULL"
        " BEGIN SELECT RAISE(ABORT, 'injected by the test'); END");
    logged_tags[0] = '\0';
    CHECK_EQ_INT(run(&out, d, p, "noerror.test"), CS_ACME_JOB_FAILED);
    /* CS00034 at ERR, and the job's outcome is recorded all the same */
    CHECK(strstr(logged_tags, "CS00034") != NULL);
    CHECK(logged_errors > errors);
    job = job_of(p, "noerror.test");
    CHECK(job && job->attempts == 1 && job->next_at > clock_now);
    sql("DROP TRIGGER t_no_error");
    ca.mode = CA_VALID;
    clock_now += pol->backoff_cap;
    CHECK_EQ_INT(run(&out, d, p, "noerror.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "noerror.test"), APR_SUCCESS);

    UNIT_CASE("store failure: a re-registered account's URL");
    CHECK_EQ_INT(cs_store_account_get(&old_kid, &cms, &db, p,
                                      pol->directory_url), APR_SUCCESS);
    apr_array_clear(ca.accounts);       /* the CA forgot the account */
    enqueue("noaccount.test");
    CHECK_EQ_INT(run(&out, d, p, "noaccount.test"), CS_ACME_JOB_FAILED);
    sql("CREATE TRIGGER t_no_acct_update BEFORE UPDATE ON cs_acme_accounts"
        " BEGIN SELECT RAISE(ABORT, 'injected by the test'); END");
    logged_tags[0] = '\0';
    clock_now += pol->backoff_cap;
    /* Registered again: issued, and the failure to store the new URL is
     * logged (CS00032), not dropped. */
    CHECK_EQ_INT(run(&out, d, p, "noaccount.test"), CS_ACME_JOB_ISSUED);
    CHECK(strstr(logged_tags, "CS00032") != NULL);
    CHECK_EQ_INT(cs_store_account_get(&kid, &cms, &db, p,
                                      pol->directory_url), APR_SUCCESS);
    CHECK_STR(kid, old_kid);            /* the update did not happen */
    sql("DROP TRIGGER t_no_acct_update");
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "noaccount.test"),
                 APR_SUCCESS);

    UNIT_CASE("store failure: a new account cannot be stored");
    sql("DELETE FROM cs_acme_accounts");
    sql("CREATE TRIGGER t_no_acct_insert BEFORE INSERT ON cs_acme_accounts"
        " BEGIN SELECT RAISE(ABORT, 'injected by the test'); END");
    fresh = make_drive(p, pol, "test:1:9");
    enqueue("newaccount.test");
    CHECK_EQ_INT(run(&out, fresh, p, "newaccount.test"), CS_ACME_JOB_FAILED);
    CHECK(out.new_account == NULL);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "cannot store the ACME account"));
    sql("DROP TRIGGER t_no_acct_insert");
    clock_now += pol->backoff_cap;
    CHECK_EQ_INT(run(&out, fresh, p, "newaccount.test"), CS_ACME_JOB_ISSUED);
    CHECK(out.new_account != NULL);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "newaccount.test"),
                 APR_SUCCESS);
    /* the errors logged on purpose are not the final check's */
    logged_errors = errors;
    apr_pool_destroy(p);
}

/* A CA that requires External Account Binding, and no binding: the job
 * fails naming the directive, and the CA gets no account request. */
static void test_eab_required(const cs_acme_policy_t *pol)
{
    cs_acme_policy_t epol = *pol;
    cs_acme_outcome_t out;
    cs_acme_drive_t *d;
    apr_pool_t *p;
    int regs = registrations(), orders = new_orders();

    UNIT_CASE("EAB required, none configured");
    apr_pool_create(&p, root);
    epol.directory_url = EAB_DIR_URL;
    d = make_drive(p, &epol, "test:eab:0");
    enqueue("eab.test");
    CHECK_EQ_INT(run(&out, d, p, "eab.test"), CS_ACME_JOB_FAILED);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "externalAccountRequired")
          && strstr(out.job->last_error,
                    "CertServiceACMEExternalAccountBinding"));
    CHECK_EQ_INT(registrations(), regs);
    CHECK_EQ_INT(new_orders(), orders);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "eab.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* tls-alpn-01: a client that answers it and a CA that offers only it;
 * the challenge certificate is in the store while the order runs and
 * gone after. */
static void test_tlsalpn(const cs_acme_policy_t *pol)
{
    cs_acme_outcome_t out;
    cs_acme_drive_t *d;
    cs_acme_conf_t conf;
    cs_acme_t *acme;
    cs_tlsalpn_t *t;
    apr_pool_t *p;

    UNIT_CASE("tls-alpn-01: the challenge certificate through the store");
    apr_pool_create(&p, root);
    cs_acme_drive_create(&d, p, pol, "test:alpn:0", test_log, NULL);
    memset(&conf, 0, sizeof(conf));
    conf.directory_url = pol->directory_url;
    conf.http = fake_http_transport(ca.http);
    conf.log = test_log;
    conf.challenge = cs_acme_drive_challenge;
    conf.challenge_baton = d;
    conf.challenges = CS_ACME_HTTP01 | CS_ACME_TLSALPN01;
    if (!CHECK_EQ_INT(cs_acme_create(&acme, p, &conf), APR_SUCCESS)) {
        return;
    }
    cs_acme_drive_set_client(d, &cs_acme_client_ops, acme);
    cs_acme_drive_set_clock(d, test_clock, NULL);
    ca.alpn = 1;
    ca.alpn_wrap_cert = pol->seal_cert;
    ca.alpn_wrap_key = pol->seal_key;
    ca.alpn_validated = 0;
    enqueue("alpn.test");
    CHECK_EQ_INT(run(&out, d, p, "alpn.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(ca.alpn_validated, 1);
    CHECK_EQ_INT(cs_store_tlsalpn_get(&t, &db, p, "alpn.test", clock_now),
                 APR_NOTFOUND);

    UNIT_CASE("tls-alpn-01 offered, the client answers http-01 only");
    {
        cs_acme_drive_t *d2 = make_drive(p, pol, "test:alpn:1");

        CHECK_EQ_INT(cs_store_job_enqueue(&db, p, "alpn.test", "ec-p256",
                                          NULL, clock_now), APR_SUCCESS);
        CHECK_EQ_INT(run(&out, d2, p, "alpn.test"), CS_ACME_JOB_FAILED);
        CHECK(out.job && out.job->last_error
              && strstr(out.job->last_error, "offered: tls-alpn-01"));
        CHECK_EQ_INT(ca.alpn_validated, 1);
    }
    ca.alpn = 0;
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "alpn.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

static void test_backoff(cs_acme_drive_t *d, const cs_acme_policy_t *pol)
{
    static const apr_int64_t want[] = { 60, 120, 240, 300, 300, 300 };
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_job_t *job;
    cs_acme_policy_t big = *pol;
    int i, orders = new_orders();

    UNIT_CASE("backoff: the delay doubles up to the cap");
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 1, 0), 60);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 2, 0), 120);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 4, 0), 300);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 40, 0), 300);
    /* Retry-After wins when it is longer, never when shorter. */
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 1, 3600), 3600);
    CHECK_EQ_INT(cs_acme_retry_delay(pol, 3, 10), 240);
    big.backoff_cap = 7 * DAY;
    CHECK_EQ_INT(cs_acme_retry_delay(&big, 12, 0), 60 * 2048);

    UNIT_CASE("backoff: growth and cap through failing jobs");
    apr_pool_create(&p, root);
    ca.mode = CA_INVALID;
    enqueue("flaky.test");
    for (i = 0; i < (int)(sizeof(want) / sizeof(want[0])); i++) {
        CHECK_EQ_INT(run(&out, d, p, "flaky.test"), CS_ACME_JOB_FAILED);
        job = job_of(p, "flaky.test");
        if (!job) {
            break;
        }
        CHECK_EQ_INT(job->attempts, i + 1);
        CHECK_EQ_INT(job->next_at - clock_now, want[i]);
        /* Not due a second early. */
        clock_now = job->next_at - 1;
        CHECK(nothing_due(d, p));
        clock_now = job->next_at;
    }
    /* Every attempt was an order the CA refused. */
    CHECK_EQ_INT(new_orders(), orders + i);
    /* A success resets the count. */
    ca.mode = CA_VALID;
    CHECK_EQ_INT(run(&out, d, p, "flaky.test"), CS_ACME_JOB_ISSUED);
    job = job_of(p, "flaky.test");
    CHECK(job && job->attempts == 0);
    apr_pool_destroy(p);
}

static void test_precheck(const cs_acme_policy_t *base)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_policy_t pol = *base;
    cs_acme_drive_t *d;
    fake_dns_t dns;
    const fake_http_request_t *r;
    int orders = new_orders(), regs;

    UNIT_CASE("pre-check: a domain that does not reach us is not ordered");
    if (!CHECK(fake_dns_start(&dns, dns_answer) == 0)) {
        return;
    }
    apr_pool_create(&p, root);
    pol.precheck_port = 80;
    pol.precheck_dns = apr_psprintf(p, "127.0.0.1:%d", dns.port);
    d = make_drive(p, &pol, "test:1:1");
    ca.precheck_fail = 1;
    enqueue("away.test");
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_FAILED);
    /* One probe, to the address from the policy's DNS server, of a token
     * published in the store meanwhile. */
    CHECK_EQ_INT(fake_http_count(ca.probe), 1);
    r = fake_http_request(ca.probe, 0);
    CHECK(r && r->resolve && strcmp(r->resolve, "away.test:80:127.0.0.1")
                             == 0);
    CHECK(r && STARTS(r->url, "http://away.test:80/.well-known/"
                      "acme-challenge/cs-precheck-"));
    CHECK_EQ_INT(dns.queries, 1);
    CHECK_EQ_INT(ca.probes_served, 1);
    CHECK_EQ_INT(new_orders(), orders);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "connection refused"));
    /* The CA was not involved: the account is not looked up again. */
    regs = registrations();
    clock_now += pol.backoff;
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(registrations(), regs);

    UNIT_CASE("pre-check: passed, the order goes on");
    ca.precheck_fail = 0;
    clock_now += 2 * pol.backoff;
    CHECK_EQ_INT(run(&out, d, p, "away.test"), CS_ACME_JOB_ISSUED);
    CHECK_EQ_INT(fake_http_count(ca.probe), 3);
    CHECK_EQ_INT(ca.probes_served, 3);
    CHECK_EQ_INT(new_orders(), orders + 1);
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "away.test"), APR_SUCCESS);
    fake_dns_stop(&dns);
    apr_pool_destroy(p);
}

/* dns-01's pre-check: a wildcard whose _acme-challenge place cannot be
 * found (here: the resolver does not answer) is not ordered, and no
 * http probe is made for it. */
static void test_precheck_dns01(const cs_acme_policy_t *base)
{
    apr_pool_t *p;
    cs_acme_outcome_t out;
    cs_acme_policy_t pol = *base;
    cs_dns_conf_t dc;
    cs_acme_drive_t *d;
    int orders = new_orders(), probes = fake_http_count(ca.probe);

    UNIT_CASE("dns-01 pre-check: a wildcard whose record has no place");
    apr_pool_create(&p, root);
    memset(&dc, 0, sizeof(dc));
    dc.resolver = "127.0.0.1:1";        /* nothing answers there */
    dc.hook = NULL;
    pol.dns = &dc;
    pol.precheck_port = 80;
    d = make_drive(p, &pol, "test:1:2");
    enqueue("*.wild.test");
    CHECK_EQ_INT(run(&out, d, p, "*.wild.test"), CS_ACME_JOB_FAILED);
    CHECK_EQ_INT(new_orders(), orders);
    CHECK_EQ_INT(fake_http_count(ca.probe), probes);
    CHECK(out.job && out.job->last_error
          && strstr(out.job->last_error, "dns-01 pre-check: ")
          && strstr(out.job->last_error, "_acme-challenge.wild.test"));
    CHECK_EQ_INT(cs_store_job_delete(&db, p, "*.wild.test"), APR_SUCCESS);
    apr_pool_destroy(p);
}

int main(void)
{
    const char *tmpdir;
    apr_file_t *f;
    char *path;
    cs_acme_policy_t pol;
    cs_acme_drive_t *d;
    apr_pool_t *dp;
    EVP_PKEY *ca_key, *seal_key;
    apr_array_header_t *wrap;
    int rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    apr_dbd_init(root);
    cs_acme_global_init();
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (apr_temp_dir_get(&tmpdir, root) != APR_SUCCESS) {
        tmpdir = "/tmp";
    }
    path = apr_pstrcat(root, tmpdir, "/cs_acme_drive_test_XXXXXX", NULL);
    if (apr_file_mktemp(&f, path, APR_FOPEN_CREATE | APR_FOPEN_READ
                        | APR_FOPEN_WRITE | APR_FOPEN_EXCL, root)
        != APR_SUCCESS) {
        fprintf(stderr, "no temporary file in %s\n", tmpdir);
        return 2;
    }
    apr_file_close(f);
    open_db(path);

    /* The CA, and one RSA certificate as wrapping certificate and as the
     * account seal. */
    if (cs_key_generate(&ca_key, root, CS_KEY_EC_P256)
        || cs_key_generate(&seal_key, root, CS_KEY_RSA_2048)) {
        fprintf(stderr, "cannot generate keys\n");
        return 2;
    }
    memset(&ca, 0, sizeof(ca));
    ca.pool = root;
    ca.ca = apr_pcalloc(root, sizeof(*ca.ca));
    ca.ca->key = ca_key;
    ca.ca->cert = self_signed(ca_key, "fake ACME CA", 1);
    ca.accounts = apr_array_make(root, 4, sizeof(ca_account_t *));
    ca.orders = apr_array_make(root, 16, sizeof(ca_order_t *));
    ca.nonces = apr_hash_make(root);
    ca.issued = apr_hash_make(root);
    ca.lifetime = apr_time_from_sec(10 * DAY);
    ca.http = fake_http_create(root);
    fake_http_handler(ca.http, ca_serve, NULL);
    ca.probe = fake_http_create(root);
    fake_http_handler(ca.probe, probe_serve, NULL);
    wrap = apr_array_make(root, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(wrap, X509 *) = self_signed(seal_key, "wrap and seal", 0);

    memset(&pol, 0, sizeof(pol));
    pol.directory_url = DIR_URL;
    pol.seal_cert = APR_ARRAY_IDX(wrap, 0, X509 *);
    pol.seal_key = seal_key;
    pol.wrap_certs = wrap;
    pol.limit = 1000;
    pol.window = 3600;
    pol.backoff = 60;
    pol.backoff_cap = 300;
    pol.renew_pm = 667;
    pol.jitter_pm = 50;
    pol.ari = 1;
    pol.precheck_port = -1;

    clock_now = apr_time_sec(apr_time_now());
    apr_pool_create(&dp, root);
    d = make_drive(dp, &pol, "test:1:0");

    test_success(d, &pol);
    test_invalid_challenge(d, &pol);
    test_rate_limited(d, &pol);
    test_ari(d, &pol);
    test_profiles(d, &pol);
    test_account_again(d, &pol);
    test_tlsalpn(&pol);
    test_backoff(d, &pol);
    test_store_failures(d, &pol);
    test_precheck(&pol);
    test_precheck_dns01(&pol);
    test_eab_required(&pol);

    UNIT_CASE("the CA and the domains were asked nothing unexpected");
    CHECK_EQ_INT(fake_http_unanswered(ca.http), 0);
    CHECK_EQ_INT(fake_http_unanswered(ca.probe), 0);
    CHECK_EQ_INT(ca.bad_requests, 0);

    UNIT_CASE("no error was logged");
    CHECK_EQ_INT(logged_errors, 0);

    rc = unit_summary();
    apr_dbd_close(db.driver, db.handle);
    apr_file_remove(path, root);
    apr_file_remove(apr_pstrcat(root, path, "-wal", NULL), root);
    apr_file_remove(apr_pstrcat(root, path, "-shm", NULL), root);
    apr_pool_destroy(root);
    apr_terminate();
    return rc;
}
