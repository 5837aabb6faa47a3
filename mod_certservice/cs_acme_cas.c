/*
 * cs_acme_cas.c: the drive's several CAs (cs_acme_drive.h): what a
 * failure at a CA means, each CA's health in the store, the order
 * budgets (per account, per registered domain, global), the order in
 * which a domain's CAs are tried.
 *
 * Log tags used here: CS00045, CS00047, CS00048, CS00160.
 */
#include <string.h>

#include <apr_strings.h>

#include "cs_acme_drive_private.h"
#include "cs_metrics.h"
#include "cs_psl.h"
#include "cs_sched.h"

fail_kind_t cs_drive_fail_kind(apr_status_t rv, const char *err)
{
    if (rv == APR_ECONNREFUSED) {
        return FAIL_DOWN;
    }
    if (rv == APR_EAGAIN) {
        return FAIL_LIMITED;
    }
    if (rv == APR_EACCES || rv == APR_NOTFOUND) {
        return FAIL_UNUSABLE;
    }
    if (err && (strstr(err, "urn:ietf:params:acme:error:caa")
                || strstr(err, "urn:ietf:params:acme:error:"
                               "rejectedIdentifier"))) {
        return FAIL_REFUSED;
    }
    return FAIL_DOMAIN;
}

drive_ca_t *cs_drive_ca_at(cs_acme_drive_t *d, int i)
{
    return APR_ARRAY_IDX(d->cas, i, drive_ca_t *);
}

drive_ca_t *cs_drive_ca_by_name(cs_acme_drive_t *d, const char *name)
{
    int i;

    for (i = 0; name && i < d->cas->nelts; i++) {
        if (strcmp(cs_drive_ca_at(d, i)->conf.name, name) == 0) {
            return cs_drive_ca_at(d, i);
        }
    }
    return NULL;
}

/* Whether name is a word of the space-separated list. */
int cs_drive_in_list(const char *list, const char *name)
{
    apr_size_t n = strlen(name);
    const char *s = list;

    while (s && (s = strstr(s, name))) {
        if ((s == list || s[-1] == ' ') && (s[n] == ' ' || !s[n])) {
            return 1;
        }
        s += n;
    }
    return 0;
}

cs_ca_health_t *cs_drive_health_of(const apr_array_header_t *hl,
                                   const char *name)
{
    int i;

    for (i = 0; hl && i < hl->nelts; i++) {
        cs_ca_health_t *h = &APR_ARRAY_IDX(hl, i, cs_ca_health_t);

        if (strcmp(h->name, name) == 0) {
            return h;
        }
    }
    return NULL;
}

/* Record an attempt at c in its health row: a success (a change of
 * state, or a minute since the last one written), a CA that is down
 * (one more failure, retried after the backoff), or a refusal (its
 * error only). */
void cs_drive_health_record(cs_acme_drive_t *d, drive_ca_t *c,
                            const cs_ca_health_t *h, apr_int64_t now,
                            int ok, int down, const char *err)
{
    cs_ca_health_t n;
    apr_status_t rv;

    memset(&n, 0, sizeof(n));
    n.name = c->conf.name;
    n.url = c->conf.directory_url;
    n.updated = now;
    if (ok) {
        if (h && strcmp(h->state, "up") == 0 && !h->failures
            && now - h->last_ok < 60) {
            return;
        }
        if (h && strcmp(h->state, "down") == 0) {
            cs_drive_log(d, CS_LOG_NOTICE, CSLOGNO(00048) "acme: CA %s (%s) "
                         "answers again after %d failures", n.name, n.url,
                         h->failures);
        }
        n.state = "up";
        n.last_error = h ? h->last_error : NULL;
        n.last_ok = now;
    }
    else if (down) {
        n.state = "down";
        n.failures = (h ? h->failures : 0) + 1;
        n.last_error = err;
        n.last_ok = h ? h->last_ok : 0;
        n.next_retry = now + cs_sched_backoff(n.failures,
                                              d->policy.backoff,
                                              d->policy.backoff_cap);
        cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00047) "acme: CA %s (%s) is down "
                     "(failure %d): %s; next try in %" APR_INT64_T_FMT " s",
                     n.name, n.url, n.failures, err ? err : "?",
                     n.next_retry - now);
    }
    else {
        n.state = h ? h->state : "up";
        n.failures = h ? h->failures : 0;
        n.last_error = err;
        n.next_retry = h ? h->next_retry : 0;
        n.last_ok = h ? h->last_ok : 0;
    }
    if ((rv = cs_store_ca_put(d->db, d->jp, &n))) {
        cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00045) "acme: cannot record the "
                     "health of CA %s: %s", n.name,
                     cs_store_error(d->db, d->jp, rv));
    }
}

const char *cs_acme_budget_row(apr_pool_t *p, int ca, const char *name,
                               int n)
{
    return ca == 0 && n == 0 ? "orders"
                             : apr_psprintf(p, "orders:%s:%d", name, n + 1);
}

const char *cs_drive_fail_result(fail_kind_t kind)
{
    switch (kind) {
    case FAIL_DOWN:
        return "down";
    case FAIL_LIMITED:
        return "limited";
    case FAIL_REFUSED:
        return "refused";
    case FAIL_UNUSABLE:
        return "unusable";
    default:
        return "failed";
    }
}

void cs_drive_count_order(cs_acme_drive_t *d, drive_ca_t *c,
                          const char *result)
{
    apr_status_t rv = cs_store_order_count(d->db, d->jp, c->conf.name,
                                           result);

    if (rv) {
        cs_drive_log(d, CS_LOG_WARN, CSLOGNO(00160) "acme: cannot count "
                     "an order (%s) of CA %s in the metrics: %s", result,
                     c->conf.name, cs_store_error(d->db, d->jp, rv));
    }
}

/* The row of the registered domain's budget at c: its name hashed, as
 * a row name holds 32 bytes. */
const char *cs_drive_domain_budget_row(cs_acme_drive_t *d, drive_ca_t *c,
                                       const char *domain)
{
    unsigned char md[32];
    const char *reg = cs_psl_registered(d->jp, domain);

    SHA256((const unsigned char *)reg, strlen(reg), md);
    return apr_psprintf(d->jp, "rd:%s:%s", c->conf.name,
                        apr_pstrndup(d->jp, cs_b64url_encode(d->jp, md,
                                                             sizeof(md)),
                                     12));
}

/* Take an order from the budgets of account a at c: the global one, the
 * account's new orders, the registered domain's (the latter two not for
 * an ARI renewal; the account's pause counts always).  *which: the
 * CS_SCHED_BUDGET_* that said no. */
apr_status_t cs_drive_take_budget(int *granted, apr_int64_t *ra, int *which,
                                  cs_acme_drive_t *d, drive_ca_t *c,
                                  drive_acct_t *a, const char *domain,
                                  int ari, apr_int64_t now)
{
    const cs_acme_policy_t *pol = &d->policy;
    cs_budget_t b[3];
    int kind[3], n = 0, mask = cs_sched_budgets(ari), i;
    apr_status_t rv;

    if (pol->global_limit > 0) {
        b[n].name = "orders:all";
        b[n].window = pol->global_window;
        b[n].limit = pol->global_limit;
        kind[n++] = CS_SCHED_BUDGET_GLOBAL;
    }
    b[n].name = a->limiter;
    b[n].window = c->conf.limit ? c->conf.window : pol->window;
    b[n].limit = !(mask & CS_SCHED_BUDGET_ACCOUNT) ? 0
                 : c->conf.limit ? c->conf.limit : pol->limit;
    kind[n++] = CS_SCHED_BUDGET_ACCOUNT;
    if ((mask & CS_SCHED_BUDGET_DOMAIN) && c->conf.domain_limit > 0) {
        b[n].name = cs_drive_domain_budget_row(d, c, domain);
        b[n].window = c->conf.domain_window;
        b[n].limit = c->conf.domain_limit;
        kind[n++] = CS_SCHED_BUDGET_DOMAIN;
    }
    rv = cs_store_budget_take(granted, ra, &i, d->db, d->jp, b, n, now);
    *which = rv == APR_SUCCESS && !*granted && i >= 0 ? kind[i] : 0;
    return rv;
}

/* The CAs in the order a job tries them: as configured, those that
 * refused the domain last. */
apr_array_header_t *cs_drive_ca_order(cs_acme_drive_t *d, const char *refused)
{
    apr_array_header_t *o = apr_array_make(d->jp, d->cas->nelts,
                                           sizeof(drive_ca_t *));
    int i, pass;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < d->cas->nelts; i++) {
            if (cs_drive_in_list(refused, cs_drive_ca_at(d, i)->conf.name)
                == pass) {
                APR_ARRAY_PUSH(o, drive_ca_t *) = cs_drive_ca_at(d, i);
            }
        }
    }
    return o;
}

/* ------------------------------------------------------------------ */
/* The job                                                             */
/* ------------------------------------------------------------------ */

