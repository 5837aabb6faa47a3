/*
 * cs_psl.c: the registered domain of a name through libpsl (cs_psl.h).
 */
#include <pthread.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <libpsl.h>

#include "cs_psl.h"

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *psl_ctx;

/* The newest of the system's list and libpsl's built-in one; never
 * freed: it lives as long as the process. */
static void psl_load(void)
{
    psl_ctx = psl_latest(NULL);
    if (!psl_ctx) {
        psl_ctx = psl_builtin();
    }
}

const char *cs_psl_registered(apr_pool_t *p, const char *domain)
{
    char *lower, *c;
    const char *reg;

    if (strncmp(domain, "*.", 2) == 0) {
        domain += 2;
    }
    lower = apr_pstrdup(p, domain);
    for (c = lower; *c; c++) {
        *c = (char)apr_tolower(*c);
    }
    pthread_once(&psl_once, psl_load);
    if (!psl_ctx || !(reg = psl_registrable_domain(psl_ctx, lower))) {
        return lower;
    }
    return reg;
}
