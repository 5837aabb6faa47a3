/*
 * csy_tkeys.c: the pool's TLS session ticket keys, opened by the sync
 * daemon (csy_tkeys.h).
 */
#include <string.h>

#include <apr_strings.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "csy_tkeys.h"

static int get_time(apr_int64_t *out, json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }
    *out = (apr_int64_t)json_integer_value(v);
    return 1;
}

static int all_zero(const unsigned char *b, apr_size_t len)
{
    unsigned char acc = 0;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

/* The secret of the entry e into k (name and times already set). */
static apr_status_t open_one(cs_tk_key_t *k, json_t *e,
                             const apr_array_header_t *wrap_certs,
                             const apr_array_header_t *wrap_keys,
                             apr_pool_t *p, const char **err)
{
    const char *b64 = json_string_value(json_object_get(e, "key_cms"));
    unsigned char *der, plain[CS_TK_SECRET_LEN];
    apr_size_t der_len, len = 0;
    cs_tk_key_t opened;
    apr_status_t rv = APR_ENOENT;
    int i;

    if (!b64 || cs_base64_decode(&der, &der_len, p, b64)
                != APR_SUCCESS) {
        *err = "key_cms is not base64";
        return APR_EINVAL;
    }
    *err = "no wrapping key configured (CertSyncWrappingKey)";
    for (i = 0; wrap_keys && i < wrap_keys->nelts; i++) {
        rv = cs_envelope_open_data(plain, sizeof(plain), &len, p, der,
                                   der_len,
                                   APR_ARRAY_IDX(wrap_certs, i, X509 *),
                                   APR_ARRAY_IDX(wrap_keys, i, EVP_PKEY *),
                                   err);
        if (rv != APR_ENOENT) {
            break;
        }
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = cs_tk_secret_unpack(&opened, plain, len);
    OPENSSL_cleanse(plain, sizeof(plain));
    if (rv != APR_SUCCESS) {
        *err = "the sealed secret has the wrong length";
    }
    else if (CRYPTO_memcmp(opened.name, k->name, CS_TK_NAME_LEN) != 0) {
        /* The name beside the envelope must be the one inside it. */
        *err = "the sealed secret belongs to another key name";
        rv = APR_EINVAL;
    }
    else if (all_zero(opened.hmac, CS_TK_HMAC_LEN)
             || all_zero(opened.aes, CS_TK_AES_LEN)) {
        /* A key CertService never made (cs_tk_generate draws them): every
         * ticket under it could be read and forged by anyone. */
        *err = "the sealed secret is all zero";
        rv = APR_EINVAL;
    }
    else {
        memcpy(k->hmac, opened.hmac, CS_TK_HMAC_LEN);
        memcpy(k->aes, opened.aes, CS_TK_AES_LEN);
    }
    OPENSSL_cleanse(&opened, sizeof(opened));
    return rv;
}

apr_status_t csy_tk_open(cs_tk_key_t *keys, int *n, int *bad,
                         apr_int64_t *rotate, apr_int64_t *accept,
                         json_t *answer, const cs_tk_table_t *prev,
                         const apr_array_header_t *wrap_certs,
                         const apr_array_header_t *wrap_keys,
                         apr_int64_t now, apr_pool_t *p, const char **err)
{
    json_t *list = json_object_get(answer, "keys"), *e;
    const cs_tk_key_t *old;
    size_t i;
    int j;
    cs_tk_key_t *k;
    const char *why;

    *n = *bad = 0;
    *err = NULL;
    if (!json_is_object(answer) || !json_is_array(list)
        || !get_time(rotate, answer, "rotate") || *rotate < 1
        || !get_time(accept, answer, "accept")) {
        *err = "not a ticket key list (rotate, accept, keys)";
        return APR_EINVAL;
    }
    json_array_foreach(list, i, e) {
        if (*n >= CS_TK_MAX) {
            (*bad)++;
            *err = "more keys than a proxy holds";
            break;
        }
        k = &keys[*n];
        memset(k, 0, sizeof(*k));
        if (cs_tk_name_parse(k->name, json_string_value(
                json_object_get(e, "name"))) != APR_SUCCESS
            || !get_time(&k->issue_from, e, "issue_from")
            || !get_time(&k->issue_until, e, "issue_until")
            || !get_time(&k->accept_until, e, "accept_until")
            || k->issue_until <= k->issue_from
            || k->accept_until < k->issue_until) {
            (*bad)++;
            *err = "a key without a valid name or schedule";
            continue;
        }
        if (now >= k->accept_until) {
            continue;
        }
        for (j = 0; j < *n; j++) {
            if (memcmp(keys[j].name, k->name, CS_TK_NAME_LEN) == 0) {
                break;
            }
        }
        if (j < *n) {
            /* Listed twice: one name, one key (a ticket names its key);
             * a copy would also take the place of another key. */
            (*bad)++;
            *err = apr_psprintf(p, "key %.8s... listed twice",
                                json_string_value(json_object_get(e,
                                                                  "name")));
            memset(k, 0, sizeof(*k));
            continue;
        }
        old = prev ? cs_tk_find(prev, k->name, now) : NULL;
        if (old && old->issue_from == k->issue_from
            && old->issue_until == k->issue_until
            && old->accept_until == k->accept_until) {
            *k = *old;
            (*n)++;
            continue;
        }
        if (open_one(k, e, wrap_certs, wrap_keys, p, &why) != APR_SUCCESS) {
            OPENSSL_cleanse(k, sizeof(*k));
            (*bad)++;
            *err = apr_psprintf(p, "key %.8s...: %s",
                                json_string_value(json_object_get(e, "name")),
                                why);
            continue;
        }
        (*n)++;
    }
    return APR_SUCCESS;
}
