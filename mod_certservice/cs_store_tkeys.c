/*
 * cs_store_tkeys.c: the pool's TLS session ticket keys in the store
 * (cs_store.h, cs_tkey.h): one row per rotation period, its secret sealed
 * to the wrapping certificates the moment it is made, so CertService,
 * which holds only their public halves, cannot read a key back: like a
 * private key, only the proxies open it.
 *
 * Keys are made when asked for (GET /v1/ticket-keys), for the period
 * issuing now and the next one.  Periods are multiples of the rotation
 * since the epoch, so every instance on one database picks the same
 * period; the primary key on its start lets exactly one instance's key in,
 * and every instance answers with what the database holds.
 */
#include <string.h>

#include <apr_strings.h>
#include <openssl/crypto.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_db.h"
#include "cs_store.h"
#include "cs_tkey.h"

static void tkey_from_row(void *item, cs_db_row_t r)
{
    cs_tkey_row_t *k = item;

    k->issue_from = cs_db_int(r[0]);
    k->name = r[1];
    k->issue_until = cs_db_int(r[2]);
    k->accept_until = cs_db_int(r[3]);
    k->key_cms = r[4];
}

apr_status_t cs_store_tkeys(apr_array_header_t **keys, cs_db_t *db,
                            apr_pool_t *p, apr_int64_t now)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_rows(keys, db, p, sizeof(cs_tkey_row_t), tkey_from_row,
                      CS_STMT_TK_LIST, &now);
}

static int has_period(const apr_array_header_t *keys, apr_int64_t start)
{
    int i;

    for (i = 0; i < keys->nelts; i++) {
        if (APR_ARRAY_IDX(keys, i, cs_tkey_row_t).issue_from == start) {
            return 1;
        }
    }
    return 0;
}

/* Make, seal and insert the key of the period at start. */
static apr_status_t tkey_make(cs_db_t *db, apr_pool_t *p,
                              const apr_array_header_t *recipients,
                              apr_int64_t start, apr_int64_t rotate,
                              apr_int64_t accept, apr_int64_t now,
                              const char **err)
{
    cs_tk_key_t k;
    unsigned char secret[CS_TK_SECRET_LEN], *der;
    char name[2 * CS_TK_NAME_LEN + 1];
    apr_size_t der_len;
    apr_status_t rv;
    const char *cms;

    if ((rv = cs_tk_generate(&k, start, rotate, accept)) != APR_SUCCESS) {
        *err = "ticket keys: no random bytes";
        return rv;
    }
    cs_tk_secret_pack(secret, &k);
    cs_tk_name_hex(name, k.name);
    rv = cs_envelope_seal_data(&der, &der_len, p, secret, sizeof(secret),
                               recipients, err);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(&k, sizeof(k));
    if (rv != APR_SUCCESS) {
        return rv;
    }
    cms = cs_base64_encode(p, der, der_len);
    return cs_db_exec(NULL, db, p, CS_STMT_TK_INSERT, &start, name,
                      &(apr_int64_t){ start + rotate },
                      &(apr_int64_t){ start + rotate + accept }, cms, &now);
}

apr_status_t cs_tkeys_current(apr_array_header_t **keys, int *made,
                              cs_db_t *db, apr_pool_t *p,
                              const apr_array_header_t *recipients,
                              apr_int64_t rotate, apr_int64_t accept,
                              apr_int64_t now, const char **err)
{
    apr_array_header_t *have, *out;
    apr_int64_t start = cs_tk_period(now, rotate), s;
    apr_status_t rv;
    int i, missing = 0;

    *keys = NULL;
    *made = 0;
    *err = NULL;
    if (rotate < 1 || accept < 0) {
        *err = "ticket keys: no schedule";
        return APR_EINVAL;
    }
    if ((rv = cs_store_tkeys(&have, db, p, now)) != APR_SUCCESS) {
        *err = "ticket keys: cannot read the store";
        return rv;
    }
    for (s = start; s <= start + rotate; s += rotate) {
        if (has_period(have, s)) {
            continue;
        }
        missing = 1;
        rv = tkey_make(db, p, recipients, s, rotate, accept, now, err);
        if (rv == APR_SUCCESS) {
            (*made)++;
        }
        else if (!*err) {
            /* The insert failed: another instance's key, or a real
             * failure; reading back tells. */
            cs_db_forget(db);
        }
        else {
            return rv;
        }
    }
    if (missing) {
        /* A new period: keys no longer accepted go. */
        cs_db_exec(NULL, db, p, CS_STMT_TK_PURGE, &now);
        cs_db_forget(db);
        if ((rv = cs_store_tkeys(&have, db, p, now)) != APR_SUCCESS) {
            *err = "ticket keys: cannot read the store";
            return rv;
        }
        if (!has_period(have, start) || !has_period(have, start + rotate)) {
            *err = "ticket keys: cannot store a new key";
            return APR_EGENERAL;
        }
    }
    /* Published: up to the next period (a key of a later period, left by
     * a longer rotation since changed, waits for its time). */
    out = apr_array_make(p, have->nelts, sizeof(cs_tkey_row_t));
    for (i = 0; i < have->nelts; i++) {
        cs_tkey_row_t *k = &APR_ARRAY_IDX(have, i, cs_tkey_row_t);

        if (k->issue_from <= start + rotate) {
            APR_ARRAY_PUSH(out, cs_tkey_row_t) = *k;
        }
    }
    *keys = out;
    return APR_SUCCESS;
}
