/*
 * cs_tkey.c: the pool's TLS session ticket keys: their schedule, the
 * table in shared memory and the ticket callback's body (cs_tkey.h).
 */
#include <string.h>

#include <apr_strings.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "cs_tkey.h"

apr_int64_t cs_tk_period(apr_int64_t now, apr_int64_t rotate)
{
    if (rotate <= 0) {
        return now;
    }
    /* Floor division, also before the epoch (tests use small times). */
    return now >= 0 ? now - now % rotate
                    : now - ((now % rotate) + rotate) % rotate;
}

void cs_tk_window(cs_tk_key_t *k, apr_int64_t start, apr_int64_t rotate,
                  apr_int64_t accept)
{
    k->issue_from = start;
    k->issue_until = start + rotate;
    k->accept_until = start + rotate + accept;
}

cs_tk_phase_e cs_tk_phase(const cs_tk_key_t *k, apr_int64_t now,
                          apr_int64_t rotate)
{
    if (now >= k->accept_until) {
        return CS_TK_GONE;
    }
    if (now >= k->issue_until) {
        return CS_TK_LATE;
    }
    if (now >= k->issue_from) {
        return CS_TK_ISSUING;
    }
    return now >= k->issue_from - rotate ? CS_TK_EARLY : CS_TK_UNPUBLISHED;
}

apr_status_t cs_tk_generate(cs_tk_key_t *k, apr_int64_t start,
                            apr_int64_t rotate, apr_int64_t accept)
{
    memset(k, 0, sizeof(*k));
    if (RAND_bytes(k->name, sizeof(k->name)) != 1
        || RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1
        || RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1) {
        OPENSSL_cleanse(k, sizeof(*k));
        return APR_EGENERAL;
    }
    cs_tk_window(k, start, rotate, accept);
    return APR_SUCCESS;
}

void cs_tk_secret_pack(unsigned char out[CS_TK_SECRET_LEN],
                       const cs_tk_key_t *k)
{
    memcpy(out, k->name, CS_TK_NAME_LEN);
    memcpy(out + CS_TK_NAME_LEN, k->hmac, CS_TK_HMAC_LEN);
    memcpy(out + CS_TK_NAME_LEN + CS_TK_HMAC_LEN, k->aes, CS_TK_AES_LEN);
}

apr_status_t cs_tk_secret_unpack(cs_tk_key_t *k, const unsigned char *in,
                                 apr_size_t len)
{
    if (len != CS_TK_SECRET_LEN) {
        return APR_EINVAL;
    }
    memcpy(k->name, in, CS_TK_NAME_LEN);
    memcpy(k->hmac, in + CS_TK_NAME_LEN, CS_TK_HMAC_LEN);
    memcpy(k->aes, in + CS_TK_NAME_LEN + CS_TK_HMAC_LEN, CS_TK_AES_LEN);
    return APR_SUCCESS;
}

void cs_tk_name_hex(char out[2 * CS_TK_NAME_LEN + 1],
                    const unsigned char name[CS_TK_NAME_LEN])
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 0; i < CS_TK_NAME_LEN; i++) {
        out[2 * i] = hex[name[i] >> 4];
        out[2 * i + 1] = hex[name[i] & 15];
    }
    out[2 * CS_TK_NAME_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

apr_status_t cs_tk_name_parse(unsigned char name[CS_TK_NAME_LEN],
                              const char *hex)
{
    int i, hi, lo;

    if (!hex || strlen(hex) != 2 * CS_TK_NAME_LEN) {
        return APR_EINVAL;
    }
    for (i = 0; i < CS_TK_NAME_LEN; i++) {
        if ((hi = hexval(hex[2 * i])) < 0
            || (lo = hexval(hex[2 * i + 1])) < 0) {
            return APR_EINVAL;
        }
        name[i] = (unsigned char)(hi << 4 | lo);
    }
    return APR_SUCCESS;
}

/* --- the table in shared memory ---------------------------------------- */

void cs_tk_table_init(cs_tk_table_t *t)
{
    memset(t, 0, sizeof(*t));
}

/* Tries before a writer takes over an odd sequence (a writer killed in
 * the middle, which a new sync daemon must not wait for) and before a
 * reader gives up (then: no keys, a full handshake).  A write is a copy
 * of a few hundred bytes: far fewer tries than these. */
#define CS_TK_WRITER_SPINS 1000000
#define CS_TK_READER_SPINS 100000

void cs_tk_table_put(cs_tk_table_t *t, const cs_tk_key_t *keys, int n,
                     apr_int64_t rotate, apr_int64_t accept,
                     apr_int64_t now)
{
    apr_uint32_t s = 0, w = 0;
    int i;

    if (n > CS_TK_MAX) {
        n = CS_TK_MAX;
    }
    /* Make seq odd (ours) from an even value, so that two writers (an old
     * daemon finishing while a new one starts) never interleave; an odd
     * value that stays (its writer died) is taken over, still odd.  The
     * release fence orders the odd value before the data. */
    for (i = 0; ; i++) {
        s = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);
        w = (s & 1) ? s + 2 : s + 1;
        if (((s & 1) == 0 || i >= CS_TK_WRITER_SPINS)
            && __atomic_compare_exchange_n(&t->seq, &s, w, 0,
                                           __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED)) {
            break;
        }
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (n > 0) {
        memcpy(t->keys, keys, (size_t)n * sizeof(*keys));
    }
    if (n < CS_TK_MAX) {
        OPENSSL_cleanse(t->keys + n, (size_t)(CS_TK_MAX - n)
                        * sizeof(*keys));
    }
    t->n = (apr_uint32_t)n;
    t->rotate = rotate;
    t->accept = accept;
    t->updated = now;
    __atomic_store_n(&t->seq, w + 1, __ATOMIC_RELEASE);
}

void cs_tk_table_get(cs_tk_table_t *out, const cs_tk_table_t *t)
{
    apr_uint32_t s1, s2;
    int i;

    for (i = 0; i < CS_TK_READER_SPINS; i++) {
        s1 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            continue;   /* the writer is in the middle: a few µs */
        }
        memcpy(out, (const void *)t, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        s2 = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);
        if (s1 == s2) {
            out->seq = s1;
            if (out->n > CS_TK_MAX) {
                out->n = 0;     /* never trust the segment's count */
            }
            return;
        }
    }
    /* A writer stuck in the middle: no keys rather than a hung handshake. */
    memset(out, 0, sizeof(*out));
}

const cs_tk_key_t *cs_tk_issuing(const cs_tk_table_t *t, apr_int64_t now)
{
    const cs_tk_key_t *best = NULL;
    apr_uint32_t i;

    for (i = 0; i < t->n && i < CS_TK_MAX; i++) {
        const cs_tk_key_t *k = &t->keys[i];

        if (k->issue_from <= now && now < k->issue_until
            && now < k->accept_until
            && (!best || k->issue_from > best->issue_from
                || (k->issue_from == best->issue_from
                    && memcmp(k->name, best->name, CS_TK_NAME_LEN) > 0))) {
            best = k;
        }
    }
    return best;
}

const cs_tk_key_t *cs_tk_find(const cs_tk_table_t *t,
                              const unsigned char *name, apr_int64_t now)
{
    apr_uint32_t i;

    for (i = 0; i < t->n && i < CS_TK_MAX; i++) {
        if (now < t->keys[i].accept_until
            && CRYPTO_memcmp(t->keys[i].name, name, CS_TK_NAME_LEN) == 0) {
            return &t->keys[i];
        }
    }
    return NULL;
}

static int tk_setup(const cs_tk_key_t *k, const unsigned char *iv,
                    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[2];

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(hctx, k->hmac, CS_TK_HMAC_LEN, params) != 1) {
        return 0;
    }
    return enc ? EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes,
                                    iv) == 1
               : EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes,
                                    iv) == 1;
}

int cs_tk_ticket_cb(const cs_tk_table_t *t, apr_int64_t now,
                    unsigned char *name, unsigned char *iv,
                    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    const cs_tk_key_t *k, *issuing = cs_tk_issuing(t, now);

    if (enc) {
        if (!issuing) {
            return 0;
        }
        if (RAND_bytes(iv, 16) != 1) {      /* AES-CBC's IV */
            return -1;
        }
        memcpy(name, issuing->name, CS_TK_NAME_LEN);
        return tk_setup(issuing, iv, ectx, hctx, 1) ? 1 : -1;
    }
    if (!(k = cs_tk_find(t, name, now))) {
        return 0;
    }
    if (!tk_setup(k, iv, ectx, hctx, 0)) {
        return -1;
    }
    return k == issuing ? 1 : 2;
}
