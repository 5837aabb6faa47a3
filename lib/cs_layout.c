/*
 * cs_layout.c: paths in the certsync store.  See cs_layout.h.
 */
#include <string.h>

#include <apr_strings.h>

#include "cs_layout.h"

apr_size_t cs_layout_path_buf(char *buf, apr_size_t size, const char *store,
                              const char *domain, const char *entry,
                              const char *file)
{
    const char *part[] = { store, "/" CS_LAYOUT_LIVE, domain ? "/" : NULL,
                           domain, entry ? "/" : NULL, entry,
                           file ? "/" : NULL, file };
    apr_size_t i, n, len = 0;

    for (i = 0; i < sizeof(part) / sizeof(part[0]); i++) {
        if (!part[i] || (i > 2 && !domain) || (i > 4 && !entry)) {
            continue;
        }
        n = strlen(part[i]);
        if (len + n >= size) {
            if (size) {
                buf[0] = '\0';
            }
            return 0;
        }
        memcpy(buf + len, part[i], n);
        len += n;
    }
    buf[len] = '\0';
    return len;
}

const char *cs_layout_path(apr_pool_t *p, const char *store,
                           const char *domain, const char *entry,
                           const char *file)
{
    if (!domain) {
        return apr_pstrcat(p, store, "/" CS_LAYOUT_LIVE, NULL);
    }
    if (!entry) {
        return apr_pstrcat(p, store, "/" CS_LAYOUT_LIVE "/", domain, NULL);
    }
    return apr_pstrcat(p, store, "/" CS_LAYOUT_LIVE "/", domain, "/", entry,
                       file ? "/" : NULL, file, NULL);
}

const char *cs_layout_certdir(apr_pool_t *p, const char *domain)
{
    return apr_pstrcat(p, CS_LAYOUT_LIVE "/", domain, "/" CS_LAYOUT_CURRENT,
                       NULL);
}

const char *cs_layout_top(apr_pool_t *p, const char *store,
                          const char *name)
{
    return apr_pstrcat(p, store, "/", name, NULL);
}

int cs_layout_serial_ok(const char *s, apr_size_t len)
{
    apr_size_t i;

    if (s == NULL || len == 0 || len > CS_LAYOUT_SERIAL_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')
              || (s[i] >= 'A' && s[i] <= 'F'))) {
            return 0;
        }
    }
    return 1;
}
