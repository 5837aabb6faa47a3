/*
 * fuzz_tkeys.c: libFuzzer harness for the pool's TLS session ticket keys
 * as a proxy receives them: CertService's answer to GET /v1/ticket-keys
 * (bytes from the network) parsed as the sync client parses it
 * (json_loadb, no flags) and opened by csy_tk_open
 * (mod_certsync/csy_tkeys.c) with the harness's wrapping key; then the
 * keys it returns go through the shared table and the ticket callback's
 * body (lib/cs_tkey.c) as a handshake uses them.
 *
 * Input: byte 0 chooses (bit 0) whether the proxy already holds keys (a
 * table with K0, under another secret, and K1, both at their usual
 * times) and (bits 1-2) the time now; the rest is the document.  A
 * "key_cms" that is exactly "@0" ... "@7" or "@A" ... "@P" is replaced
 * before the call by an envelope the harness made at start (a fuzzer
 * cannot make one: it would need an RSA-OAEP encryption to the wrapping
 * certificate):
 *
 *   @0 ... @3  the secret of K0 ... K3 (names N0 ... N3, fixed bytes),
 *              sealed to the wrapping certificate: valid;
 *   @4         the secret of N4 with all-zero HMAC and AES keys;
 *   @5         K0's secret sealed to another certificate (not a recipient);
 *   @6         K0's envelope with one byte of its ciphertext flipped;
 *   @7         79 bytes instead of 80;
 *   @A ... @P  K5 ... K20, valid (so that a list can fill the table:
 *              CS_TK_MAX keys).
 *
 * Invariants (abort otherwise):
 *   - APR_EINVAL exactly when the document is not an object with an
 *     array "keys", an integer "rotate" >= 1 and an integer "accept" >= 0;
 *     then no key, nothing counted bad, an error text;
 *   - otherwise: rotate and accept as published; at most CS_TK_MAX keys;
 *     an error text exactly when a key was counted bad;
 *   - the keys returned are exactly those an independent model of the
 *     documented rules expects (a valid name and schedule, still accepted
 *     now, a name not already taken, and either held already with the same
 *     times or sealed, to us, around its own name and 80 bytes), in order,
 *     and bad counts exactly the others that are still accepted or
 *     malformed;
 *   - every key's secret is the one sealed for its name (or the one held,
 *     when kept), never all zero, never another name's;
 *   - opening the same document again with the result held gives the
 *     same keys (the copy path), with no RSA operation needed;
 *   - in the table, the ticket callback encrypts exactly when a key
 *     issues now, with that key's name, and what it encrypts decrypts
 *     with the same key (the same plaintext, the same HMAC); a name not in
 *     the table is refused (0), never an error.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to
 * run the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_tkey.h"
#include "csy_tkeys.h"
#include "fuzz_pki.h"

#include "fuzz.h"

#define NKNOWN      21          /* K0 ... K20 */
#define NENV        24          /* @0 ... @7, @A ... @P */
#define ROTATE      100
#define ACCEPT      50
#define T0          APR_INT64_C(1000000)

static apr_pool_t *root;
static fuzz_pki_t pki;
static cs_tk_key_t known[NKNOWN];      /* K4 zero, the others valid */
static cs_tk_key_t held_k0;             /* K0's name, another secret */
static const char *env_b64[NENV];
static int env_key[NENV];               /* which known key, or -1 */
static EVP_MAC *hmac;

static const apr_int64_t nows[4] = {
    T0, T0 + 49, T0 + 50, T0 + 150
};

/* Fixed bytes, so every corpus input replays the same way. */
static void make_known(cs_tk_key_t *k, int i)
{
    int j;

    memset(k, 0, sizeof(*k));
    for (j = 0; j < CS_TK_NAME_LEN; j++) {
        k->name[j] = i < 5 ? (unsigned char)(0x10 * (i + 1) + j)
                           : (unsigned char)(j ? 0x60 + j : 0xc0 + i);
    }
    if (i != 4) {
        for (j = 0; j < CS_TK_HMAC_LEN; j++) {
            k->hmac[j] = (unsigned char)(0xa0 + i + j);
        }
        for (j = 0; j < CS_TK_AES_LEN; j++) {
            k->aes[j] = (unsigned char)(0x50 + i * 7 + j);
        }
    }
    /* K0 issued before T0, K1 issues at T0, K2 next, K3 after that... */
    cs_tk_window(k, T0 - ROTATE + i * ROTATE, ROTATE, ACCEPT);
}

static const char *seal_b64(const unsigned char *data, apr_size_t len,
                            const apr_array_header_t *to, int flip)
{
    unsigned char *der;
    apr_size_t der_len;
    const char *err;

    REQUIRE(cs_envelope_seal_data(&der, &der_len, root, data, len, to,
                                  &err) == APR_SUCCESS);
    if (flip) {
        der[der_len - 20] ^= 0x01;      /* in the GCM ciphertext */
    }
    return cs_base64_encode(root, der, der_len);
}

static void init(void)
{
    unsigned char secret[CS_TK_SECRET_LEN];
    apr_array_header_t *other;
    int i;

    if (root) {
        return;
    }
    apr_initialize();
    apr_pool_create(&root, NULL);
    fuzz_pki_load(&pki, root);
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    REQUIRE(hmac != NULL);
    for (i = 0; i < NKNOWN; i++) {
        make_known(&known[i], i);
    }
    held_k0 = known[0];
    memset(held_k0.hmac, 0x33, CS_TK_HMAC_LEN);
    memset(held_k0.aes, 0x44, CS_TK_AES_LEN);

    for (i = 0; i < 5; i++) {
        cs_tk_secret_pack(secret, &known[i]);
        env_b64[i] = seal_b64(secret, sizeof(secret), pki.wrap_certs, 0);
        env_key[i] = i;
    }
    other = apr_array_make(root, 1, sizeof(X509 *));
    APR_ARRAY_PUSH(other, X509 *) = pki.rleaf;
    cs_tk_secret_pack(secret, &known[0]);
    env_b64[5] = seal_b64(secret, sizeof(secret), other, 0);
    env_b64[6] = seal_b64(secret, sizeof(secret), pki.wrap_certs, 1);
    env_b64[7] = seal_b64(secret, sizeof(secret) - 1, pki.wrap_certs, 0);
    env_key[5] = env_key[6] = env_key[7] = -1;
    for (i = 5; i < NKNOWN; i++) {
        cs_tk_secret_pack(secret, &known[i]);
        env_b64[8 + i - 5] = seal_b64(secret, sizeof(secret),
                                      pki.wrap_certs, 0);
        env_key[8 + i - 5] = i;
    }
    OPENSSL_cleanse(secret, sizeof(secret));
}

static int zero(const unsigned char *b, size_t n)
{
    size_t i;
    unsigned char acc = 0;

    for (i = 0; i < n; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

static int known_index(const unsigned char *name)
{
    int i;

    for (i = 0; i < NKNOWN; i++) {
        if (memcmp(known[i].name, name, CS_TK_NAME_LEN) == 0) {
            return i;
        }
    }
    return -1;
}

static int get_time(apr_int64_t *out, json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }
    *out = (apr_int64_t)json_integer_value(v);
    return 1;
}

/* "@N" key_cms strings become the envelopes made at start; *refs[i] is
 * which envelope the i-th entry got (-1: none). */
static void substitute(json_t *doc, int *refs, size_t max)
{
    json_t *list = json_object_get(doc, "keys"), *e, *cms;
    const char *s;
    size_t i;

    for (i = 0; i < max; i++) {
        refs[i] = -1;
    }
    if (!json_is_array(list)) {
        return;
    }
    json_array_foreach(list, i, e) {
        cms = json_object_get(e, "key_cms");
        s = json_string_value(cms);
        if (i < max && s && s[0] == '@' && s[1] && s[2] == '\0'
            && json_string_length(cms) == 2
            && ((s[1] >= '0' && s[1] <= '7')
                || (s[1] >= 'A' && s[1] < 'A' + NENV - 8))) {
            refs[i] = s[1] <= '7' ? s[1] - '0' : 8 + s[1] - 'A';
            json_object_set_new(e, "key_cms", json_string(env_b64[refs[i]]));
        }
    }
}

/* The model: what csy_tk_open must return for doc, from the rules its
 * header documents (written apart from it). */
static void model(cs_tk_key_t *want, int *wn, int *wbad, json_t *doc,
                  const int *refs, size_t max, const cs_tk_table_t *prev,
                  apr_int64_t now)
{
    json_t *list = json_object_get(doc, "keys"), *e;
    const cs_tk_key_t *old;
    cs_tk_key_t k;
    size_t i;
    int j, dup, ki;

    *wn = *wbad = 0;
    json_array_foreach(list, i, e) {
        if (*wn >= CS_TK_MAX) {
            (*wbad)++;
            break;
        }
        memset(&k, 0, sizeof(k));
        if (cs_tk_name_parse(k.name, json_string_value(
                json_object_get(e, "name"))) != APR_SUCCESS
            || !get_time(&k.issue_from, e, "issue_from")
            || !get_time(&k.issue_until, e, "issue_until")
            || !get_time(&k.accept_until, e, "accept_until")
            || k.issue_until <= k.issue_from
            || k.accept_until < k.issue_until) {
            (*wbad)++;
            continue;
        }
        if (now >= k.accept_until) {
            continue;
        }
        for (j = dup = 0; j < *wn; j++) {
            dup |= memcmp(want[j].name, k.name, CS_TK_NAME_LEN) == 0;
        }
        if (dup) {
            (*wbad)++;
            continue;
        }
        old = prev ? cs_tk_find(prev, k.name, now) : NULL;
        if (old && old->issue_from == k.issue_from
            && old->issue_until == k.issue_until
            && old->accept_until == k.accept_until) {
            want[(*wn)++] = *old;
            continue;
        }
        ki = i < max && refs[i] >= 0 ? env_key[refs[i]] : -1;
        if (ki < 0 || memcmp(known[ki].name, k.name, CS_TK_NAME_LEN) != 0
            || zero(known[ki].hmac, CS_TK_HMAC_LEN)
            || zero(known[ki].aes, CS_TK_AES_LEN)) {
            (*wbad)++;
            continue;
        }
        memcpy(k.hmac, known[ki].hmac, CS_TK_HMAC_LEN);
        memcpy(k.aes, known[ki].aes, CS_TK_AES_LEN);
        want[(*wn)++] = k;
    }
}

static int same_key(const cs_tk_key_t *a, const cs_tk_key_t *b)
{
    return memcmp(a->name, b->name, CS_TK_NAME_LEN) == 0
           && memcmp(a->hmac, b->hmac, CS_TK_HMAC_LEN) == 0
           && memcmp(a->aes, b->aes, CS_TK_AES_LEN) == 0
           && a->issue_from == b->issue_from
           && a->issue_until == b->issue_until
           && a->accept_until == b->accept_until;
}

/* One ticket through the callback: encrypted with the issuing key,
 * decrypted by name; what a handshake does. */
static void ticket_roundtrip(const cs_tk_table_t *t, apr_int64_t now)
{
    static const unsigned char plain[32] = "a session, serialised, 32 bytes";
    unsigned char name[CS_TK_NAME_LEN], iv[16], ct[64], pt[64];
    unsigned char mac1[32], mac2[32];
    const cs_tk_key_t *issuing = cs_tk_issuing(t, now);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_MAC_CTX *h = EVP_MAC_CTX_new(hmac);
    size_t m1 = 0, m2 = 0;
    int rc, n, ctlen, ptlen;

    REQUIRE(c != NULL && h != NULL);
    memset(name, 0xee, sizeof(name));
    rc = cs_tk_ticket_cb(t, now, name, iv, c, h, 1);
    if (!issuing) {
        REQUIRE(rc == 0);
    }
    else {
        REQUIRE(rc == 1);
        REQUIRE(memcmp(name, issuing->name, CS_TK_NAME_LEN) == 0);
        REQUIRE(!zero(issuing->aes, CS_TK_AES_LEN));
        REQUIRE(EVP_EncryptUpdate(c, ct, &n, plain, sizeof(plain)) == 1);
        ctlen = n;
        REQUIRE(EVP_EncryptFinal_ex(c, ct + ctlen, &n) == 1);
        ctlen += n;
        REQUIRE(EVP_MAC_update(h, ct, (size_t)ctlen) == 1);
        REQUIRE(EVP_MAC_final(h, mac1, &m1, sizeof(mac1)) == 1);
        EVP_CIPHER_CTX_reset(c);
        EVP_MAC_CTX_free(h);
        h = EVP_MAC_CTX_new(hmac);
        REQUIRE(h != NULL);
        /* The issuing key decrypts its own ticket: 1 (no renewal). */
        REQUIRE(cs_tk_ticket_cb(t, now, name, iv, c, h, 0) == 1);
        REQUIRE(EVP_MAC_update(h, ct, (size_t)ctlen) == 1);
        REQUIRE(EVP_MAC_final(h, mac2, &m2, sizeof(mac2)) == 1);
        REQUIRE(m1 == m2 && memcmp(mac1, mac2, m1) == 0);
        REQUIRE(EVP_DecryptUpdate(c, pt, &n, ct, ctlen) == 1);
        ptlen = n;
        REQUIRE(EVP_DecryptFinal_ex(c, pt + ptlen, &n) == 1);
        ptlen += n;
        REQUIRE(ptlen == (int)sizeof(plain)
                && memcmp(pt, plain, sizeof(plain)) == 0);
    }
    /* A name no key has: refused, a full handshake. */
    memset(name, 0xee, sizeof(name));
    if (!cs_tk_find(t, name, now)) {
        EVP_CIPHER_CTX_reset(c);
        REQUIRE(cs_tk_ticket_cb(t, now, name, iv, c, h, 0) == 0);
    }
    EVP_MAC_CTX_free(h);
    EVP_CIPHER_CTX_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_tk_key_t keys[CS_TK_MAX], want[CS_TK_MAX], again[CS_TK_MAX];
    cs_tk_table_t prev, table, snap;
    apr_int64_t now, rotate = -7, accept = -7, r2, a2, dr, da;
    const char *err = (const char *)1, *err2;
    json_t *doc, *list;
    int refs[64], n = -1, bad = -1, wn, wbad, n2, bad2, i, ki, valid;
    apr_status_t rv;
    apr_pool_t *p;

    if (size < 1) {
        return 0;
    }
    init();
    now = nows[(data[0] >> 1) & 3];
    cs_tk_table_init(&prev);
    if (data[0] & 1) {
        cs_tk_key_t held[2];

        held[0] = held_k0;
        held[1] = known[1];
        cs_tk_table_put(&prev, held, 2, ROTATE, ACCEPT, T0);
    }
    doc = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!doc) {
        return 0;
    }
    substitute(doc, refs, 64);
    apr_pool_create(&p, root);

    list = json_object_get(doc, "keys");
    valid = json_is_object(doc) && json_is_array(list)
            && get_time(&dr, doc, "rotate") && dr >= 1
            && get_time(&da, doc, "accept");
    memset(keys, 0x5a, sizeof(keys));
    rv = csy_tk_open(keys, &n, &bad, &rotate, &accept, doc,
                     (data[0] & 1) ? &prev : NULL, pki.wrap_certs,
                     pki.wrap_keys, now, p, &err);
    if (!valid) {
        REQUIRE(rv == APR_EINVAL);
        REQUIRE(err != NULL && err != (const char *)1 && n == 0
                && bad == 0);
        goto done;
    }
    REQUIRE(rv == APR_SUCCESS);
    REQUIRE(rotate == dr && accept == da);
    REQUIRE(n >= 0 && n <= CS_TK_MAX && bad >= 0);
    REQUIRE((bad > 0) == (err != NULL));
    REQUIRE((size_t)(n + bad) <= json_array_size(list));

    model(want, &wn, &wbad, doc, refs, 64, (data[0] & 1) ? &prev : NULL,
          now);
    REQUIRE(n == wn);
    REQUIRE(bad == wbad);
    for (i = 0; i < n; i++) {
        const cs_tk_key_t *k = &keys[i];

        REQUIRE(same_key(k, &want[i]));
        REQUIRE(k->issue_from >= 0 && k->issue_until > k->issue_from
                && k->accept_until >= k->issue_until
                && now < k->accept_until);
        REQUIRE(!zero(k->hmac, CS_TK_HMAC_LEN)
                && !zero(k->aes, CS_TK_AES_LEN));
        /* Only the harness can seal: a secret is a known one, or the
         * one the proxy held for that name. */
        ki = known_index(k->name);
        REQUIRE(ki >= 0 && ki != 4);
        REQUIRE((memcmp(k->hmac, known[ki].hmac, CS_TK_HMAC_LEN) == 0
                 && memcmp(k->aes, known[ki].aes, CS_TK_AES_LEN) == 0)
                || ((data[0] & 1) && ki == 0
                    && memcmp(k->hmac, held_k0.hmac, CS_TK_HMAC_LEN) == 0
                    && memcmp(k->aes, held_k0.aes, CS_TK_AES_LEN) == 0));
    }

    /* Again, holding the result: the same keys, none opened again.  The
     * same set, not always in the same order, nor with the same count of
     * bad entries: a held key is taken from the first entry of its name
     * and times, even one whose key_cms does not open, and the entries
     * after the table is full are not looked at (the table has no order:
     * cs_tk_issuing and cs_tk_find do not depend on it). */
    cs_tk_table_init(&table);
    cs_tk_table_put(&table, keys, n, rotate, accept, now);
    cs_tk_table_get(&snap, &table);
    REQUIRE(snap.n == (apr_uint32_t)n);
    rv = csy_tk_open(again, &n2, &bad2, &r2, &a2, doc, &snap, NULL, NULL,
                     now, p, &err2);
    REQUIRE(rv == APR_SUCCESS && n2 == n && r2 == rotate && a2 == accept);
    for (i = 0; i < n; i++) {
        int j, found = 0;

        for (j = 0; j < n && !found; j++) {
            found = same_key(&again[i], &keys[j]);
        }
        REQUIRE(found);
    }
    ticket_roundtrip(&snap, now);
    ticket_roundtrip(&snap, now + ROTATE);

done:
    OPENSSL_cleanse(keys, sizeof(keys));
    json_decref(doc);
    apr_pool_destroy(p);
    ERR_clear_error();
    return 0;
}
