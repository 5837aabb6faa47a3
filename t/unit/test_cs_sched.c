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

/* The queue's order under budgets, simulated minute by minute: 1,000
 * queued domains (700 new, 300 renewals of 6-day certificates whose
 * deadlines fall in the next 100 minutes, 50 of them ARI renewals), 40
 * more new domains a minute for an hour (more than the budget), a
 * budget of 30 new orders a minute per account and 60 in all. */
#define SIM_T0      1700000000
#define SIM_JOBS    (1000 + 60 * 40)
#define SIM_LIFE    (6 * 86400)

static void queue_sim(void)
{
    static cs_sched_job_t jobs[SIM_JOBS];
    static int ari[SIM_JOBS], idx[SIM_JOBS], waiting[SIM_JOBS];
    static apr_int64_t served[SIM_JOBS];
    cs_sched_job_t wait_jobs[SIM_JOBS];
    cs_rate_t account = { 0, 0, 0 }, global = { 0, 0, 0 };
    apr_int64_t now, ra, last_deadline = 0, worst_new = 0, worst_late = 0;
    int n = 0, i, k, m, granted, in_minute, ari_minute, first_new = 0;
    int budget_ok = 1, order_ok = 1, all_served = 1, ari_last = 0;

    for (i = 0; i < 700; i++, n++) {
        jobs[n].queued_at = SIM_T0 - 700 + i;
    }
    for (i = 0; i < 300; i++, n++) {
        /* Deadline (5/6 of the lifetime) at SIM_T0 + 20 s * i. */
        jobs[n].not_before = SIM_T0 + 20 * i - SIM_LIFE / 6 * 5;
        jobs[n].not_after = jobs[n].not_before + SIM_LIFE;
        jobs[n].queued_at = jobs[n].not_before + SIM_LIFE / 3 * 2;
        ari[n] = i % 6 == 0;
    }
    for (i = 0; i < SIM_JOBS; i++) {
        served[i] = -1;
    }
    for (m = 0; m < 150; m++) {
        now = SIM_T0 + 60 * m;
        if (m < 60) {
            for (i = 0; i < 40; i++, n++) {
                jobs[n].queued_at = now + i;
            }
        }
        /* The waiting jobs, in the scheduler's order. */
        for (i = k = 0; i < n; i++) {
            if (served[i] < 0 && jobs[i].queued_at <= now + 59) {
                waiting[k] = i;
                wait_jobs[k++] = jobs[i];
            }
        }
        cs_sched_order(idx, wait_jobs, k);
        in_minute = ari_minute = 0;
        for (i = 0; i < k; i++) {
            int j = waiting[idx[i]], mask = cs_sched_budgets(ari[j]);

            if (mask & CS_SCHED_BUDGET_ACCOUNT) {
                if (account.window_start + 60 > now
                    && account.count >= 30) {
                    continue;
                }
            }
            cs_sched_rate_take(&global, &granted, &ra, now, 60, 60);
            if (!granted) {
                break;
            }
            if (mask & CS_SCHED_BUDGET_ACCOUNT) {
                cs_sched_rate_take(&account, &granted, &ra, now, 60, 30);
                in_minute++;
            }
            else {
                ari_minute++;
                ari_last = m;
            }
            served[j] = now;
            if (m == 0 && i < 30 && jobs[j].not_after == 0) {
                first_new++;
            }
            if (jobs[j].not_after == 0 && now - jobs[j].queued_at
                                           > worst_new) {
                worst_new = now - jobs[j].queued_at;
            }
            if (jobs[j].not_after && !ari[j]) {
                /* Its deadline by the test's own reckoning. */
                apr_int64_t dl = jobs[j].not_before + SIM_LIFE / 6 * 5;

                /* Renewals go in the order of their deadlines. */
                if (dl < last_deadline) {
                    order_ok = 0;
                }
                last_deadline = dl;
                if (now - dl > worst_late) {
                    worst_late = now - dl;
                }
                if (now >= jobs[j].not_after) {
                    all_served = 0;
                }
            }
        }
        if (in_minute > 30 || in_minute + ari_minute > 60) {
            budget_ok = 0;
        }
    }
    for (i = 0; i < n; i++) {
        if (served[i] < 0) {
            all_served = 0;
        }
    }
    UNIT_CASE("queue: 3,400 domains, 30 new orders a minute: budget held");
    CHECK(budget_ok);
    UNIT_CASE("queue: new domains first while no renewal is urgent");
    CHECK_EQ_INT(first_new, 30);
    UNIT_CASE("queue: renewals by their deadlines, none late past expiry");
    CHECK(order_ok);
    CHECK(all_served);
    /* A renewal waits only for the new domains queued before its
     * deadline: 700 + 10 more a minute of backlog, at most 43 minutes
     * (new domains strictly first: 103). */
    CHECK(worst_late < 50 * 60);
    UNIT_CASE("queue: nothing starves (every new domain within 2.5 h)");
    CHECK(worst_new < 150 * 60);
    UNIT_CASE("queue: ARI renewals outside the new-order budget");
    /* All 50 were due at the start: 30 beside the 30 new orders of the
     * first minute (60 in all), 20 in the second, while new domains use
     * up the account's budget. */
    CHECK_EQ_INT(ari_last, 1);
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

    queue_sim();

    UNIT_CASE("deadline: new by queue time, renewals at 5/6 of lifetime");
    {
        cs_sched_job_t j = { 123, 0, 0 };

        CHECK_EQ_INT(cs_sched_deadline(&j), 123);
        j.not_before = 1000;
        j.not_after = 1000 + 6000;
        CHECK_EQ_INT(cs_sched_deadline(&j), 1000 + 4998);
        CHECK_EQ_INT(cs_sched_budgets(1), CS_SCHED_BUDGET_GLOBAL);
        CHECK_EQ_INT(cs_sched_budgets(0), CS_SCHED_BUDGET_GLOBAL
                     | CS_SCHED_BUDGET_ACCOUNT | CS_SCHED_BUDGET_DOMAIN);
    }

    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
