/*
 * test_csy_ondemand.c: a proxy's on-demand table (csy_ondemand.h): one
 * queue entry per name, the rate limit, the negative cache, what the
 * daemon takes and the verdicts it writes back, the table kept bounded
 * under a flood of random names, CertService's answer parsed, and the
 * table shared by forked processes (as httpd's workers and daemon share
 * it).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "csy_ondemand.h"
#include "unit.h"

static apr_pool_t *pool;

#define SEC(n) apr_time_from_sec(n)
#define T0 SEC(1700000000)

static csy_od_t *table(unsigned rate, unsigned burst)
{
    csy_od_t *od = mmap(NULL, sizeof(*od), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (od == MAP_FAILED || csy_od_init(od, rate, burst) != APR_SUCCESS) {
        abort();
    }
    return od;
}

static void drop(csy_od_t *od)
{
    munmap(od, sizeof(*od));
}

static void test_note(void)
{
    csy_od_t *od = table(100, 100);
    apr_array_header_t *names = apr_array_make(pool, 4, sizeof(char *));

    UNIT_CASE("note: a new name is queued once");
    CHECK_EQ_INT(csy_od_note(od, "a.example", T0), CSY_OD_NOTED);
    CHECK_EQ_INT(csy_od_note(od, "a.example", T0), CSY_OD_KNOWN);
    CHECK_EQ_INT(csy_od_state(od, "a.example", T0), CSY_OD_QUEUED);
    CHECK_EQ_INT(csy_od_state(od, "b.example", T0), CSY_OD_FREE);

    UNIT_CASE("take: the daemon takes it once, then it is sent");
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0), 1);
    CHECK_STR(APR_ARRAY_IDX(names, 0, const char *), "a.example");
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0), 0);
    CHECK_EQ_INT(csy_od_state(od, "a.example", T0), CSY_OD_SENT);
    CHECK_EQ_INT(csy_od_note(od, "a.example", T0), CSY_OD_KNOWN);

    UNIT_CASE("accepted: pending until the store has it");
    csy_od_apply(od, "a.example", CSY_OD_V_ACCEPTED, 0, T0);
    CHECK_EQ_INT(csy_od_state(od, "a.example", T0), CSY_OD_PENDING);
    CHECK_EQ_INT(csy_od_note(od, "a.example", T0 + SEC(1)), CSY_OD_KNOWN);
    CHECK_EQ_INT(csy_od_served(od, "a.example"), 1);
    CHECK_EQ_INT(csy_od_state(od, "a.example", T0), CSY_OD_FREE);
    CHECK_EQ_INT(csy_od_served(od, "a.example"), 0);

    UNIT_CASE("pending expires: the name may be asked for again");
    CHECK_EQ_INT(csy_od_note(od, "p.example", T0), CSY_OD_NOTED);
    csy_od_take(od, names, pool, 10, T0);
    csy_od_apply(od, "p.example", CSY_OD_V_ACCEPTED, 0, T0);
    CHECK_EQ_INT(csy_od_note(od, "p.example",
                             T0 + CSY_OD_PENDING_TTL - 1), CSY_OD_KNOWN);
    CHECK_EQ_INT(csy_od_note(od, "p.example", T0 + CSY_OD_PENDING_TTL),
                 CSY_OD_NOTED);
    drop(od);
}

static void test_refused(void)
{
    csy_od_t *od = table(100, 100);
    apr_array_header_t *names = apr_array_make(pool, 4, sizeof(char *));
    csy_od_counters_t c;

    UNIT_CASE("refused: cached for CertService's time, nothing sent");
    csy_od_note(od, "no.example", T0);
    csy_od_take(od, names, pool, 10, T0);
    csy_od_apply(od, "no.example", CSY_OD_V_REFUSED, 60, T0);
    CHECK_EQ_INT(csy_od_note(od, "no.example", T0 + SEC(59)),
                 CSY_OD_NEGATIVE);
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0 + SEC(59)), 0);
    CHECK_EQ_INT(csy_od_note(od, "no.example", T0 + SEC(60)),
                 CSY_OD_NOTED);

    UNIT_CASE("refused without a time: CSY_OD_REFUSED_TTL");
    csy_od_note(od, "no2.example", T0);
    csy_od_take(od, names, pool, 10, T0);
    csy_od_apply(od, "no2.example", CSY_OD_V_REFUSED, 0, T0);
    CHECK_EQ_INT(csy_od_note(od, "no2.example", T0 + CSY_OD_REFUSED_TTL - 1),
                 CSY_OD_NEGATIVE);

    UNIT_CASE("later: queued again, not before the time given");
    csy_od_note(od, "later.example", T0);
    apr_array_clear(names);
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0), 1);
    csy_od_apply(od, "later.example", CSY_OD_V_LATER, 30, T0);
    CHECK_EQ_INT(csy_od_state(od, "later.example", T0), CSY_OD_QUEUED);
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0 + SEC(29)), 0);
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0 + SEC(30)), 1);

    UNIT_CASE("a failed request: every sent name queued again");
    csy_od_requeue_sent(od, T0 + SEC(30));
    CHECK_EQ_INT(csy_od_state(od, "later.example", T0), CSY_OD_QUEUED);
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10, T0 + SEC(30)), 0);
    /* ... with no.example, queued again above. */
    CHECK_EQ_INT(csy_od_take(od, names, pool, 10,
                             T0 + SEC(30) + CSY_OD_RETRY), 2);

    UNIT_CASE("a verdict for a name not sent changes nothing");
    csy_od_note(od, "q.example", T0);
    csy_od_apply(od, "q.example", CSY_OD_V_REFUSED, 60, T0);
    CHECK_EQ_INT(csy_od_state(od, "q.example", T0), CSY_OD_QUEUED);
    csy_od_apply(od, "unknown.example", CSY_OD_V_ACCEPTED, 0, T0);
    CHECK_EQ_INT(csy_od_state(od, "unknown.example", T0), CSY_OD_FREE);

    csy_od_counters(od, &c);
    CHECK_EQ_INT((long long)c.negative, 2);
    CHECK_EQ_INT((long long)c.refused, 2);
    CHECK_EQ_INT((long long)c.deferred, 1);
    CHECK_EQ_INT((long long)c.failed, 1);
    drop(od);
}

static void test_rate(void)
{
    csy_od_t *od = table(10, 20);
    char name[64];
    int i, noted = 0, limited = 0;

    UNIT_CASE("rate: a burst, then rate names per second");
    for (i = 0; i < 100; i++) {
        apr_snprintf(name, sizeof(name), "r%d.example", i);
        switch (csy_od_note(od, name, T0)) {
        case CSY_OD_NOTED: noted++; break;
        case CSY_OD_LIMITED: limited++; break;
        default: break;
        }
    }
    CHECK_EQ_INT(noted, 20);
    CHECK_EQ_INT(limited, 80);
    /* Half a second: 5 more. */
    for (i = 100, noted = 0; i < 200; i++) {
        apr_snprintf(name, sizeof(name), "r%d.example", i);
        noted += csy_od_note(od, name, T0 + SEC(1) / 2) == CSY_OD_NOTED;
    }
    CHECK_EQ_INT(noted, 5);

    UNIT_CASE("rate: a name already known costs no token");
    CHECK_EQ_INT(csy_od_note(od, "r0.example", T0 + SEC(1) / 2),
                 CSY_OD_KNOWN);

    UNIT_CASE("rate: a clock stepped back gives no tokens");
    for (i = 200, noted = 0; i < 300; i++) {
        apr_snprintf(name, sizeof(name), "r%d.example", i);
        noted += csy_od_note(od, name, T0 - SEC(100)) == CSY_OD_NOTED;
    }
    CHECK_EQ_INT(noted, 0);
    drop(od);
}

static void test_flood(void)
{
    csy_od_t *od = table(1000000, 1000000);
    apr_array_header_t *names = apr_array_make(pool, 64, sizeof(char *));
    char name[64];
    int i, j, taken = 0, full = 0, kept;
    csy_od_counters_t c;

    UNIT_CASE("flood: the table stays bounded, refusals give way");
    /* 80 rounds of 1,000 random names (what a daemon sees between two
     * looks at the table under a flood a rate limit lets through), each
     * refused by CertService. */
    for (j = 0; j < 80; j++) {
        for (i = 0; i < 1000; i++) {
            apr_snprintf(name, sizeof(name), "x%d-%d.flood.example", j, i);
            full += csy_od_note(od, name, T0 + SEC(j)) == CSY_OD_FULL;
        }
        apr_array_clear(names);
        while ((i = csy_od_take(od, names, pool, CSY_OD_BATCH,
                                T0 + SEC(j))) > 0) {
            taken += i;
        }
        for (i = 0; i < names->nelts; i++) {
            csy_od_apply(od, APR_ARRAY_IDX(names, i, const char *),
                         CSY_OD_V_REFUSED, 3600, T0 + SEC(j));
        }
    }
    csy_od_counters(od, &c);
    CHECK_EQ_INT(taken, (long long)c.noted);
    CHECK_EQ_INT((long long)(c.noted + c.full), 80000);
    /* Refused names give way to new ones: the table, full of refusals
     * after a few rounds, still takes (almost) every new name. */
    printf("# flood: %d of 80000 names found no slot\n", full);
    CHECK(full < 800);
    drop(od);

    UNIT_CASE("flood: a queued name is never pushed out by refused ones");
    od = table(1000000, 1000000);
    CHECK_EQ_INT(csy_od_note(od, "keep.example", T0), CSY_OD_NOTED);
    for (i = 0; i < 50000; i++) {
        apr_snprintf(name, sizeof(name), "y%d.flood.example", i);
        csy_od_note(od, name, T0);
    }
    kept = csy_od_state(od, "keep.example", T0) == CSY_OD_QUEUED;
    CHECK(kept);
    drop(od);
}

static json_t *load(const char *text)
{
    json_error_t e;

    return json_loads(text, 0, &e);
}

static void test_answer(void)
{
    apr_array_header_t *a;
    const char *err = NULL;
    json_t *j;
    const csy_od_answer_t *x;

    UNIT_CASE("answer: every status");
    j = load("{\"results\": [{\"domain\": \"a.example\", \"status\": "
             "\"issued\"}, {\"domain\": \"b.example\", \"status\": "
             "\"refused\", \"retry_after\": 600}, {\"domain\": "
             "\"c.example\", \"status\": \"limited\", \"retry_after\": 30}, "
             "{\"domain\": \"d.example\", \"status\": \"exists\"}, "
             "{\"domain\": \"e.example\", \"status\": \"teapot\"}, "
             "{\"domain\": \"f.example\", \"status\": \"invalid\", "
             "\"retry_after\": null}]}");
    CHECK_EQ_INT(csy_od_parse_answer(&a, pool, j, &err), APR_SUCCESS);
    json_decref(j);
    CHECK_EQ_INT(a->nelts, 6);
    x = (const csy_od_answer_t *)a->elts;
    CHECK_STR(x[0].name, "a.example");
    CHECK_EQ_INT(x[0].verdict, CSY_OD_V_ACCEPTED);
    CHECK_EQ_INT(x[1].verdict, CSY_OD_V_REFUSED);
    CHECK_EQ_INT(x[1].retry_after, 600);
    CHECK_EQ_INT(x[2].verdict, CSY_OD_V_LATER);
    CHECK_EQ_INT(x[2].retry_after, 30);
    CHECK_EQ_INT(x[3].verdict, CSY_OD_V_ACCEPTED);
    CHECK_EQ_INT(x[4].verdict, CSY_OD_V_UNKNOWN);
    CHECK_EQ_INT(x[5].verdict, CSY_OD_V_REFUSED);
    CHECK_EQ_INT(x[5].retry_after, 0);

    UNIT_CASE("answer: wrong shapes are refused");
    j = load("{\"result\": []}");
    CHECK_EQ_INT(csy_od_parse_answer(&a, pool, j, &err), APR_EINVAL);
    json_decref(j);
    j = load("{\"results\": [{\"domain\": 5, \"status\": \"issued\"}]}");
    CHECK_EQ_INT(csy_od_parse_answer(&a, pool, j, &err), APR_EINVAL);
    json_decref(j);
    j = load("{\"results\": [{\"domain\": \"a.example\", \"status\": "
             "\"issued\", \"retry_after\": \"soon\"}]}");
    CHECK_EQ_INT(csy_od_parse_answer(&a, pool, j, &err), APR_EINVAL);
    json_decref(j);
    CHECK_EQ_INT(csy_od_parse_answer(&a, pool, NULL, &err), APR_EINVAL);
}

static void test_processes(void)
{
    csy_od_t *od = table(1000000, 1000000);
    apr_array_header_t *names = apr_array_make(pool, 64, sizeof(char *));
    pid_t pid[4];
    int i, st, ok = 1, n = 0, got;

    UNIT_CASE("processes: 4 forked writers, each name queued once");
    for (i = 0; i < 4; i++) {
        if ((pid[i] = fork()) == 0) {
            char name[64];
            int k;

            for (k = 0; k < 2000; k++) {
                /* Every process notes the same 500 names, 4 times. */
                snprintf(name, sizeof(name), "n%d.example", k % 500);
                csy_od_note(od, name, T0);
            }
            _exit(0);
        }
    }
    for (i = 0; i < 4; i++) {
        ok &= waitpid(pid[i], &st, 0) == pid[i] && WIFEXITED(st)
              && WEXITSTATUS(st) == 0;
    }
    CHECK(ok);
    while ((got = csy_od_take(od, names, pool, CSY_OD_BATCH, T0)) > 0) {
        n += got;
    }
    CHECK_EQ_INT(n, 500);
    CHECK_EQ_INT((long long)od->count.noted, 500);
    CHECK_EQ_INT((long long)od->count.known, 8000 - 500);

    UNIT_CASE("processes: a holder killed with the lock held");
    if ((pid[0] = fork()) == 0) {
        pthread_mutex_lock(&od->mu);
        _exit(0);               /* dies holding it */
    }
    waitpid(pid[0], &st, 0);
    CHECK_EQ_INT(csy_od_note(od, "after.example", T0), CSY_OD_NOTED);
    drop(od);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_note();
    test_refused();
    test_rate();
    test_flood();
    test_answer();
    test_processes();
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
