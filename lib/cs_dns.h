/*
 * cs_dns.h: the dns-01 challenge (RFC 8555 8.4) for CertService: the TXT
 * value, RFC 2136 dynamic updates signed with TSIG (RFC 8945) to an
 * authoritative server, CNAME delegation of _acme-challenge names, the
 * wait until every authoritative server of the zone answers the record,
 * and a hook command for DNS providers without RFC 2136.
 *
 * Pure code: APR, OpenSSL and ldns; no httpd types.  Calls block (one
 * ACME worker thread each); nothing is kept between calls, so any number
 * of threads may use one cs_dns_conf_t at once.  The TSIG secret is never
 * put in an error text or a log line.
 */
#ifndef CS_DNS_H
#define CS_DNS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "cs_log.h"

/** One zone CertService updates itself (CertServiceDNSUpdate). */
typedef struct {
    const char *zone;           /* lower case, no trailing dot */
    const char *server;         /* IPv4 or IPv6 address of the primary */
    int port;                   /* 53 */
    const char *key_name;       /* TSIG key name, no trailing dot */
    const char *key_alg;        /* "hmac-sha256" (hmac-sha1, -sha384,
                                 * -sha512 too) */
    const char *key_secret;     /* base64, as BIND's key files hold it */
} cs_dns_zone_t;

/**
 * One exchange with a name server: the query's wire form q, the answer's
 * wire form back in *a (from p).  APR_SUCCESS or a transport error.  For
 * tests and fuzzers (cs_dns_conf_t.xfer); the network is ldns's.
 */
typedef apr_status_t cs_dns_xfer_fn(void *baton, unsigned char **a,
                                    apr_size_t *alen, apr_pool_t *p,
                                    const char *server, int port,
                                    const unsigned char *q, apr_size_t qlen);

typedef struct {
    const apr_array_header_t *zones;    /* cs_dns_zone_t; may be NULL */
    /* CertServiceDNSHook: run as HOOK set|unset DOMAIN VALUE NAME (argv,
     * no shell) for a name no zone above covers; NULL: none. */
    const char *hook;
    apr_interval_time_t hook_timeout;   /* 0: 60 s */
    /* Where names are looked up (CNAMEs, a zone's NS set and their
     * addresses): "address[:port]"; NULL: /etc/resolv.conf. */
    const char *resolver;
    /* The port the authoritative servers are asked on; 0: 53. */
    int auth_port;
    /* How long to wait for every authoritative server; 0: 120 s. */
    apr_interval_time_t wait;
    int ttl;                            /* of the TXT record; 0: 60 */
    cs_log_fn *log;
    void *log_baton;
    /* Instead of the network (tests, fuzzers); NULL: ldns's sockets.
     * Every answer is parsed and checked the same way either way. */
    cs_dns_xfer_fn *xfer;
    void *xfer_baton;
    /* Set non-zero (by another thread) when the caller must stop: the
     * hook is killed (its process group) and the wait for the
     * authoritative servers given up at its next pass (at most a second,
     * or the queries in flight: 5 s each), APR_EINTR.  NULL: no
     * such flag. */
    const volatile apr_uint32_t *stop;
} cs_dns_conf_t;

/** The TSIG algorithm alg names, case-insensitively, in the form the
 * zone keeps ("hmac-sha256"; hmac-sha384, hmac-sha512, hmac-sha1), or NULL
 * if it is not one CertService signs with. */
const char *cs_dns_tsig_alg(const char *alg);

/** The TXT value of a dns-01 challenge: base64url(SHA-256(keyauth)),
 * 43 characters. */
const char *cs_dns01_value(apr_pool_t *p, const char *keyauth);

/** The zone of conf that covers name (the longest one), NULL if none. */
const cs_dns_zone_t *cs_dns_zone_for(const cs_dns_conf_t *conf,
                                     const char *name);

/**
 * Where the TXT record for name goes: name itself, or the end of its
 * CNAME chain (at most 8 links; a loop or a longer chain is an error).
 * Lower case, no trailing dot.
 */
apr_status_t cs_dns_follow(const char **target, apr_pool_t *p,
                           const cs_dns_conf_t *conf, const char *name,
                           const char **err);

/**
 * The RFC 2136 update for zone z: add (add 1) the TXT record name value,
 * or delete just that record (add 0; other values of the name stay),
 * signed with z's TSIG key.  The wire form in *wire (for tests).
 */
apr_status_t cs_dns_update_wire(unsigned char **wire, apr_size_t *len,
                                apr_pool_t *p, const cs_dns_zone_t *z,
                                const char *name, const char *value,
                                int add, int ttl, const char **err);

/**
 * Send that update to z's server (TCP) and check the answer: its TSIG
 * and rcode NOERROR.  APR_EACCES when the server refused the key or the
 * update (NOTAUTH, REFUSED, a bad signature), APR_EGENERAL otherwise.
 */
apr_status_t cs_dns_update(apr_pool_t *p, const cs_dns_conf_t *conf,
                           const cs_dns_zone_t *z, const char *name,
                           const char *value, int add, const char **err);

/**
 * Wait until every authoritative server of name's zone (the zone from
 * the SOA, its NS set, each address of each) answers TXT name with value,
 * polling each second up to conf->wait.  APR_TIMEUP and *err naming the
 * servers that lag (and what they answered) otherwise.
 */
apr_status_t cs_dns_wait(apr_pool_t *p, const cs_dns_conf_t *conf,
                         const char *name, const char *value,
                         const char **err);

/** Run the hook: HOOK set|unset DOMAIN VALUE NAME; exit status 0 is
 * success; killed after conf->hook_timeout. */
apr_status_t cs_dns_hook(apr_pool_t *p, const cs_dns_conf_t *conf,
                         int set, const char *domain, const char *value,
                         const char *name, const char **err);

/**
 * Publish (set 1) or remove (set 0) the dns-01 answer for domain (no
 * "*."): follow _acme-challenge.DOMAIN's CNAME, update the zone of conf
 * that covers the target or else run the hook; after publishing, wait
 * for every authoritative server (a failed wait removes the record
 * again).  *err names the record, the server and what went wrong.
 */
apr_status_t cs_dns01_publish(apr_pool_t *p, const cs_dns_conf_t *conf,
                              const char *domain, const char *keyauth,
                              int set, const char **err);

/**
 * Whether domain's dns-01 answer can be published: the target of
 * _acme-challenge.DOMAIN (CNAMEs followed) lies in a zone of conf, or a
 * hook is configured.  *where says which ("zone Z" or "the hook").
 */
apr_status_t cs_dns01_check(const char **target, const char **where,
                            apr_pool_t *p, const cs_dns_conf_t *conf,
                            const char *domain, const char **err);

#endif /* CS_DNS_H */
