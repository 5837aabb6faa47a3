/*
 * cs_seal.c: key.seal, a private key sealed for one proxy's own processes.
 * See cs_seal.h for why it exists and what it protects.
 *
 * Layout:
 *     "CSK1" | nonce (12) | AES-256-GCM ciphertext | tag (16)
 * associated data:
 *     "mod_certsync key.seal v1" NUL name NUL serial
 * plaintext, one of:
 *     1 | group length (1) | group name | point length (2, big-endian) |
 *       point | scalar length (2) | scalar (big-endian)          EC keys
 *     2 | PKCS#8 PrivateKeyInfo DER                              other keys
 *
 * The point is the certificate's own, copied from its SubjectPublicKeyInfo
 * when sealing and compared with it when opening: an EC key is then built
 * from data (EVP_PKEY_fromdata, ~30 us) without a decoder and without
 * recomputing the point, and still matches its certificate.
 */
#include <limits.h>
#include <string.h>

#include <apr_strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_seal.h"

#define MAGIC           "CSK1"
#define MAGIC_LEN       4
#define NONCE_LEN       12
#define TAG_LEN         16
#define AAD_LABEL       "mod_certsync key.seal v1"
#define KIND_EC         1
#define KIND_PKCS8      2
#define MAX_GROUP       32
#define MAX_PLAIN       16384       /* an RSA-8192 PKCS#8 fits */

/* The wrapping key's private number (RSA d, or an EC scalar) as a
 * big-endian byte string: the same however the key file is encoded. */
static unsigned char *private_number(int *len, EVP_PKEY *key)
{
    BIGNUM *bn = NULL;
    unsigned char *buf = NULL;

    if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_D, &bn)
        && !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &bn)) {
        return NULL;
    }
    *len = BN_num_bytes(bn);
    if (*len > 0 && (buf = OPENSSL_secure_malloc((size_t)*len)) != NULL) {
        BN_bn2bin(bn, buf);
    }
    BN_clear_free(bn);
    return buf;
}

apr_status_t cs_seal_key_derive(cs_seal_key_t *out, EVP_PKEY *wrap_key)
{
    static const char salt[] = "mod_certsync key.seal";
    static const char info[] = "v1";
    unsigned char *ikm = NULL;
    int ikm_len = 0;
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[5];
    apr_status_t rv = APR_EGENERAL;

    out->ok = 0;
    if (wrap_key == NULL
        || (ikm = private_number(&ikm_len, wrap_key)) == NULL) {
        ERR_clear_error();
        return APR_EINVAL;
    }
    if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) != NULL
        && (kctx = EVP_KDF_CTX_new(kdf)) != NULL) {
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                     "SHA256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                      ikm, (size_t)ikm_len);
        params[2] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_SALT, (void *)salt, sizeof(salt) - 1);
        params[3] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_INFO, (void *)info, sizeof(info) - 1);
        params[4] = OSSL_PARAM_construct_end();
        if (EVP_KDF_derive(kctx, out->k, sizeof(out->k), params) == 1) {
            out->ok = 1;
            rv = APR_SUCCESS;
        }
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    OPENSSL_secure_clear_free(ikm, (size_t)ikm_len);
    ERR_clear_error();
    return rv;
}

static apr_status_t keys_cleanse(void *data)
{
    apr_array_header_t *a = data;

    OPENSSL_cleanse(a->elts, (size_t)a->nalloc * (size_t)a->elt_size);
    return APR_SUCCESS;
}

apr_array_header_t *cs_seal_keys_derive(apr_pool_t *p,
                                        const apr_array_header_t *wrap_keys)
{
    apr_array_header_t *a;
    int i, any = 0;

    if (!wrap_keys || wrap_keys->nelts == 0) {
        return NULL;
    }
    a = apr_array_make(p, wrap_keys->nelts, sizeof(cs_seal_key_t));
    apr_pool_cleanup_register(p, a, keys_cleanse, apr_pool_cleanup_null);
    for (i = 0; i < wrap_keys->nelts; i++) {
        /* A key whose private number cannot be read (an HSM's) has no
         * sealing key (ok = 0); the others still do. */
        any |= cs_seal_key_derive(apr_array_push(a),
                                  APR_ARRAY_IDX(wrap_keys, i, EVP_PKEY *))
               == APR_SUCCESS;
    }
    return any ? a : NULL;
}

/* The associated data: its length, and written into a (of that length). */
static apr_size_t aad_len(const char *name, const char *serial)
{
    return sizeof(AAD_LABEL) + strlen(name) + 1 + strlen(serial);
}

static void aad_fill(char *a, const char *name, const char *serial)
{
    apr_size_t nl = strlen(name) + 1;

    memcpy(a, AAD_LABEL, sizeof(AAD_LABEL));
    memcpy(a + sizeof(AAD_LABEL), name, nl);
    memcpy(a + sizeof(AAD_LABEL) + nl, serial, strlen(serial));
}

/* One AES-256-GCM pass.  Encrypting, tag is written; decrypting, it is
 * checked.  Returns 1 on success. */
static int gcm(int enc, unsigned char *out, const unsigned char *in,
               apr_size_t len, const cs_seal_key_t *sk,
               const unsigned char *nonce, const char *ad,
               apr_size_t ad_len, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n, ok;

    ok = c != NULL && len <= INT_MAX && ad_len <= INT_MAX
         && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, sk->k, nonce,
                              enc) == 1
         && EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)ad,
                             (int)ad_len) == 1
         && EVP_CipherUpdate(c, out, &n, in, (int)len) == 1
         && (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                        tag) == 1)
         && EVP_CipherFinal_ex(c, out + n, &n) == 1
         && (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                         tag) == 1);
    EVP_CIPHER_CTX_free(c);
    ERR_clear_error();
    return ok;
}

/* The certificate's encoded public point (or key), as in its SPKI. */
static const ASN1_BIT_STRING *cert_point(X509 *leaf)
{
    return leaf ? X509_get0_pubkey_bitstr(leaf) : NULL;
}

/* The plaintext of an EC key, from p; NULL if key is not one we can
 * write this way (the caller then uses PKCS#8). */
static unsigned char *plain_ec(apr_size_t *len, apr_pool_t *p,
                               EVP_PKEY *key, X509 *leaf)
{
    char group[MAX_GROUP + 1];
    size_t glen = 0;
    BIGNUM *priv = NULL;
    const ASN1_BIT_STRING *pt = cert_point(leaf);
    unsigned char *buf = NULL, *q;
    int plen, slen;

    if (!EVP_PKEY_is_a(key, "EC") || pt == NULL || pt->length <= 0
        || pt->length > 255
        || !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), &glen)
        || glen == 0 || glen > MAX_GROUP
        || !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &priv)) {
        ERR_clear_error();
        return NULL;
    }
    plen = pt->length;
    /* Padded to the key's size: the length says nothing about the key. */
    slen = (EVP_PKEY_get_bits(key) + 7) / 8;
    if (slen > 0 && slen <= 255 && BN_num_bytes(priv) <= slen) {
        *len = 1 + 1 + glen + 2 + (apr_size_t)plen + 2 + (apr_size_t)slen;
        buf = q = apr_palloc(p, *len);
        *q++ = KIND_EC;
        *q++ = (unsigned char)glen;
        memcpy(q, group, glen);
        q += glen;
        *q++ = (unsigned char)(plen >> 8);
        *q++ = (unsigned char)plen;
        memcpy(q, pt->data, (size_t)plen);
        q += plen;
        *q++ = (unsigned char)(slen >> 8);
        *q++ = (unsigned char)slen;
        if (BN_bn2binpad(priv, q, slen) != slen) {
            buf = NULL;
        }
    }
    BN_clear_free(priv);
    return buf;
}

static unsigned char *plain_pkcs8(apr_size_t *len, apr_pool_t *p,
                                  EVP_PKEY *key)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    unsigned char *der = NULL, *buf = NULL;
    int n;

    if (p8 != NULL && (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) > 0
        && n < MAX_PLAIN) {
        *len = 1 + (apr_size_t)n;
        buf = apr_palloc(p, *len);
        buf[0] = KIND_PKCS8;
        memcpy(buf + 1, der, (size_t)n);
        OPENSSL_cleanse(der, (size_t)n);
    }
    OPENSSL_free(der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    ERR_clear_error();
    return buf;
}

/* cs_seal once key and leaf are known to be a pair. */
static apr_status_t seal_pair(unsigned char **out, apr_size_t *out_len,
                              apr_pool_t *p, EVP_PKEY *key, X509 *leaf,
                              const cs_seal_key_t *sk, const char *name,
                              const char *serial, const char **err)
{
    unsigned char *plain, *buf;
    apr_size_t plain_len = 0, ad_len;
    char *ad;

    if (sk == NULL || !sk->ok) {
        *err = "key.seal: no sealing key";
        return APR_EINVAL;
    }
    plain = plain_ec(&plain_len, p, key, leaf);
    if (plain == NULL && (plain = plain_pkcs8(&plain_len, p, key)) == NULL) {
        *err = "key.seal: cannot encode the private key";
        return APR_EINVAL;
    }
    ad_len = aad_len(name, serial);
    ad = apr_palloc(p, ad_len);
    aad_fill(ad, name, serial);
    buf = apr_palloc(p, MAGIC_LEN + NONCE_LEN + plain_len + TAG_LEN);
    memcpy(buf, MAGIC, MAGIC_LEN);
    if (RAND_bytes(buf + MAGIC_LEN, NONCE_LEN) != 1
        || !gcm(1, buf + MAGIC_LEN + NONCE_LEN, plain, plain_len, sk,
                buf + MAGIC_LEN, ad, ad_len,
                buf + MAGIC_LEN + NONCE_LEN + plain_len)) {
        OPENSSL_cleanse(plain, plain_len);
        ERR_clear_error();
        *err = "key.seal: encryption failed";
        return APR_EGENERAL;
    }
    OPENSSL_cleanse(plain, plain_len);
    *out = buf;
    *out_len = MAGIC_LEN + NONCE_LEN + plain_len + TAG_LEN;
    return APR_SUCCESS;
}

apr_status_t cs_seal(unsigned char **out, apr_size_t *out_len,
                     apr_pool_t *p, EVP_PKEY *key, X509 *leaf,
                     const cs_seal_key_t *sk, const char *name,
                     const char *serial, const char **err)
{
    *out = NULL;
    *err = NULL;
    if (key == NULL || leaf == NULL || X509_check_private_key(leaf, key)
                                       != 1) {
        ERR_clear_error();
        *err = "key.seal: the key does not match the certificate";
        return APR_EINVAL;
    }
    /* The opener rebuilds the key from its scalar and the certificate's
     * point without checking they belong together: check here, once
     * (cs_key_belongs, not EVP_PKEY_pairwise_check, which spends about
     * 100 ms testing the primes of an RSA key). */
    if (sk != NULL && sk->ok
        && !cs_key_belongs(key, X509_get0_pubkey(leaf))) {
        *err = "key.seal: the private key fails its pairwise check";
        return APR_EINVAL;
    }
    return seal_pair(out, out_len, p, key, leaf, sk, name, serial, err);
}

apr_status_t cs_seal_verified(unsigned char **out, apr_size_t *out_len,
                              apr_pool_t *p, EVP_PKEY *key, X509 *leaf,
                              const cs_seal_key_t *sk, const char *name,
                              const char *serial, const char **err)
{
    *out = NULL;
    *err = NULL;
    if (key == NULL || leaf == NULL) {
        *err = "key.seal: no key or no certificate";
        return APR_EINVAL;
    }
    return seal_pair(out, out_len, p, key, leaf, sk, name, serial, err);
}

/* An EC key from its plaintext; NULL if malformed or not leaf's. */
static EVP_PKEY *open_ec(const unsigned char *q, apr_size_t len, X509 *leaf,
                         const char **err)
{
    const ASN1_BIT_STRING *pt = cert_point(leaf);
    char group[MAX_GROUP + 1];
    const unsigned char *point, *scalar;
    apr_size_t glen, plen, slen, i;
    static const int one = 1;
    const int little = *(const char *)&one;
    unsigned char native[128];          /* up to a 1024-bit scalar */
    OSSL_PARAM params[4];
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;

    *err = "key.seal: malformed EC key";
    if (len < 1 || (glen = q[0]) == 0 || glen > MAX_GROUP
        || len < 1 + glen + 2) {
        return NULL;
    }
    memcpy(group, q + 1, glen);
    group[glen] = '\0';
    q += 1 + glen;
    len -= 1 + glen;
    plen = ((apr_size_t)q[0] << 8) | q[1];
    point = q + 2;
    if (len < 2 + plen + 2) {
        return NULL;
    }
    q += 2 + plen;
    len -= 2 + plen;
    slen = ((apr_size_t)q[0] << 8) | q[1];
    scalar = q + 2;
    if (len != 2 + slen || slen == 0 || strlen(group) != glen) {
        return NULL;
    }
    if (pt == NULL || (apr_size_t)pt->length != plen
        || memcmp(pt->data, point, plen) != 0) {
        *err = "key.seal: the key does not match the certificate";
        return NULL;
    }
    *err = "key.seal: cannot build the EC key";
    if (slen > sizeof(native)) {
        return NULL;
    }
    /* OSSL_PARAM integers are unsigned in the host's byte order. */
    for (i = 0; i < slen; i++) {
        native[i] = little ? scalar[slen - 1 - i] : scalar[i];
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 group, glen);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *)point, plen);
    params[2] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, native,
                                        slen);
    params[3] = OSSL_PARAM_construct_end();
    if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) != NULL
        && EVP_PKEY_fromdata_init(ctx) == 1
        && EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) == 1) {
        *err = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_cleanse(native, sizeof(native));
    /* The point's bytes are the certificate's; its key must be too (the
     * same curve): fullchain.pem is not covered by the seal, and a
     * damaged algorithm there leaves the bytes of the point intact. */
    if (key != NULL && EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
        *err = "key.seal: the key does not match the certificate";
    }
    return key;
}

static EVP_PKEY *open_pkcs8(const unsigned char *q, apr_size_t len,
                            X509 *leaf, const char **err)
{
    const unsigned char *r = q;
    PKCS8_PRIV_KEY_INFO *p8;
    EVP_PKEY *key = NULL;

    *err = "key.seal: malformed PKCS#8 key";
    if (len == 0 || len > MAX_PLAIN) {
        return NULL;
    }
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &r, (long)len);
    if (p8 != NULL && r == q + len && (key = EVP_PKCS82PKEY(p8)) != NULL) {
        *err = NULL;
        if (X509_check_private_key(leaf, key) != 1) {
            *err = "key.seal: the key does not match the certificate";
            EVP_PKEY_free(key);
            key = NULL;
        }
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    return key;
}

apr_status_t cs_seal_open(EVP_PKEY **key, const unsigned char *in,
                          apr_size_t len, X509 *leaf,
                          const cs_seal_key_t *sk, const char *name,
                          const char *serial, const char **err)
{
    unsigned char stack[512], *plain = stack;
    char adbuf[600], *ad = adbuf;
    apr_size_t plain_len, ad_len = aad_len(name, serial);
    int authentic;

    if (key != NULL) {
        *key = NULL;
    }
    if (sk == NULL || !sk->ok) {
        *err = "key.seal: no sealing key";
        return APR_ENOENT;
    }
    if (in == NULL || len < MAGIC_LEN + NONCE_LEN + 2 + TAG_LEN
        || memcmp(in, MAGIC, MAGIC_LEN) != 0
        || len > MAGIC_LEN + NONCE_LEN + MAX_PLAIN + TAG_LEN) {
        *err = "key.seal: not a sealed key";
        return APR_EINVAL;
    }
    plain_len = len - MAGIC_LEN - NONCE_LEN - TAG_LEN;
    /* No pool on this path (a worker's handshake): the stack, or the
     * secure heap for a large (RSA) key. */
    if (ad_len > sizeof(adbuf) && (ad = OPENSSL_malloc(ad_len)) == NULL) {
        *err = "key.seal: out of memory";
        return APR_ENOMEM;
    }
    aad_fill(ad, name, serial);
    if (plain_len > sizeof(stack)
        && (plain = OPENSSL_secure_malloc(plain_len)) == NULL) {
        if (ad != adbuf) {
            OPENSSL_free(ad);
        }
        *err = "key.seal: out of memory";
        return APR_ENOMEM;
    }
    authentic = gcm(0, plain, in + MAGIC_LEN + NONCE_LEN, plain_len, sk,
                    in + MAGIC_LEN, ad, ad_len,
                    (unsigned char *)in + len - TAG_LEN);
    if (!authentic) {
        *err = "key.seal: not sealed with this key for this name and "
               "serial, or damaged";
    }
    else if (key == NULL) {
        *err = NULL;            /* only asked whether it opens */
    }
    else if (plain[0] == KIND_EC) {
        *key = open_ec(plain + 1, plain_len - 1, leaf, err);
    }
    else if (plain[0] == KIND_PKCS8) {
        *key = open_pkcs8(plain + 1, plain_len - 1, leaf, err);
    }
    else {
        *err = "key.seal: unknown key encoding";
    }
    OPENSSL_cleanse(plain, plain_len);
    if (plain != stack) {
        OPENSSL_secure_free(plain);
    }
    if (ad != adbuf) {
        OPENSSL_free(ad);
    }
    ERR_clear_error();
    if (key == NULL ? authentic : *key != NULL) {
        *err = NULL;
        return APR_SUCCESS;
    }
    return authentic ? APR_EINVAL : APR_ENOENT;
}
