/*
 * cs_jws.c: JWS signing for ACME (see cs_jws.h).
 *
 * ES256 signatures are the raw 64-byte R || S that JWS wants (RFC 7518
 * 3.4), not OpenSSL's DER; JWK members are emitted in lexicographic
 * order so that the same object serves as the RFC 7638 thumbprint input.
 * The External Account Binding's HMAC is OpenSSL's (EVP_Q_mac).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "cs_jws.h"

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const char *cs_b64url_encode(apr_pool_t *p, const unsigned char *d,
                             apr_size_t len)
{
    char *out = apr_palloc(p, (len + 2) / 3 * 4 + 1), *o = out;
    apr_size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        *o++ = b64url[d[i] >> 2];
        *o++ = b64url[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
        *o++ = b64url[((d[i + 1] & 15) << 2) | (d[i + 2] >> 6)];
        *o++ = b64url[d[i + 2] & 63];
    }
    if (len - i == 1) {
        *o++ = b64url[d[i] >> 2];
        *o++ = b64url[(d[i] & 3) << 4];
    }
    else if (len - i == 2) {
        *o++ = b64url[d[i] >> 2];
        *o++ = b64url[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
        *o++ = b64url[(d[i + 1] & 15) << 2];
    }
    *o = '\0';
    return out;
}

apr_status_t cs_b64url_decode(unsigned char **data, apr_size_t *len,
                              apr_pool_t *p, const char *text)
{
    apr_size_t n = strlen(text), i, o = 0;
    unsigned int acc = 0, bits = 0;
    unsigned char *out;
    const char *c;

    while (n > 0 && text[n - 1] == '=') {
        n--;
    }
    out = apr_palloc(p, n * 3 / 4 + 1);
    for (i = 0; i < n; i++) {
        if (!text[i] || !(c = strchr(b64url, text[i]))) {
            return APR_EINVAL;
        }
        acc = (acc << 6) | (unsigned int)(c - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* A lone trailing character carries no whole byte. */
    if (bits >= 6) {
        return APR_EINVAL;
    }
    out[o] = '\0';
    *data = out;
    *len = o;
    return APR_SUCCESS;
}

const char *cs_jws_alg(EVP_PKEY *key)
{
    char group[32];
    size_t glen = 0;

    if (!key) {
        return NULL;
    }
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        return EVP_PKEY_get_bits(key) >= 2048 ? "RS256" : NULL;
    }
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC
        && EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
                                          group, sizeof(group), &glen)
        && strcmp(group, "prime256v1") == 0) {
        return "ES256";
    }
    return NULL;
}

/* A BIGNUM parameter of key, big-endian, left-padded to pad bytes (0: its
 * own length), base64url. */
static const char *bn_param(apr_pool_t *p, EVP_PKEY *key, const char *name,
                            int pad)
{
    BIGNUM *bn = NULL;
    unsigned char *buf;
    const char *s = NULL;
    int len;

    if (!EVP_PKEY_get_bn_param(key, name, &bn)) {
        return NULL;
    }
    len = pad ? pad : BN_num_bytes(bn);
    buf = apr_palloc(p, len ? len : 1);
    if (BN_bn2binpad(bn, buf, len) == len) {
        s = cs_b64url_encode(p, buf, (apr_size_t)len);
    }
    BN_free(bn);
    return s;
}

json_t *cs_jwk_public(EVP_PKEY *key)
{
    const char *alg = cs_jws_alg(key), *a, *b;
    apr_pool_t *p;
    json_t *jwk = NULL;

    if (!alg || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return NULL;
    }
    if (alg[0] == 'E') {
        a = bn_param(p, key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = bn_param(p, key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        if (a && b) {
            jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256",
                            "kty", "EC", "x", a, "y", b);
        }
    }
    else {
        a = bn_param(p, key, OSSL_PKEY_PARAM_RSA_E, 0);
        b = bn_param(p, key, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a && b) {
            jwk = json_pack("{s:s, s:s, s:s}", "e", a, "kty", "RSA",
                            "n", b);
        }
    }
    apr_pool_destroy(p);
    ERR_clear_error();
    return jwk;
}

apr_status_t cs_jwk_thumbprint(const char **thumb, apr_pool_t *p,
                               EVP_PKEY *key)
{
    json_t *jwk = cs_jwk_public(key);
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *text;

    if (!jwk) {
        return APR_EINVAL;
    }
    /* Compact, keys sorted: exactly RFC 7638's required members. */
    text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(jwk);
    if (!text) {
        return APR_ENOMEM;
    }
    SHA256((const unsigned char *)text, strlen(text), md);
    free(text);
    *thumb = cs_b64url_encode(p, md, sizeof(md));
    return APR_SUCCESS;
}

/* DER ECDSA signature -> R || S, 32 bytes each. */
static int ecdsa_der_to_raw(unsigned char *raw, const unsigned char *der,
                            size_t der_len)
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)der_len);
    const BIGNUM *r, *s;
    int ok;

    if (!sig) {
        return 0;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok;
}

static unsigned char *ecdsa_raw_to_der(apr_pool_t *p, size_t *der_len,
                                       const unsigned char *raw)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    unsigned char *der = NULL, *out = NULL, *q;
    int len;

    if (sig && r && s && ECDSA_SIG_set0(sig, r, s)) {
        r = s = NULL;
        if ((len = i2d_ECDSA_SIG(sig, NULL)) > 0) {
            der = apr_palloc(p, (apr_size_t)len);
            q = der;
            if (i2d_ECDSA_SIG(sig, &q) == len) {
                out = der;
                *der_len = (size_t)len;
            }
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return out;
}

apr_status_t cs_jws_sign(const char **jws, apr_pool_t *p, EVP_PKEY *key,
                         const char *kid, const char *nonce, const char *url,
                         const char *payload, const char **err)
{
    const char *alg = cs_jws_alg(key), *prot64, *pay64, *input;
    json_t *hdr, *out;
    EVP_MD_CTX *md = NULL;
    unsigned char *sig = NULL, raw[64];
    size_t siglen = 0;
    char *text;
    apr_status_t rv = APR_EGENERAL;

    if (!alg) {
        *err = "the key is neither ECDSA P-256 nor RSA of 2048 bits or more";
        return APR_EINVAL;
    }
    hdr = json_pack("{s:s, s:s}", "alg", alg, "url", url);
    if (kid) {
        json_object_set_new(hdr, "kid", json_string(kid));
    }
    else {
        json_object_set_new(hdr, "jwk", cs_jwk_public(key));
    }
    if (nonce) {
        json_object_set_new(hdr, "nonce", json_string(nonce));
    }
    text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!text) {
        *err = "cannot serialise the JWS header";
        return APR_ENOMEM;
    }
    prot64 = cs_b64url_encode(p, (const unsigned char *)text, strlen(text));
    free(text);
    pay64 = cs_b64url_encode(p, (const unsigned char *)payload,
                             strlen(payload));
    input = apr_pstrcat(p, prot64, ".", pay64, NULL);

    if (!(md = EVP_MD_CTX_new())
        || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1
        || EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input,
                          strlen(input)) != 1) {
        *err = "signing failed";
        goto done;
    }
    sig = apr_palloc(p, siglen);
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input,
                       strlen(input)) != 1) {
        *err = "signing failed";
        goto done;
    }
    if (alg[0] == 'E') {
        if (!ecdsa_der_to_raw(raw, sig, siglen)) {
            *err = "malformed ECDSA signature";
            goto done;
        }
        sig = raw;
        siglen = sizeof(raw);
    }
    out = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
                    "signature", cs_b64url_encode(p, sig, siglen));
    text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    if (!text) {
        *err = "cannot serialise the JWS";
        rv = APR_ENOMEM;
        goto done;
    }
    *jws = apr_pstrdup(p, text);
    free(text);
    rv = APR_SUCCESS;
done:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rv;
}

apr_status_t cs_jws_verify(const char **protected_hdr, const char **payload,
                           apr_pool_t *p, EVP_PKEY *key, const char *jws,
                           const char **err)
{
    json_t *j = json_loads(jws, 0, NULL), *hdr = NULL;
    const char *prot64, *pay64, *sig64, *alg = cs_jws_alg(key), *input;
    unsigned char *prot, *pay, *sig, *der;
    apr_size_t plen, ylen, slen;
    size_t dlen;
    EVP_MD_CTX *md = NULL;
    apr_status_t rv = APR_EINVAL;

    *err = "not a flattened JWS";
    if (!j || !alg
        || !(prot64 = json_string_value(json_object_get(j, "protected")))
        || !(pay64 = json_string_value(json_object_get(j, "payload")))
        || !(sig64 = json_string_value(json_object_get(j, "signature")))
        || cs_b64url_decode(&prot, &plen, p, prot64)
        || cs_b64url_decode(&pay, &ylen, p, pay64)
        || cs_b64url_decode(&sig, &slen, p, sig64)
        || !(hdr = json_loadb((const char *)prot, plen, 0, NULL))) {
        goto done;
    }
    if (!json_is_string(json_object_get(hdr, "alg"))
        || strcmp(json_string_value(json_object_get(hdr, "alg")), alg)) {
        *err = "alg does not match the key";
        goto done;
    }
    if (alg[0] == 'E') {
        if (slen != 64 || !(der = ecdsa_raw_to_der(p, &dlen, sig))) {
            *err = "an ES256 signature is 64 bytes";
            goto done;
        }
        sig = der;
        slen = dlen;
    }
    input = apr_pstrcat(p, prot64, ".", pay64, NULL);
    if (!(md = EVP_MD_CTX_new())
        || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1
        || EVP_DigestVerify(md, sig, slen, (const unsigned char *)input,
                            strlen(input)) != 1) {
        *err = "bad signature";
        rv = APR_EGENERAL;
        goto done;
    }
    *protected_hdr = (const char *)prot;
    *payload = (const char *)pay;
    *err = NULL;
    rv = APR_SUCCESS;
done:
    EVP_MD_CTX_free(md);
    json_decref(hdr);
    json_decref(j);
    ERR_clear_error();
    return rv;
}

/* ------------------------------------------------------------------ */
/* External Account Binding (RFC 8555 7.3.4)                           */
/* ------------------------------------------------------------------ */

const char *cs_eab_digest(const char *alg)
{
    if (!alg || strcmp(alg, "HS256") == 0) {
        return "SHA256";
    }
    if (strcmp(alg, "HS384") == 0) {
        return "SHA384";
    }
    if (strcmp(alg, "HS512") == 0) {
        return "SHA512";
    }
    return NULL;
}

apr_status_t cs_eab_key_decode(unsigned char **key, apr_size_t *key_len,
                               apr_pool_t *p, const char *text,
                               const char **err)
{
    static const char ws[] = " \t\r\n";
    apr_size_t n;
    unsigned char *out = NULL;
    char *copy;
    apr_status_t rv;

    text += strspn(text, ws);
    for (n = strlen(text); n > 0 && strchr(ws, text[n - 1]); n--) {
    }
    if (n == 0) {
        *err = "the MAC key is empty";
        return APR_EINVAL;
    }
    copy = apr_pstrmemdup(p, text, n);
    rv = cs_b64url_decode(&out, key_len, p, copy);
    OPENSSL_cleanse(copy, n);
    if (rv != APR_SUCCESS) {
        *err = "the MAC key is not base64url (A-Z a-z 0-9 - _, as the CA "
               "hands it out)";
        return APR_EINVAL;
    }
    if (*key_len == 0) {
        *err = "the MAC key is empty";
        return APR_EINVAL;
    }
    *key = out;
    return APR_SUCCESS;
}

apr_status_t cs_jws_eab(const char **jws, apr_pool_t *p,
                        const cs_eab_t *eab, EVP_PKEY *account_key,
                        const char *url, const char **err)
{
    const char *digest = cs_eab_digest(eab->alg), *prot64, *pay64, *input;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    json_t *hdr, *jwk, *out;
    char *text;

    if (!digest) {
        *err = "the EAB MAC algorithm is not HS256, HS384 or HS512";
        return APR_EINVAL;
    }
    if (!eab->kid || !*eab->kid || !eab->key || !eab->key_len) {
        *err = "the EAB has no key id or no MAC key";
        return APR_EINVAL;
    }
    if (!(jwk = cs_jwk_public(account_key))) {
        *err = "the account key is neither ECDSA P-256 nor RSA of 2048 "
               "bits or more";
        return APR_EINVAL;
    }
    text = json_dumps(jwk, JSON_COMPACT);
    json_decref(jwk);
    if (!text) {
        *err = "cannot serialise the account's JWK";
        return APR_ENOMEM;
    }
    pay64 = cs_b64url_encode(p, (const unsigned char *)text, strlen(text));
    free(text);
    hdr = json_pack("{s:s, s:s, s:s}", "alg", eab->alg ? eab->alg : "HS256",
                    "kid", eab->kid, "url", url);
    text = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    json_decref(hdr);
    if (!text) {
        *err = "cannot serialise the EAB header";
        return APR_ENOMEM;
    }
    prot64 = cs_b64url_encode(p, (const unsigned char *)text, strlen(text));
    free(text);
    input = apr_pstrcat(p, prot64, ".", pay64, NULL);
    if (!EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, eab->key, eab->key_len,
                   (const unsigned char *)input, strlen(input), mac,
                   sizeof(mac), &mac_len)) {
        ERR_clear_error();
        *err = "the EAB HMAC failed";
        return APR_EGENERAL;
    }
    out = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
                    "signature", cs_b64url_encode(p, mac, mac_len));
    text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text) {
        *err = "cannot serialise the EAB JWS";
        return APR_ENOMEM;
    }
    *jws = apr_pstrdup(p, text);
    free(text);
    return APR_SUCCESS;
}
