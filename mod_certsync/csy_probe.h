/*
 * csy_probe.h: after a restart, ask our own TLS listener which certificate
 * it presents for a name.
 *
 * Pure code: APR and OpenSSL; no httpd types.
 */
#ifndef CSY_PROBE_H
#define CSY_PROBE_H

#include <apr_pools.h>
#include <apr_time.h>

/**
 * TLS handshake with host:port using name as SNI; *serial is the serial
 * of the certificate presented (lower-case hex, as cs_cert_info gives it).
 * The chain is not verified: only which certificate is served matters.
 * Returns APR_SUCCESS, or an error with *err saying why.
 */
apr_status_t csy_probe_serial(const char **serial, apr_pool_t *p,
                              const char *host, int port, const char *name,
                              apr_interval_time_t timeout, const char **err);

#endif /* CSY_PROBE_H */
