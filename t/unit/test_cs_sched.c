/*
 * test_cs_sched.c: the renewal scheduler (two thirds of the lifetime read
 * from the certificate, per-certificate jitter, no storm; ARI windows),
 * exponential backoff, the order limiter and RFC 3339 times.
 */
#include <apr_general.h>
#include <apr_strings.h>

#include "cs_sched.h"
#include "unit.h"

static apr_pool_t *pool;

/* 1000 certificates of one lifetime issued at the same second: every
 * renewal falls in [61.7%, 66.7%] of the lifetime, and no tenth of that
 * spread holds more than 15% of them (uniform: 10%). */
static void spread(const char *name, apr_int64_t life)
{
    apr_int64_t nb = 1700000000, lo = nb + life * 617 / 1000 - 1,
                hi = nb + life * 667 / 1000 + 1, at, min = hi, max = lo;
    int bucket[10] = { 0 }, i, inside = 0, worst = 0;

    UNIT_CASE(name);
    for (i = 0; i < 1000; i++) {
        const char *serial = apr_psprintf(pool, "%08x%04x", i * 7919, i);
        at = cs_sched_renew_at(nb, nb + life, serial, 667, 50);
        if (at >= lo && at <= hi) {
            inside++;
        }
        min = at < min ? at : min;
        max = at > max ? at : max;
        bucket[(int)((at - lo) * 10 / (hi - lo + 1))]++;
        /* The same certificate gets the same time, everywhere. */
        if (i < 5) {
            CHECK_EQ_INT(cs_sched_renew_at(nb, nb + life, serial, 667, 50),
                         at);
        }
    }
    CHECK_EQ_INT(inside, 1000);
    CHECK(max - min > (hi - lo) * 9 / 10);
    for (i = 0; i < 10; i++) {
        worst = bucket[i] > worst ? bucket[i] : worst;
    }
    CHECK(worst <= 150);
}

int main(void)
{
    static const struct {
        const char *text;
        apr_int64_t t;
    } times[] = {
        { "2025-01-02T03:04:05Z", 1735787045 },
        { "2025-01-02T03:04:05.123456789Z", 1735787045 },
        { "2025-01-02T04:04:05+01:00", 1735787045 },
        { "2000-02-29T23:59:59z", 951868799 },
    };
    apr_int64_t t, ra;
    cs_rate_t r = { 0, 0, 0 };
    int granted;
    unsigned i;

    apr_initialize();
    apr_pool_create(&pool, NULL);

    /* Lifetimes from the certificate: 90 days, 45 days, 6 days, 2 min. */
    spread("90 days", 90 * 86400);
    spread("45 days", 45 * 86400);
    spread("6 days", 6 * 86400);
    spread("1 hour", 3600);

    UNIT_CASE("two thirds without jitter");
    CHECK_EQ_INT(cs_sched_renew_at(1000, 1000 + 90 * 86400, "ab", 667, 0),
                 1000 + (apr_int64_t)(90 * 86400 * 0.667));
    CHECK_EQ_INT(cs_sched_renew_at(1000, 1000 + 300, "ab", 667, 0),
                 1000 + 200);
    UNIT_CASE("degenerate certificates");
    CHECK_EQ_INT(cs_sched_renew_at(5000, 5000, "ab", 667, 50), 5000);
    CHECK_EQ_INT(cs_sched_renew_at(5000, 4000, "ab", 667, 50), 5000);
    CHECK_EQ_INT(cs_sched_renew_at(0, 1000, "ab", 2000, 0), 1000);
    CHECK(cs_sched_renew_at(0, 1000, NULL, 667, 50) >= 617);

    UNIT_CASE("ARI window");
    t = cs_sched_renew_ari(10000, 20000, "01", 5000);
    CHECK(t >= 10000 && t < 20000);
    CHECK_EQ_INT(cs_sched_renew_ari(10000, 20000, "01", 5000), t);
    CHECK(cs_sched_renew_ari(10000, 20000, "02", 5000)
          != cs_sched_renew_ari(10000, 20000, "03", 5000));
    /* Over already: now.  Inside it: still the chosen point. */
    CHECK_EQ_INT(cs_sched_renew_ari(10000, 20000, "01", 25000), 25000);
    CHECK_EQ_INT(cs_sched_renew_ari(10000, 20000, "01", 15000), t);
    CHECK_EQ_INT(cs_sched_renew_ari(20000, 20000, "01", 5000), -1);
    CHECK_EQ_INT(cs_sched_renew_ari(20000, 10000, "01", 5000), -1);

    UNIT_CASE("backoff");
    CHECK_EQ_INT(cs_sched_backoff(0, 60, 3600), 0);
    CHECK_EQ_INT(cs_sched_backoff(1, 60, 3600), 60);
    CHECK_EQ_INT(cs_sched_backoff(2, 60, 3600), 120);
    CHECK_EQ_INT(cs_sched_backoff(3, 60, 3600), 240);
    CHECK_EQ_INT(cs_sched_backoff(6, 60, 3600), 1920);
    CHECK_EQ_INT(cs_sched_backoff(7, 60, 3600), 3600);
    CHECK_EQ_INT(cs_sched_backoff(1000, 60, 3600), 3600);

    UNIT_CASE("limiter: 3 orders per 10 s");
    for (i = 0; i < 3; i++) {
        cs_sched_rate_take(&r, &granted, &ra, 100 + i, 10, 3);
        CHECK_EQ_INT(granted, 1);
    }
    cs_sched_rate_take(&r, &granted, &ra, 103, 10, 3);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(ra, 7);
    cs_sched_rate_take(&r, &granted, &ra, 109, 10, 3);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(ra, 1);
    cs_sched_rate_take(&r, &granted, &ra, 110, 10, 3);
    CHECK_EQ_INT(granted, 1);
    CHECK_EQ_INT(r.window_start, 110);
    CHECK_EQ_INT(r.count, 1);
    UNIT_CASE("limiter: the CA's Retry-After pauses everyone");
    r.paused_until = 200;
    cs_sched_rate_take(&r, &granted, &ra, 150, 10, 3);
    CHECK_EQ_INT(granted, 0);
    CHECK_EQ_INT(ra, 50);
    cs_sched_rate_take(&r, &granted, &ra, 200, 10, 3);
    CHECK_EQ_INT(granted, 1);
    UNIT_CASE("limiter: clock went back");
    r.paused_until = 0;
    cs_sched_rate_take(&r, &granted, &ra, 10, 10, 3);
    CHECK_EQ_INT(granted, 1);
    CHECK_EQ_INT(r.window_start, 10);

    UNIT_CASE("RFC 3339");
    for (i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        CHECK_EQ_INT(cs_sched_parse_time(&t, times[i].text), APR_SUCCESS);
        CHECK_EQ_INT(t, times[i].t);
    }
    CHECK_EQ_INT(cs_sched_parse_time(&t, "2025-13-02T03:04:05Z"),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_sched_parse_time(&t, "2025-01-02T03:04:05"), APR_EINVAL);
    CHECK_EQ_INT(cs_sched_parse_time(&t, "2025-01-02"), APR_EINVAL);
    CHECK_EQ_INT(cs_sched_parse_time(&t, "2025-01-02T03:04:05Zjunk"),
                 APR_EINVAL);
    CHECK_EQ_INT(cs_sched_parse_time(&t, NULL), APR_EINVAL);

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
