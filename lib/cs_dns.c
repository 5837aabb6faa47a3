/*
 * cs_dns.c: the dns-01 challenge (cs_dns.h) over ldns: the TXT value,
 * RFC 2136 updates signed with TSIG, CNAME delegation, the wait for every
 * authoritative server, and the hook command.
 *
 * Log tags used here: CS00090 ... CS00094.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <apr_strings.h>

#include <ldns/ldns.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "cs_dns.h"
#include "cs_jws.h"
#include "cs_run.h"

#define DNS_TIMEOUT     5       /* one query, seconds */
#define DNS_MAX_CNAME   8
#define DNS_MAX_SERVERS 32
#define DNS_MAX_NS      16      /* NS names of a zone looked up */
/* exchange(): an answer to another query (ldns has no status for it). */
#define DNS_NOT_OURS    ((ldns_status)-1)

static void dns_log(const cs_dns_conf_t *c, cs_log_level_t level,
                    const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void dns_log(const cs_dns_conf_t *c, cs_log_level_t level,
                    const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!c->log) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    c->log(c->log_baton, level, buf);
}

const char *cs_dns01_value(apr_pool_t *p, const char *keyauth)
{
    unsigned char md[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)keyauth, strlen(keyauth), md);
    return cs_b64url_encode(p, md, sizeof(md));
}

/* --- names ---------------------------------------------------------- */

/* A name as ldns prints it ("Foo.Example."), lower case, no final dot. */
static const char *rdf_name(apr_pool_t *p, const ldns_rdf *rdf)
{
    char *s = ldns_rdf2str(rdf), *r, *c;
    apr_size_t n;

    if (!s) {
        return "";
    }
    r = apr_pstrdup(p, s);
    free(s);
    for (c = r; *c; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    n = strlen(r);
    if (n > 1 && r[n - 1] == '.') {
        r[n - 1] = '\0';
    }
    return r;
}

static int name_eq(const ldns_rdf *a, const char *b)
{
    ldns_rdf *d = ldns_dname_new_frm_str(b);
    int eq = d && ldns_dname_compare(a, d) == 0;

    ldns_rdf_deep_free(d);
    return eq;
}

/* Whether name is zone or below it (both lower case, no final dot). */
static int name_in(const char *name, const char *zone)
{
    apr_size_t n = strlen(name), z = strlen(zone);

    return n == z ? strcmp(name, zone) == 0
                  : n > z && name[n - z - 1] == '.'
                    && strcmp(name + n - z, zone) == 0;
}

const cs_dns_zone_t *cs_dns_zone_for(const cs_dns_conf_t *conf,
                                     const char *name)
{
    const cs_dns_zone_t *best = NULL, *z;
    int i;

    for (i = 0; conf->zones && i < conf->zones->nelts; i++) {
        z = &APR_ARRAY_IDX(conf->zones, i, cs_dns_zone_t);
        if (name_in(name, z->zone)
            && (!best || strlen(z->zone) > strlen(best->zone))) {
            best = z;
        }
    }
    return best;
}

static const char *rcode_name(apr_pool_t *p, ldns_pkt_rcode rc)
{
    char *s = ldns_pkt_rcode2str(rc), *r;

    r = apr_pstrdup(p, s ? s : "?");
    free(s);
    return r;
}

/* --- resolvers ------------------------------------------------------ */

static apr_status_t res_cleanup(void *data)
{
    ldns_resolver_deep_free(data);
    return APR_SUCCESS;
}

static apr_status_t pkt_cleanup(void *data)
{
    ldns_pkt_free(data);
    return APR_SUCCESS;
}

/* A resolver asking addr:port only; recursive sets RD. */
static apr_status_t res_to(ldns_resolver **res, apr_pool_t *p,
                           const char *addr, int port, int recursive,
                           const char **err)
{
    ldns_resolver *r;
    ldns_rdf *a;
    struct timeval tv;

    a = ldns_rdf_new_frm_str(strchr(addr, ':') ? LDNS_RDF_TYPE_AAAA
                                               : LDNS_RDF_TYPE_A, addr);
    if (!a) {
        *err = apr_psprintf(p, "'%s' is not an IP address", addr);
        return APR_EINVAL;
    }
    if (!(r = ldns_resolver_new())) {
        ldns_rdf_deep_free(a);
        return APR_ENOMEM;
    }
    ldns_resolver_push_nameserver(r, a);
    ldns_rdf_deep_free(a);
    ldns_resolver_set_port(r, (uint16_t)port);
    ldns_resolver_set_recursive(r, recursive ? true : false);
    ldns_resolver_set_retry(r, 2);
    tv.tv_sec = DNS_TIMEOUT;
    tv.tv_usec = 0;
    ldns_resolver_set_timeout(r, tv);
    apr_pool_cleanup_register(p, r, res_cleanup, apr_pool_cleanup_null);
    *res = r;
    return APR_SUCCESS;
}

/* conf->resolver ("addr", "addr:port", "[v6]:port"), or resolv.conf. */
static apr_status_t res_lookup(ldns_resolver **res, apr_pool_t *p,
                               const cs_dns_conf_t *conf, const char **err)
{
    const char *spec = conf->resolver, *colon;
    char *addr;
    int port = 53;
    ldns_resolver *r;
    struct timeval tv;

    if (!spec) {
        if (ldns_resolver_new_frm_file(&r, NULL) != LDNS_STATUS_OK) {
            *err = "cannot read the system's resolver (/etc/resolv.conf)";
            return APR_EGENERAL;
        }
        tv.tv_sec = DNS_TIMEOUT;
        tv.tv_usec = 0;
        ldns_resolver_set_timeout(r, tv);
        ldns_resolver_set_retry(r, 2);
        apr_pool_cleanup_register(p, r, res_cleanup, apr_pool_cleanup_null);
        *res = r;
        return APR_SUCCESS;
    }
    if (spec[0] == '[') {
        addr = apr_pstrdup(p, spec + 1);
        if (!(colon = strchr(addr, ']'))) {
            *err = apr_psprintf(p, "'%s' is not a resolver address", spec);
            return APR_EINVAL;
        }
        addr[colon - addr] = '\0';
        if (colon[1] == ':') {
            port = atoi(colon + 2);
        }
    }
    else if ((colon = strchr(spec, ':')) && !strchr(colon + 1, ':')) {
        addr = apr_pstrndup(p, spec, (apr_size_t)(colon - spec));
        port = atoi(colon + 1);
    }
    else {
        addr = apr_pstrdup(p, spec);
    }
    if (port < 1 || port > 65535) {
        *err = apr_psprintf(p, "'%s' is not a resolver address", spec);
        return APR_EINVAL;
    }
    return res_to(res, p, addr, port, 1, err);
}

/* Sends q to r's name server, through conf->xfer when set (tests,
 * fuzzers), and parses the answer the way ldns does on the network: a
 * TSIG on q (an update) must come back verified.  *ans freed with p.
 * Then, whoever sent it: the answer must be to q (its ID, QR set, and
 * q's question when it echoes one). */
static ldns_status exchange(ldns_pkt **ans, apr_pool_t *p,
                            const cs_dns_conf_t *conf, ldns_resolver *r,
                            ldns_pkt *q)
{
    ldns_pkt *a = NULL;
    ldns_status s;

    *ans = NULL;
    if (!conf->xfer) {
        s = ldns_resolver_send_pkt(&a, r, q);
    }
    else {
        uint8_t *qw = NULL;
        size_t qn = 0;
        unsigned char *aw = NULL;
        apr_size_t an = 0;
        const ldns_rr *tsig = ldns_pkt_tsig(q);
        char *server;

        if (ldns_pkt2wire(&qw, q, &qn) != LDNS_STATUS_OK) {
            return LDNS_STATUS_ERR;
        }
        server = ldns_rdf2str(ldns_resolver_nameservers(r)[0]);
        s = conf->xfer(conf->xfer_baton, &aw, &an, p, server ? server : "",
                       ldns_resolver_port(r), qw, qn)
            ? LDNS_STATUS_NETWORK_ERR : ldns_wire2pkt(&a, aw, an);
        free(server);
        free(qw);
        if (s == LDNS_STATUS_OK && tsig && ldns_rr_rd_count(tsig) > 3
            && !ldns_pkt_tsig_verify(a, aw, an,
                                     ldns_resolver_tsig_keyname(r),
                                     ldns_resolver_tsig_keydata(r),
                                     ldns_rr_rdf(tsig, 3))) {
            s = LDNS_STATUS_CRYPTO_TSIG_BOGUS;
        }
    }
    if (a) {
        apr_pool_cleanup_register(p, a, pkt_cleanup, apr_pool_cleanup_null);
    }
    if (s == LDNS_STATUS_OK && a) {
        const ldns_rr_list *qq = ldns_pkt_question(q);
        const ldns_rr_list *aq = ldns_pkt_question(a);

        if (ldns_pkt_id(a) != ldns_pkt_id(q) || !ldns_pkt_qr(a)) {
            return DNS_NOT_OURS;
        }
        if (aq && ldns_rr_list_rr_count(aq) > 0
            && (!qq || ldns_rr_list_rr_count(qq) < 1
                || ldns_dname_compare(
                       ldns_rr_owner(ldns_rr_list_rr(aq, 0)),
                       ldns_rr_owner(ldns_rr_list_rr(qq, 0))) != 0
                || ldns_rr_get_type(ldns_rr_list_rr(aq, 0))
                   != ldns_rr_get_type(ldns_rr_list_rr(qq, 0)))) {
            return DNS_NOT_OURS;
        }
    }
    *ans = a;
    return s;
}

static const char *status_text(ldns_status s)
{
    const char *t;

    if (s == DNS_NOT_OURS) {
        return "an answer to another query (ID or question)";
    }
    t = ldns_get_errorstr_by_id(s);
    return t ? t : "unknown error";
}

/* One question; *ans freed with p.  Transport failures only: the rcode
 * is the caller's to judge. */
static apr_status_t ask(ldns_pkt **ans, apr_pool_t *p,
                        const cs_dns_conf_t *conf, ldns_resolver *r,
                        const char *name, ldns_rr_type type,
                        const char **err)
{
    ldns_rdf *dn = ldns_dname_new_frm_str(name);
    ldns_status s;
    ldns_pkt *q = NULL, *pkt = NULL;

    if (!dn) {
        *err = apr_psprintf(p, "'%s' is not a DNS name", name);
        return APR_EINVAL;
    }
    s = ldns_resolver_prepare_query_pkt(&q, r, dn, type, LDNS_RR_CLASS_IN,
                                        ldns_resolver_recursive(r)
                                        ? LDNS_RD : 0);
    ldns_rdf_deep_free(dn);
    if (s == LDNS_STATUS_OK) {
        s = exchange(&pkt, p, conf, r, q);
    }
    ldns_pkt_free(q);
    if (s != LDNS_STATUS_OK || !pkt) {
        /* ldns says "no (valid) nameservers" when the only one did not
         * answer: say what happened. */
        *err = apr_psprintf(p, "no answer for %s: %s", name,
                            s == LDNS_STATUS_RES_NO_NS
                            ? "refused or timed out"
                            : status_text(s));
        return APR_EGENERAL;
    }
    *ans = pkt;
    return APR_SUCCESS;
}

/* The first record of type in list whose owner is name; NULL. */
static ldns_rr *find_rr(const ldns_rr_list *list, const char *name,
                        ldns_rr_type type)
{
    size_t i;
    ldns_rr *rr;

    for (i = 0; list && i < ldns_rr_list_rr_count(list); i++) {
        rr = ldns_rr_list_rr(list, i);
        if (ldns_rr_get_type(rr) == type
            && (!name || name_eq(ldns_rr_owner(rr), name))) {
            return rr;
        }
    }
    return NULL;
}

/* --- CNAME delegation ----------------------------------------------- */

static apr_status_t follow(const char **target, apr_pool_t *p,
                           const cs_dns_conf_t *conf, ldns_resolver *r,
                           const char *name, const char **err)
{
    const char *cur = name, *seen = apr_pstrcat(p, " ", name, " ", NULL);
    ldns_pkt *ans;
    ldns_rr *rr;
    ldns_pkt_rcode rc;
    apr_status_t rv;
    int i;

    for (i = 0; i <= DNS_MAX_CNAME; i++) {
        if ((rv = ask(&ans, p, conf, r, cur, LDNS_RR_TYPE_CNAME, err))) {
            return rv;
        }
        rc = ldns_pkt_get_rcode(ans);
        if (rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN) {
            *err = apr_psprintf(p, "looking up %s: %s", cur,
                                rcode_name(p, rc));
            return APR_EGENERAL;
        }
        if (!(rr = find_rr(ldns_pkt_answer(ans), cur, LDNS_RR_TYPE_CNAME))
            || ldns_rr_rd_count(rr) < 1) {
            *target = cur;
            return APR_SUCCESS;
        }
        cur = rdf_name(p, ldns_rr_rdf(rr, 0));
        if (strstr(seen, apr_pstrcat(p, " ", cur, " ", NULL))) {
            *err = apr_psprintf(p, "%s: a CNAME loop at %s", name, cur);
            return APR_EGENERAL;
        }
        seen = apr_pstrcat(p, seen, cur, " ", NULL);
    }
    *err = apr_psprintf(p, "%s: more than %d CNAMEs", name, DNS_MAX_CNAME);
    return APR_EGENERAL;
}

apr_status_t cs_dns_follow(const char **target, apr_pool_t *p,
                           const cs_dns_conf_t *conf, const char *name,
                           const char **err)
{
    ldns_resolver *r;
    apr_status_t rv;

    if ((rv = res_lookup(&r, p, conf, err))) {
        return rv;
    }
    return follow(target, p, conf, r, name, err);
}

/* --- RFC 2136 update ------------------------------------------------ */

const char *cs_dns_tsig_alg(const char *alg)
{
    static const char *const known[] = { "hmac-sha256", "hmac-sha384",
                                         "hmac-sha512", "hmac-sha1", NULL };
    int i;

    for (i = 0; alg && known[i]; i++) {
        if (strcasecmp(alg, known[i]) == 0) {
            return known[i];
        }
    }
    return NULL;
}

static apr_status_t make_update(ldns_pkt **pkt, apr_pool_t *p,
                                const cs_dns_zone_t *z, const char *name,
                                const char *value, int add, int ttl,
                                const char **err)
{
    ldns_rr *rr = NULL;
    ldns_rr_list *up;
    ldns_rdf *zone;
    ldns_pkt *u;
    ldns_status s;
    const char *text;

    /* The value is base64url (the caller's, checked here anyway): no
     * quoting to worry about in the presentation form. */
    if (!*value || value[strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi"
                                       "jklmnopqrstuvwxyz0123456789-_")]) {
        *err = "a dns-01 value is base64url";
        return APR_EINVAL;
    }
    text = apr_psprintf(p, "%s. %d IN TXT \"%s\"", name, ttl, value);
    if (ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK) {
        *err = apr_psprintf(p, "cannot make the record %s", text);
        return APR_EINVAL;
    }
    if (!add) {
        /* RFC 2136 2.5.4: delete this record only (class NONE, TTL 0);
         * another challenge's value for the same name stays. */
        ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);
        ldns_rr_set_ttl(rr, 0);
    }
    up = ldns_rr_list_new();
    ldns_rr_list_push_rr(up, rr);
    zone = ldns_dname_new_frm_str(z->zone);
    u = zone ? ldns_update_pkt_new(zone, LDNS_RR_CLASS_IN, NULL, up, NULL)
             : NULL;
    ldns_rr_list_deep_free(up);
    if (!u) {
        *err = apr_psprintf(p, "cannot make an update of zone %s", z->zone);
        return APR_EGENERAL;
    }
    ldns_pkt_set_rd(u, false);
    ldns_pkt_set_random_id(u);
    /* Refused here rather than by ldns: its error path for an algorithm
     * it does not know frees the record's fields shallowly (13 small
     * allocations lost per call, LeakSanitizer in test_cs_dns). */
    if (!cs_dns_tsig_alg(z->key_alg)) {
        ldns_pkt_free(u);
        *err = apr_psprintf(p, "cannot sign the update with key %s: '%s' "
                            "is not a TSIG algorithm", z->key_name,
                            z->key_alg);
        return APR_EINVAL;
    }
    s = ldns_pkt_tsig_sign(u, apr_pstrcat(p, z->key_name, ".", NULL),
                           z->key_secret, 300,
                           apr_pstrcat(p, z->key_alg, ".", NULL), NULL);
    if (s != LDNS_STATUS_OK) {
        ldns_pkt_free(u);
        *err = apr_psprintf(p, "cannot sign the update with key %s (%s): "
                            "%s", z->key_name, z->key_alg,
                            status_text(s));
        return APR_EINVAL;
    }
    apr_pool_cleanup_register(p, u, pkt_cleanup,
                              apr_pool_cleanup_null);
    *pkt = u;
    return APR_SUCCESS;
}

apr_status_t cs_dns_update_wire(unsigned char **wire, apr_size_t *len,
                                apr_pool_t *p, const cs_dns_zone_t *z,
                                const char *name, const char *value,
                                int add, int ttl, const char **err)
{
    ldns_pkt *u;
    uint8_t *buf = NULL;
    size_t n = 0;
    apr_status_t rv;

    if ((rv = make_update(&u, p, z, name, value, add, ttl, err))) {
        return rv;
    }
    if (ldns_pkt2wire(&buf, u, &n) != LDNS_STATUS_OK) {
        *err = "cannot write the update";
        return APR_EGENERAL;
    }
    *wire = apr_pmemdup(p, buf, n);
    *len = n;
    free(buf);
    return APR_SUCCESS;
}

apr_status_t cs_dns_update(apr_pool_t *p, const cs_dns_conf_t *conf,
                           const cs_dns_zone_t *z, const char *name,
                           const char *value, int add, const char **err)
{
    ldns_resolver *r;
    ldns_pkt *u, *ans = NULL;
    ldns_pkt_rcode rc;
    ldns_status s;
    apr_status_t rv;
    const char *where = apr_psprintf(p, "%s%s%s:%d", strchr(z->server, ':')
                                     ? "[" : "", z->server,
                                     strchr(z->server, ':') ? "]" : "",
                                     z->port);

    if ((rv = make_update(&u, p, z, name, value, add,
                          conf->ttl > 0 ? conf->ttl : 60, err))
        || (rv = res_to(&r, p, z->server, z->port, 0, err))) {
        return rv;
    }
    /* The answer's TSIG is checked by ldns against the key. */
    ldns_resolver_set_tsig_keyname(r, apr_pstrcat(p, z->key_name, ".",
                                                  NULL));
    ldns_resolver_set_tsig_keydata(r, z->key_secret);
    ldns_resolver_set_tsig_algorithm(r, apr_pstrcat(p, z->key_alg, ".",
                                                    NULL));
    ldns_resolver_set_usevc(r, true);
    s = exchange(&ans, p, conf, r, u);
    if (s == LDNS_STATUS_CRYPTO_TSIG_BOGUS) {
        *err = apr_psprintf(p, "update of %s at %s: the answer (%s) is not "
                            "signed with key %s: the server does not know "
                            "the key or its secret differs", z->zone, where,
                            ans ? rcode_name(p, ldns_pkt_get_rcode(ans))
                                : "none", z->key_name);
        return APR_EACCES;
    }
    if (s != LDNS_STATUS_OK || !ans) {
        *err = apr_psprintf(p, "update of %s at %s: %s", z->zone, where,
                            status_text(s));
        return APR_EGENERAL;
    }
    if ((rc = ldns_pkt_get_rcode(ans)) != LDNS_RCODE_NOERROR) {
        *err = apr_psprintf(p, "update of %s at %s (%s TXT %s, key %s) "
                            "refused: %s", z->zone, where, name,
                            add ? "add" : "delete", z->key_name,
                            rcode_name(p, rc));
        return rc == LDNS_RCODE_NOTAUTH || rc == LDNS_RCODE_REFUSED
               ? APR_EACCES : APR_EGENERAL;
    }
    dns_log(conf, CS_LOG_INFO, CSLOGNO(00090) "dns-01: %s TXT %s %s zone "
            "%s at %s", add ? "added" : "deleted", name,
            add ? "to" : "from", z->zone, where);
    return APR_SUCCESS;
}

/* --- the wait ------------------------------------------------------- */

/* The zone of name: the owner of the SOA the resolver gives for it or,
 * walking up, for its parents. */
static apr_status_t zone_of(const char **zone, apr_pool_t *p,
                            const cs_dns_conf_t *conf, ldns_resolver *r,
                            const char *name, const char **err)
{
    const char *cur = name;
    ldns_pkt *ans;
    ldns_rr *rr;
    apr_status_t rv;

    while (cur && *cur) {
        if ((rv = ask(&ans, p, conf, r, cur, LDNS_RR_TYPE_SOA, err))) {
            return rv;
        }
        if ((rr = find_rr(ldns_pkt_answer(ans), cur, LDNS_RR_TYPE_SOA))
            || (rr = find_rr(ldns_pkt_authority(ans), NULL,
                             LDNS_RR_TYPE_SOA))) {
            /* Only a zone that holds name: a SOA of another zone would
             * send the wait to that zone's servers. */
            const char *owner = rdf_name(p, ldns_rr_owner(rr));

            if (name_in(name, owner)) {
                *zone = owner;
                return APR_SUCCESS;
            }
        }
        cur = strchr(cur, '.');
        cur = cur ? cur + 1 : NULL;
    }
    *err = apr_psprintf(p, "no SOA found for %s or its parents", name);
    return APR_NOTFOUND;
}

typedef struct {
    const char *ns;             /* its NS name */
    const char *addr;
    ldns_resolver *r;
    const char *state;          /* what it answered last; NULL: has it */
} auth_t;

/* Every address of every NS of zone. */
static apr_status_t auth_servers(apr_array_header_t **out, apr_pool_t *p,
                                 const cs_dns_conf_t *conf, ldns_resolver *r,
                                 const char *zone, const char **err)
{
    static const ldns_rr_type types[] = { LDNS_RR_TYPE_A,
                                          LDNS_RR_TYPE_AAAA };
    apr_array_header_t *list = apr_array_make(p, 4, sizeof(auth_t));
    const ldns_rr_list *nsl, *al;
    ldns_pkt *ans;
    ldns_rr *rr;
    const char *ns;
    auth_t *a;
    apr_status_t rv;
    size_t i, j, t;
    int asked;

    if ((rv = ask(&ans, p, conf, r, zone, LDNS_RR_TYPE_NS, err))) {
        return rv;
    }
    nsl = ldns_pkt_answer(ans);
    /* Bounded: a long NS set must not cost two lookups per name. */
    for (i = 0, asked = 0; nsl && i < ldns_rr_list_rr_count(nsl)
                           && asked < DNS_MAX_NS
                           && list->nelts < DNS_MAX_SERVERS; i++) {
        rr = ldns_rr_list_rr(nsl, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_NS
            || ldns_rr_rd_count(rr) < 1) {
            continue;
        }
        asked++;
        ns = rdf_name(p, ldns_rr_rdf(rr, 0));
        for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            ldns_pkt *aa;
            if (ask(&aa, p, conf, r, ns, types[t], err)) {
                continue;
            }
            al = ldns_pkt_answer(aa);
            for (j = 0; al && j < ldns_rr_list_rr_count(al); j++) {
                if (ldns_rr_get_type(ldns_rr_list_rr(al, j)) != types[t]
                    || list->nelts >= DNS_MAX_SERVERS) {
                    continue;
                }
                a = apr_array_push(list);
                memset(a, 0, sizeof(*a));
                a->ns = ns;
                a->addr = rdf_name(p, ldns_rr_rdf(ldns_rr_list_rr(al, j),
                                                  0));
                a->state = "not asked yet";
                if ((rv = res_to(&a->r, p, a->addr, conf->auth_port > 0
                                 ? conf->auth_port : 53, 0, err))) {
                    return rv;
                }
            }
        }
    }
    if (!list->nelts) {
        *err = apr_psprintf(p, "zone %s: no address for any of its NS "
                            "records", zone);
        return APR_NOTFOUND;
    }
    *out = list;
    return APR_SUCCESS;
}

/* Whether the server of a answers TXT name with value; a->state says
 * what it answered when not. */
static int has_value(auth_t *a, apr_pool_t *p, apr_pool_t *tp,
                     const cs_dns_conf_t *conf, const char *name,
                     const char *value)
{
    const ldns_rr_list *al;
    const ldns_rdf *rd;
    const char *err = NULL;
    ldns_pkt *ans;
    ldns_rr *rr;
    ldns_pkt_rcode rc;
    size_t i, vl = strlen(value), others = 0;

    if (ask(&ans, tp, conf, a->r, name, LDNS_RR_TYPE_TXT, &err)) {
        a->state = apr_pstrdup(p, err ? err : "no answer");
        return 0;
    }
    if ((rc = ldns_pkt_get_rcode(ans)) != LDNS_RCODE_NOERROR) {
        a->state = rcode_name(p, rc);
        return 0;
    }
    al = ldns_pkt_answer(ans);
    for (i = 0; al && i < ldns_rr_list_rr_count(al); i++) {
        rr = ldns_rr_list_rr(al, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_TXT
            || !name_eq(ldns_rr_owner(rr), name) || ldns_rr_rd_count(rr) < 1) {
            continue;
        }
        /* One character-string: its length byte, then the value. */
        rd = ldns_rr_rdf(rr, 0);
        if (ldns_rr_rd_count(rr) == 1 && ldns_rdf_size(rd) == vl + 1
            && memcmp(ldns_rdf_data(rd) + 1, value, vl) == 0) {
            a->state = NULL;
            return 1;
        }
        others++;
    }
    a->state = others ? apr_psprintf(p, "%d other TXT values", (int)others)
                      : "no such TXT record";
    return 0;
}

apr_status_t cs_dns_wait(apr_pool_t *p, const cs_dns_conf_t *conf,
                         const char *name, const char *value,
                         const char **err)
{
    apr_interval_time_t wait = conf->wait > 0 ? conf->wait
                                              : apr_time_from_sec(120);
    apr_time_t start = apr_time_now(), deadline = start + wait;
    apr_array_header_t *servers;
    ldns_resolver *r;
    const char *zone, *lag;
    apr_pool_t *rp;
    apr_status_t rv;
    auth_t *a;
    int i, missing;

    if ((rv = res_lookup(&r, p, conf, err))
        || (rv = zone_of(&zone, p, conf, r, name, err))
        || (rv = auth_servers(&servers, p, conf, r, zone, err))) {
        *err = apr_psprintf(p, "cannot find the authoritative servers of "
                            "%s: %s", name, *err);
        return rv;
    }
    apr_pool_create(&rp, p);
    for (;;) {
        /* A stop waits at most for the queries of a pass (DNS_TIMEOUT
         * each, for a server that does not answer). */
        if (conf->stop && *conf->stop) {
            apr_pool_destroy(rp);
            *err = apr_psprintf(p, "gave up waiting for TXT %s: stopping",
                                name);
            return APR_EINTR;
        }
        missing = 0;
        apr_pool_clear(rp);
        for (i = 0; i < servers->nelts; i++) {
            a = &APR_ARRAY_IDX(servers, i, auth_t);
            if (a->state && !has_value(a, p, rp, conf, name, value)) {
                missing++;
            }
        }
        if (!missing) {
            dns_log(conf, CS_LOG_INFO, CSLOGNO(00091) "dns-01: TXT %s is "
                    "answered by all %d servers of zone %s after %"
                    APR_TIME_T_FMT " ms", name, servers->nelts, zone,
                    apr_time_as_msec(apr_time_now() - start));
            apr_pool_destroy(rp);
            return APR_SUCCESS;
        }
        if (apr_time_now() + apr_time_from_sec(1) > deadline) {
            break;
        }
        apr_sleep(apr_time_from_sec(1));
    }
    apr_pool_destroy(rp);
    lag = "";
    for (i = 0; i < servers->nelts; i++) {
        a = &APR_ARRAY_IDX(servers, i, auth_t);
        if (a->state) {
            lag = apr_psprintf(p, "%s%s%s (%s): %s", lag, *lag ? "; " : "",
                               a->ns, a->addr, a->state);
        }
    }
    *err = apr_psprintf(p, "TXT %s not on every authoritative server of "
                        "zone %s after %" APR_TIME_T_FMT " s: %s", name,
                        zone, apr_time_sec(wait), lag);
    return APR_TIMEUP;
}

/* --- the hook ------------------------------------------------------- */

apr_status_t cs_dns_hook(apr_pool_t *p, const cs_dns_conf_t *conf,
                         int set, const char *domain, const char *value,
                         const char *name, const char **err)
{
    apr_interval_time_t limit = conf->hook_timeout > 0
                                ? conf->hook_timeout
                                : apr_time_from_sec(60);
    const char *argv[6];
    cs_run_t run;
    apr_status_t rv;
    int exited, code;

    argv[0] = conf->hook;
    argv[1] = set ? "set" : "unset";
    argv[2] = domain;
    argv[3] = value;
    argv[4] = name;
    argv[5] = NULL;
    memset(&run, 0, sizeof(run));
    run.argv = argv;
    run.limit = limit;
    run.stop = conf->stop;
    rv = cs_run(&exited, &code, &run, p, err);
    if (rv == APR_INCOMPLETE) {
        *err = apr_psprintf(p, "the DNS hook %s %s %s killed: stopping",
                            argv[0], argv[1], domain);
        return APR_EINTR;
    }
    if (rv == APR_TIMEUP) {
        *err = apr_psprintf(p, "the DNS hook %s %s %s did not end "
                            "within %" APR_TIME_T_FMT " s (killed)",
                            argv[0], argv[1], domain,
                            apr_time_sec(limit));
        return APR_TIMEUP;
    }
    if (rv != APR_SUCCESS) {
        *err = apr_pstrcat(p, "the DNS hook: ", *err, NULL);
        return rv;
    }
    if (!exited || code != 0) {
        *err = apr_psprintf(p, "the DNS hook %s %s %s failed: %s %d",
                            argv[0], argv[1], domain,
                            exited ? "exit status" : "signal", code);
        return APR_EGENERAL;
    }
    dns_log(conf, CS_LOG_INFO, CSLOGNO(00092) "dns-01: the hook %s %s %s "
            "(TXT %s) succeeded", argv[0], argv[1], domain, name);
    return APR_SUCCESS;
}

/* --- dns-01 --------------------------------------------------------- */

apr_status_t cs_dns01_check(const char **target, const char **where,
                            apr_pool_t *p, const cs_dns_conf_t *conf,
                            const char *domain, const char **err)
{
    const char *name = apr_pstrcat(p, "_acme-challenge.", domain, NULL);
    const cs_dns_zone_t *z;
    apr_status_t rv;

    if ((rv = cs_dns_follow(target, p, conf, name, err))) {
        return rv;
    }
    if ((z = cs_dns_zone_for(conf, *target))) {
        *where = apr_pstrcat(p, "zone ", z->zone, NULL);
        return APR_SUCCESS;
    }
    if (conf->hook) {
        *where = "the hook";
        return APR_SUCCESS;
    }
    *err = apr_psprintf(p, "%s%s%s is in no zone of CertServiceDNSUpdate "
                        "and no CertServiceDNSHook is set", name,
                        strcmp(name, *target) ? " (CNAME to " : "",
                        strcmp(name, *target)
                        ? apr_pstrcat(p, *target, ")", NULL) : "");
    return APR_NOTFOUND;
}

apr_status_t cs_dns01_publish(apr_pool_t *p, const cs_dns_conf_t *conf,
                              const char *domain, const char *keyauth,
                              int set, const char **err)
{
    const char *value = cs_dns01_value(p, keyauth), *target, *where;
    const char *e2 = NULL;
    const cs_dns_zone_t *z;
    apr_status_t rv;

    if ((rv = cs_dns01_check(&target, &where, p, conf, domain, err))) {
        return rv;
    }
    z = cs_dns_zone_for(conf, target);
    rv = z ? cs_dns_update(p, conf, z, target, value, set, err)
           : cs_dns_hook(p, conf, set, domain, value, target, err);
    if (rv || !set) {
        return rv;
    }
    if ((rv = cs_dns_wait(p, conf, target, value, err))) {
        /* Not left behind: the order is abandoned. */
        if (z ? cs_dns_update(p, conf, z, target, value, 0, &e2)
              : cs_dns_hook(p, conf, 0, domain, value, target, &e2)) {
            dns_log(conf, CS_LOG_WARN, CSLOGNO(00093) "dns-01: cannot "
                    "remove TXT %s after the failed wait: %s", target, e2);
        }
    }
    return rv;
}
