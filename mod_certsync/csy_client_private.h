/*
 * csy_client_private.h: what csy_sync.c and csy_client.c share: the
 * client's fields and the log helper.  Not for other files.
 */
#ifndef CSY_CLIENT_PRIVATE_H
#define CSY_CLIENT_PRIVATE_H

#include "csy_sync.h"

struct csy_client_t {
    const csy_config_t *config;
    cs_http_t *http;
};

/* A line for cfg->log (nothing without one). */
void csy_log(const csy_config_t *cfg, cs_log_level_t level, apr_pool_t *p,
             const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
