/*
 * test_cs_tkey.c: the pool's TLS session ticket keys: the schedule's
 * phases, the sealed secret, the shared table, and real in-memory TLS
 * handshakes between two "proxies" (two SSL_CTXs with their own
 * certificates and sessions caches) that share one table: a ticket from
 * one resumes on the other, in TLS 1.3 and 1.2, through a rotation, and
 * not once its key is gone (a full handshake, no error).
 */
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_tkey.h"
#include "testkit.h"
#include "unit.h"

static apr_pool_t *pool;
static cs_tk_table_t table;     /* what the daemon writes */
static apr_int64_t clock_now;   /* the callback's idea of the time */
/* connect_to's last connection: whether application data went both ways
 * after the handshake (TLS 1.3 sends its tickets then: a malformed one
 * breaks the connection there, not in the handshake). */
static int last_data_ok;
/* ... and the NewSessionTicket messages the client got on it: how many,
 * and how many carried a ticket (TLS 1.2's may be empty). */
static int last_nst, last_nst_ticket;

static void count_nst(int write_p, int version, int content_type,
                      const void *buf, size_t len, SSL *ssl, void *arg)
{
    const unsigned char *m = buf;

    (void)ssl;
    (void)arg;
    if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 4
        || m[0] != SSL3_MT_NEWSESSION_TICKET) {
        return;
    }
    last_nst++;
    /* TLS 1.2: type, length(3), lifetime(4), ticket length(2), ticket;
     * TLS 1.3 has no empty ticket (its ticket field is 1 byte at least) */
    if (version != TLS1_2_VERSION || len < 10 || m[8] != 0 || m[9] != 0) {
        last_nst_ticket++;
    }
}

static int tk_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
                 EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    cs_tk_table_t snap;

    (void)ssl;
    cs_tk_table_get(&snap, &table);
    return cs_tk_ticket_cb(&snap, clock_now, name, iv, ectx, hctx, enc);
}

static SSL_CTX *server_ctx(EVP_PKEY *key, X509 *cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    /* Each "proxy" has its own cache: a session id never crosses. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pool", 4);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tk_cb);
    return ctx;
}

/* Move bytes between the two ends until both are done (or stuck). */
static int handshake(SSL *c, SSL *s)
{
    int i, rc, rs, done_c = 0, done_s = 0;

    for (i = 0; i < 100 && !(done_c && done_s); i++) {
        if (!done_c) {
            rc = SSL_do_handshake(c);
            if (rc == 1) {
                done_c = 1;
            }
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) {
                return 0;
            }
        }
        if (!done_s) {
            rs = SSL_do_handshake(s);
            if (rs == 1) {
                done_s = 1;
            }
            else if (SSL_get_error(s, rs) != SSL_ERROR_WANT_READ) {
                return 0;
            }
        }
    }
    return done_c && done_s;
}

/*
 * One connection from the client to server ctx sctx, offering sess (may
 * be NULL); *resumed whether it was; returns the client's session after
 * (TLS 1.3: the tickets come after the handshake, so read once), or NULL
 * if the handshake failed.
 */
static SSL_SESSION *connect_to(SSL_CTX *cctx, SSL_CTX *sctx, int version,
                               SSL_SESSION *sess, int *resumed)
{
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *bc, *bs;
    SSL_SESSION *out = NULL;
    char buf[16];

    *resumed = -1;
    last_data_ok = last_nst = last_nst_ticket = 0;
    SSL_set_msg_callback(c, count_nst);
    BIO_new_bio_pair(&bc, 0, &bs, 0);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_min_proto_version(c, version);
    SSL_set_max_proto_version(c, version);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sess) {
        SSL_set_session(c, sess);
    }
    if (handshake(c, s)) {
        *resumed = SSL_session_reused(c);
        /* Let the server's NewSessionTicket reach the client (the
         * client reads them before the byte), then a byte back. */
        last_data_ok = SSL_write(s, "x", 1) == 1
                       && SSL_read(c, buf, sizeof(buf)) == 1
                       && buf[0] == 'x'
                       && SSL_write(c, "y", 1) == 1
                       && SSL_read(s, buf, sizeof(buf)) == 1
                       && buf[0] == 'y';
        out = SSL_get1_session(c);
        /* A clean close: OpenSSL marks the session of a connection freed
         * without one not resumable. */
        SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
    return out;
}

/*
 * An EMPTY table, as a proxy has it before its first sync (the segment
 * as cs_tk_table_init left it) and once every key expired (the daemon
 * put no key, or the keys it holds are all past accept_until): the
 * callback must make OpenSSL send no ticket (or one nobody can resume),
 * never fail the handshake or the connection after it, and never encrypt
 * with a zero key.  old: a ticket of a key gone.
 */
static void empty_table(SSL_CTX *cctx, SSL_CTX *a, int version,
                        const char *label, SSL_SESSION *old)
{
    cs_tk_key_t zero, keys[1];
    SSL_SESSION *s2, *s3;
    int resumed, i, how;
    static const char *const hows[] = {
        "before the first sync (zeroed segment)",
        "every key expired",
        "the reader gave up on a stuck writer"
    };

    for (how = 0; how < 3; how++) {
        UNIT_CASE(apr_psprintf(pool, "%s, empty table %s: a new client and "
                               "a returning one complete the handshake, "
                               "data flows after it, no ticket", label,
                               hows[how]));
        if (how == 0) {
            cs_tk_table_init(&table);
        }
        else if (how == 1) {
            cs_tk_generate(&keys[0], 900, 100, 50);
            cs_tk_table_put(&table, keys, 1, 100, 50, 2000);
        }
        else {
            cs_tk_table_put(&table, NULL, 0, 100, 50, 2000);
            table.seq |= 1;     /* a writer died in the middle */
        }
        clock_now = 2000;
        for (i = 0; i < 2; i++) {
            s2 = connect_to(cctx, a, version, i ? old : NULL, &resumed);
            CHECK(s2 != NULL);
            CHECK_EQ_INT(resumed, 0);
            CHECK(last_data_ok);
            if (!s2) {
                continue;
            }
            CHECK(!SSL_SESSION_has_ticket(s2));
            /* OpenSSL 3.0: TLS 1.3 sends no NewSessionTicket at all when
             * the callback has no key (returns 0); TLS 1.2, having
             * announced the extension, sends one with an empty ticket,
             * which the client ignores. */
            CHECK_EQ_INT(last_nst_ticket, 0);
            if (version == TLS1_3_VERSION) {
                CHECK_EQ_INT(last_nst, 0);
            }
            /* Had it a ticket after all, no proxy whose table holds an
             * all-zero key (name, HMAC and AES) of any time may resume
             * it: it was not encrypted with a zero key. */
            memset(&zero, 0, sizeof(zero));
            cs_tk_window(&zero, 1900, 200, 100);
            cs_tk_table_put(&table, &zero, 1, 200, 100, 2000);
            s3 = connect_to(cctx, a, version, s2, &resumed);
            CHECK_EQ_INT(resumed, 0);
            SSL_SESSION_free(s3);
            /* back to the empty table of this case */
            if (how == 0) {
                cs_tk_table_init(&table);
            }
            else if (how == 1) {
                cs_tk_table_put(&table, keys, 1, 100, 50, 2000);
            }
            else {
                cs_tk_table_put(&table, NULL, 0, 100, 50, 2000);
                table.seq |= 1;
            }
            SSL_SESSION_free(s2);
        }
    }
    table.seq &= ~1u;
}

static void handshakes(SSL_CTX *cctx, SSL_CTX *a, SSL_CTX *b, int version,
                       const char *label)
{
    cs_tk_key_t keys[3];
    SSL_SESSION *s1, *s2, *s3;
    int resumed, i, n;

    /* rotate 100 s, accept 50 s; the time 1000: key 1000 issues, 1100
     * is published early, 900 accepted late. */
    cs_tk_generate(&keys[0], 900, 100, 50);
    cs_tk_generate(&keys[1], 1000, 100, 50);
    cs_tk_generate(&keys[2], 1100, 100, 50);
    cs_tk_table_put(&table, keys, 3, 100, 50, 1000);
    clock_now = 1000;

    UNIT_CASE(apr_psprintf(pool, "%s: a ticket from proxy A resumes on "
                           "proxy B, and on A", label));
    s1 = connect_to(cctx, a, version, NULL, &resumed);
    if (!CHECK(s1 != NULL) || !CHECK_EQ_INT(resumed, 0)) {
        return;
    }
    CHECK(last_data_ok);
    CHECK(SSL_SESSION_has_ticket(s1));
    CHECK(last_nst_ticket > 0);     /* the message counter works */
    s2 = connect_to(cctx, b, version, s1, &resumed);
    CHECK_EQ_INT(resumed, 1);
    SSL_SESSION_free(s2);
    for (i = n = 0; i < 10; i++) {
        s2 = connect_to(cctx, i % 2 ? a : b, version, s1, &resumed);
        n += resumed == 1;
        SSL_SESSION_free(s2);
    }
    CHECK_EQ_INT(n, 10);

    UNIT_CASE(apr_psprintf(pool, "%s: across a rotation, a ticket resumes "
                           "while its key is accepted", label));
    clock_now = 1120;           /* key 1100 issues; 1000 is accepted late */
    s2 = connect_to(cctx, b, version, s1, &resumed);
    CHECK_EQ_INT(resumed, 1);
    /* ... and the client got a ticket under the new key (renewed: 2). */
    if (CHECK(s2 != NULL)) {
        s3 = connect_to(cctx, a, version, s2, &resumed);
        CHECK_EQ_INT(resumed, 1);
        SSL_SESSION_free(s3);
        SSL_SESSION_free(s2);
    }

    UNIT_CASE(apr_psprintf(pool, "%s: a ticket whose key is gone gets a "
                           "full handshake, no error", label));
    clock_now = 1150;           /* 1000's accept window ended at 1150 */
    s2 = connect_to(cctx, a, version, s1, &resumed);
    CHECK(s2 != NULL);
    CHECK_EQ_INT(resumed, 0);
    SSL_SESSION_free(s2);

    UNIT_CASE(apr_psprintf(pool, "%s: no issuing key (table empty or "
                           "stale): no ticket, the handshake works",
                           label));
    cs_tk_table_put(&table, NULL, 0, 100, 50, 1150);
    s2 = connect_to(cctx, a, version, s1, &resumed);
    CHECK(s2 != NULL);
    CHECK_EQ_INT(resumed, 0);
    CHECK(last_data_ok);
    if (s2) {
        CHECK(!SSL_SESSION_has_ticket(s2));
        SSL_SESSION_free(s2);
    }

    empty_table(cctx, a, version, label, s1);
    SSL_SESSION_free(s1);
}

int main(int argc, const char *const *argv)
{
    cs_tk_key_t k, k2, keys[CS_TK_MAX + 2];
    cs_tk_table_t snap;
    unsigned char secret[CS_TK_SECRET_LEN], opened[CS_TK_SECRET_LEN + 8];
    unsigned char name[CS_TK_NAME_LEN];
    char hex[2 * CS_TK_NAME_LEN + 1];
    apr_array_header_t *wcerts, *wkeys;
    unsigned char *der;
    apr_size_t der_len, len;
    const char *err;
    cs_ca_t ca;
    EVP_PKEY *ka, *kb;
    SSL_CTX *a, *b, *cctx;
    int i;

    (void)argc;
    (void)argv;
    apr_initialize();
    apr_pool_create(&pool, NULL);

    UNIT_CASE("schedule: periods and phases (rotate 100, accept 50)");
    CHECK_EQ_INT(cs_tk_period(1234, 100), 1200);
    CHECK_EQ_INT(cs_tk_period(1200, 100), 1200);
    CHECK_EQ_INT(cs_tk_period(-5, 100), -100);
    cs_tk_window(&k, 1200, 100, 50);
    CHECK_EQ_INT(k.issue_until, 1300);
    CHECK_EQ_INT(k.accept_until, 1350);
    CHECK_EQ_INT(cs_tk_phase(&k, 1099, 100), CS_TK_UNPUBLISHED);
    CHECK_EQ_INT(cs_tk_phase(&k, 1100, 100), CS_TK_EARLY);
    CHECK_EQ_INT(cs_tk_phase(&k, 1199, 100), CS_TK_EARLY);
    CHECK_EQ_INT(cs_tk_phase(&k, 1200, 100), CS_TK_ISSUING);
    CHECK_EQ_INT(cs_tk_phase(&k, 1299, 100), CS_TK_ISSUING);
    CHECK_EQ_INT(cs_tk_phase(&k, 1300, 100), CS_TK_LATE);
    CHECK_EQ_INT(cs_tk_phase(&k, 1349, 100), CS_TK_LATE);
    CHECK_EQ_INT(cs_tk_phase(&k, 1350, 100), CS_TK_GONE);

    UNIT_CASE("names: hex both ways; bad hex refused");
    CHECK_EQ_INT(cs_tk_generate(&k, 1200, 100, 50), APR_SUCCESS);
    cs_tk_name_hex(hex, k.name);
    CHECK_EQ_INT(strlen(hex), 32);
    CHECK_EQ_INT(cs_tk_name_parse(name, hex), APR_SUCCESS);
    CHECK_MEM(name, k.name, CS_TK_NAME_LEN);
    CHECK_EQ_INT(cs_tk_name_parse(name, "00"), APR_EINVAL);
    CHECK_EQ_INT(cs_tk_name_parse(name, "zz112233445566778899aabbccddeeff"),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_tk_name_parse(name, NULL), APR_EINVAL);
    cs_tk_generate(&k2, 1200, 100, 50);
    CHECK(memcmp(k.name, k2.name, CS_TK_NAME_LEN) != 0);
    CHECK(memcmp(k.aes, k2.aes, CS_TK_AES_LEN) != 0);

    UNIT_CASE("sealed like a private key: only the wrapping key opens it");
    if (testkit_ca_and_wrap(pool, &ca, &wcerts, &wkeys) == 0) {
        cs_tk_secret_pack(secret, &k);
        CHECK_EQ_INT(cs_envelope_seal_data(&der, &der_len, pool, secret,
                                           sizeof(secret), wcerts, &err),
                     APR_SUCCESS);
        CHECK(der_len > sizeof(secret));
        CHECK(memmem(der, der_len, k.aes, 8) == NULL);
        CHECK_EQ_INT(cs_envelope_open_data(opened, sizeof(opened), &len,
                                           pool, der, der_len,
                                           APR_ARRAY_IDX(wcerts, 0, X509 *),
                                           APR_ARRAY_IDX(wkeys, 0,
                                                         EVP_PKEY *),
                                           &err), APR_SUCCESS);
        CHECK_EQ_INT(len, CS_TK_SECRET_LEN);
        CHECK_EQ_INT(cs_tk_secret_unpack(&k2, opened, len), APR_SUCCESS);
        CHECK_MEM(k2.name, k.name, CS_TK_NAME_LEN);
        CHECK_MEM(k2.hmac, k.hmac, CS_TK_HMAC_LEN);
        CHECK_MEM(k2.aes, k.aes, CS_TK_AES_LEN);
        CHECK_EQ_INT(cs_tk_secret_unpack(&k2, opened, len - 1), APR_EINVAL);
        /* Too small a buffer, another key, a flipped byte: refused. */
        CHECK(cs_envelope_open_data(opened, 10, &len, pool, der, der_len,
                                    NULL, APR_ARRAY_IDX(wkeys, 0,
                                                        EVP_PKEY *), &err)
              != APR_SUCCESS);
        kb = NULL;
        cs_key_generate(&kb, pool, CS_KEY_RSA_2048);
        CHECK(cs_envelope_open_data(opened, sizeof(opened), &len, pool, der,
                                    der_len, NULL, kb, &err)
              != APR_SUCCESS);
        der[der_len - 20] ^= 1;
        CHECK(cs_envelope_open_data(opened, sizeof(opened), &len, pool, der,
                                    der_len, NULL, APR_ARRAY_IDX(wkeys, 0,
                                                                 EVP_PKEY *),
                                    &err) != APR_SUCCESS);
        /* A key envelope is not a ticket key, nor the reverse. */
        CHECK(cs_envelope_seal_data(&der, &der_len, pool, secret, 0, wcerts,
                                    &err) == APR_EINVAL);
    }

    UNIT_CASE("table: put, get, the issuing key, find; at most CS_TK_MAX");
    cs_tk_table_init(&table);
    for (i = 0; i < CS_TK_MAX + 2; i++) {
        cs_tk_generate(&keys[i], 1000 + 100 * i, 100, 50);
    }
    cs_tk_table_put(&table, keys, 3, 100, 50, 1050);
    cs_tk_table_get(&snap, &table);
    CHECK_EQ_INT(snap.n, 3);
    CHECK_EQ_INT(snap.seq % 2, 0);
    CHECK(cs_tk_issuing(&snap, 1050) == &snap.keys[0]);
    CHECK(cs_tk_issuing(&snap, 1150) == &snap.keys[1]);
    CHECK(cs_tk_issuing(&snap, 999) == NULL);
    CHECK(cs_tk_issuing(&snap, 1300) == NULL);   /* stale: no issuer */
    CHECK(cs_tk_find(&snap, keys[0].name, 1149) == &snap.keys[0]);
    CHECK(cs_tk_find(&snap, keys[0].name, 1150) == NULL);
    CHECK(cs_tk_find(&snap, keys[5].name, 1050) == NULL);
    /* Overlapping issuers (a changed rotate): the later start wins. */
    cs_tk_window(&keys[3], 1040, 20, 50);
    cs_tk_table_put(&table, keys, 4, 100, 50, 1050);
    cs_tk_table_get(&snap, &table);
    CHECK(cs_tk_issuing(&snap, 1050) == &snap.keys[3]);
    cs_tk_table_put(&table, keys, CS_TK_MAX + 2, 100, 50, 1050);
    cs_tk_table_get(&snap, &table);
    CHECK_EQ_INT(snap.n, CS_TK_MAX);

    UNIT_CASE("table: a writer that died in the middle (seq left odd) "
              "hangs no reader, and the next writer takes over");
    table.seq |= 1;
    cs_tk_table_get(&snap, &table);     /* returns: no keys */
    CHECK_EQ_INT(snap.n, 0);
    cs_tk_table_put(&table, keys, 3, 100, 50, 1050);
    CHECK_EQ_INT(table.seq % 2, 0);
    cs_tk_table_get(&snap, &table);
    CHECK_EQ_INT(snap.n, 3);
    cs_tk_table_put(&table, keys, 2, 100, 50, 1050);
    CHECK_EQ_INT(table.seq % 2, 0);

    ka = kb = NULL;
    cs_key_generate(&ka, pool, CS_KEY_EC_P256);
    cs_key_generate(&kb, pool, CS_KEY_EC_P256);
    a = server_ctx(ka, testkit_self_signed(pool, ka, "pool.example"));
    b = server_ctx(kb, testkit_self_signed(pool, kb, "pool.example"));
    cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
    handshakes(cctx, a, b, TLS1_3_VERSION, "TLS 1.3");
    handshakes(cctx, a, b, TLS1_2_VERSION, "TLS 1.2");

    UNIT_CASE("without the shared keys, B does not resume A's ticket");
    {
        SSL_CTX *c = server_ctx(kb, testkit_self_signed(pool, kb, "x"));
        SSL_SESSION *s1, *s2;
        int resumed;

        SSL_CTX_set_tlsext_ticket_key_evp_cb(c, NULL);
        cs_tk_table_put(&table, keys, 3, 100, 50, 1050);
        clock_now = 1050;
        s1 = connect_to(cctx, a, TLS1_3_VERSION, NULL, &resumed);
        s2 = s1 ? connect_to(cctx, c, TLS1_3_VERSION, s1, &resumed) : NULL;
        CHECK(s2 != NULL);
        CHECK_EQ_INT(resumed, 0);
        SSL_SESSION_free(s1);
        SSL_SESSION_free(s2);
        SSL_CTX_free(c);
    }
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    SSL_CTX_free(cctx);

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
