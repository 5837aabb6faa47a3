/*
 * csy_cursor.c: the change-feed sequence the store has applied, in the
 * file cursor at the store's top ("123\n").  See csy_store.h.
 */
#include <errno.h>
#include <string.h>

#include <apr_strings.h>

#include "cs_file.h"
#include "cs_layout.h"
#include "csy_store_private.h"

/* "N\n" with N < 2^63: 20 bytes; anything longer is not a cursor. */
#define CSY_CURSOR_MAX  64

apr_status_t csy_store_cursor_get(long long *seq, csy_store_t *store,
                                  apr_pool_t *p)
{
    apr_status_t rv;
    apr_size_t len, i;
    long long value = 0;
    char *buf;

    *seq = 0;
    rv = cs_file_read(&buf, &len, p,
                      cs_layout_top(p, store->dir, CS_LAYOUT_CURSOR),
                      CSY_CURSOR_MAX);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        return rv == APR_FROM_OS_ERROR(EFBIG) ? APR_EINVAL : rv;
    }
    /* Exactly what cursor_set writes: digits and a newline.  Anything else
     * is not ours, and guessing could skip changes. */
    if (len < 2 || buf[len - 1] != '\n') {
        return APR_EINVAL;
    }
    for (i = 0; i < len - 1; i++) {
        if (buf[i] < '0' || buf[i] > '9'
            || value > (APR_INT64_MAX - (buf[i] - '0')) / 10) {
            return APR_EINVAL;
        }
        value = value * 10 + (buf[i] - '0');
    }
    *seq = value;
    return APR_SUCCESS;
}

apr_status_t csy_store_cursor_set(csy_store_t *store, long long seq,
                                  apr_pool_t *p)
{
    const char *text;

    if (seq < 0) {
        return APR_EINVAL;
    }
    text = apr_psprintf(p, "%" APR_INT64_T_FMT "\n", (apr_int64_t)seq);
    return cs_file_write_atomic(cs_layout_top(p, store->dir,
                                              CS_LAYOUT_CURSOR),
                                text, strlen(text), CSY_PERMS_PUBLIC, p);
}
