/*
 * cs_conf.h: parsing of directive arguments that mod_certservice and
 * mod_certsync share.  Header-only and APR-only: each module is its own
 * DSO, and this needs nothing of httpd.
 */
#ifndef CS_CONF_H
#define CS_CONF_H

#include <apr_pools.h>
#include <apr_strings.h>

/* arg as a decimal number from min to max into *out: NULL, or what is
 * wrong with it for directive (allocated from p). */
static inline const char *cs_conf_int(apr_pool_t *p, const char *directive,
                                      const char *arg, int min, int max,
                                      int *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (*arg < '0' || *arg > '9' || *end || v < min || v > max) {
        return apr_psprintf(p, "%s: '%s' is not a number between %d and %d",
                            directive, arg, min, max);
    }
    *out = (int)v;
    return NULL;
}

#endif
