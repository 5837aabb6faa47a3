/*
 * cs_sched.c: renewal times, backoff and the order limiter (cs_sched.h).
 */
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <openssl/sha.h>

#include "cs_sched.h"

double cs_sched_jitter(const char *serial)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    apr_uint32_t v;

    if (!serial) {
        serial = "";
    }
    SHA256((const unsigned char *)serial, strlen(serial), md);
    v = ((apr_uint32_t)md[0] << 24) | ((apr_uint32_t)md[1] << 16)
        | ((apr_uint32_t)md[2] << 8) | md[3];
    return (double)v / 4294967296.0;
}

apr_int64_t cs_sched_renew_at(apr_int64_t not_before, apr_int64_t not_after,
                              const char *serial, int fraction_pm,
                              int spread_pm)
{
    apr_int64_t life = not_after - not_before, at;
    double f;

    if (life <= 0) {
        return not_before;
    }
    f = (fraction_pm - spread_pm * cs_sched_jitter(serial)) / 1000.0;
    if (f < 0) {
        f = 0;
    }
    at = not_before + (apr_int64_t)((double)life * f);
    return at > not_after ? not_after : at;
}

apr_int64_t cs_sched_renew_ari(apr_int64_t start, apr_int64_t end,
                               const char *serial, apr_int64_t now)
{
    apr_int64_t at;

    if (end <= start) {
        return -1;
    }
    if (end <= now) {
        return now;
    }
    at = start + (apr_int64_t)((double)(end - start)
                               * cs_sched_jitter(serial));
    return at;
}

apr_int64_t cs_sched_backoff(int attempts, apr_int64_t base,
                             apr_int64_t cap)
{
    apr_int64_t d = base;
    int i;

    if (attempts <= 0) {
        return 0;
    }
    for (i = 1; i < attempts && d < cap; i++) {
        d *= 2;
    }
    return d > cap ? cap : d;
}

void cs_sched_rate_take(cs_rate_t *r, int *granted, apr_int64_t *retry_after,
                        apr_int64_t now, apr_int64_t window, int limit)
{
    *granted = 0;
    if (r->paused_until > now) {
        *retry_after = r->paused_until - now;
        return;
    }
    /* A clock that went back more than a window, or a new window. */
    if (now >= r->window_start + window || now < r->window_start - window) {
        r->window_start = now;
        r->count = 0;
    }
    if (r->count < limit) {
        r->count++;
        *granted = 1;
        *retry_after = 0;
        return;
    }
    *retry_after = r->window_start + window - now;
    if (*retry_after < 1) {
        *retry_after = 1;
    }
}

/* n digits at s, or -1. */
static int digits(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (!apr_isdigit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static apr_int64_t days_from_civil(apr_int64_t y, int m, int d)
{
    apr_int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

apr_status_t cs_sched_parse_time(apr_int64_t *t, const char *s)
{
    int y, mo, d, h, mi, se, oh, om, sign;
    const char *z;

    if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-'
        || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':'
        || s[16] != ':') {
        return APR_EINVAL;
    }
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23
        || mi < 0 || mi > 59 || se < 0 || se > 60) {
        return APR_EINVAL;
    }
    z = s + 19;
    if (*z == '.') {
        for (z++; apr_isdigit(*z); z++) {
            ;
        }
    }
    if ((*z == 'Z' || *z == 'z') && !z[1]) {
        oh = om = 0;
        sign = 1;
    }
    else if ((*z == '+' || *z == '-') && strlen(z) == 6 && z[3] == ':'
             && (oh = digits(z + 1, 2)) >= 0 && (om = digits(z + 4, 2)) >= 0
             && oh < 24 && om < 60) {
        sign = *z == '+' ? 1 : -1;
    }
    else {
        return APR_EINVAL;
    }
    *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
         - sign * (oh * 3600 + om * 60);
    return APR_SUCCESS;
}

apr_int64_t cs_sched_deadline(const cs_sched_job_t *job)
{
    apr_int64_t life = job->not_after - job->not_before;

    if (job->not_after <= 0 || life <= 0) {
        return job->queued_at;
    }
    return job->not_before + life / 1000 * CS_SCHED_URGENT_PM
           + life % 1000 * CS_SCHED_URGENT_PM / 1000;
}

typedef struct {
    apr_int64_t deadline;
    int index;
} sched_key_t;

static int key_cmp(const void *a, const void *b)
{
    const sched_key_t *x = a, *y = b;

    if (x->deadline != y->deadline) {
        return x->deadline < y->deadline ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

void cs_sched_order(int *idx, const cs_sched_job_t *jobs, int n)
{
    sched_key_t *k;
    int i;

    if (n <= 0) {
        return;
    }
    if (!(k = malloc((size_t)n * sizeof(*k)))) {
        /* No memory: the queue's own order. */
        for (i = 0; i < n; i++) {
            idx[i] = i;
        }
        return;
    }
    for (i = 0; i < n; i++) {
        k[i].deadline = cs_sched_deadline(&jobs[i]);
        k[i].index = i;
    }
    qsort(k, (size_t)n, sizeof(*k), key_cmp);
    for (i = 0; i < n; i++) {
        idx[i] = k[i].index;
    }
    free(k);
}

int cs_sched_budgets(int ari_replaces)
{
    if (ari_replaces) {
        return CS_SCHED_BUDGET_GLOBAL;
    }
    return CS_SCHED_BUDGET_GLOBAL | CS_SCHED_BUDGET_ACCOUNT
           | CS_SCHED_BUDGET_DOMAIN;
}
