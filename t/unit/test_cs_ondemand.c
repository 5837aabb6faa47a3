/*
 * test_cs_ondemand.c: CertService's side of on-demand issuance
 * (cs_ondemand.h): the request read (names normalised, bad ones and
 * wildcards kept for their own answer, duplicates dropped, limits), the
 * ask URL, what the ask's answer means, one refusal event per window, the
 * verdicts in the database as two instances share them, and the
 * fleet-wide budget on the limiter row under its own name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_ondemand.h"
#include "cs_store.h"
#include "testkit.h"
#include "unit.h"

static apr_pool_t *root;
static const char *sqlite_path;

typedef struct {
    apr_pool_t *pool;
    cs_db_t db;
} conn_t;

static conn_t *conn_open(void)
{
    const apr_dbd_driver_t *driver;
    const char *err = NULL;
    apr_pool_t *p;
    conn_t *c;

    apr_pool_create(&p, root);
    c = apr_pcalloc(p, sizeof(*c));
    c->pool = p;
    if (apr_dbd_get_driver(p, "sqlite3", &driver) != APR_SUCCESS
        || apr_dbd_open_ex(driver, p, sqlite_path, &c->db.handle, &err)
           != APR_SUCCESS) {
        fprintf(stderr, "cannot open %s: %s\n", sqlite_path,
                err ? err : "no sqlite3 driver");
        exit(2);
    }
    c->db.driver = driver;
    c->db.prepared = apr_hash_make(p);
    return c;
}

static void conn_close(conn_t *c)
{
    apr_dbd_close(c->db.driver, c->db.handle);
    apr_pool_destroy(c->pool);
}

static int parse(apr_array_header_t **items, const char **host,
                 const char *body, const char **err)
{
    return cs_od_parse_request(items, host, root, body, strlen(body),
                               CS_OD_MAX_NAMES, err);
}

static void test_request(void)
{
    apr_array_header_t *items;
    const char *host, *err = NULL;
    const cs_od_item_t *it;
    char *big;
    int i;

    UNIT_CASE("request: names normalised, bad ones kept, duplicates go");
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": [\"Shop.Example.COM\","
                       " \"shop.example.com\", \"not a name\", "
                       "\"*.wild.example\", \"b\\u00fccher.example\", "
                       "\"1.2.3.4\"], \"host\": \"proxy1\"}", &err), 0);
    CHECK_STR(host, "proxy1");
    CHECK_EQ_INT(items->nelts, 5);
    it = (const cs_od_item_t *)items->elts;
    CHECK_STR(it[0].name, "shop.example.com");
    CHECK(it[1].name == NULL && it[1].why != NULL);
    CHECK_STR(it[1].raw, "not a name");
    CHECK(it[2].name == NULL && strstr(it[2].why, "wildcard") != NULL);
    CHECK_STR(it[3].name, "xn--bcher-kva.example");
    CHECK(it[4].name == NULL);

    UNIT_CASE("request: a NUL inside a name: the JSON reader refuses it");
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": "
                       "[\"a.example\\u0000.evil\"]}", &err), 400);
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": []}", &err), 0);
    CHECK(host == NULL);

    UNIT_CASE("request: wrong shapes");
    CHECK_EQ_INT(parse(&items, &host, "{\"domain\": []}", &err), 400);
    CHECK_EQ_INT(parse(&items, &host, "[\"a.example\"]", &err), 400);
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": [5]}", &err), 400);
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": [], \"host\": 5}",
                       &err), 400);
    CHECK_EQ_INT(parse(&items, &host, "{\"domains\": [\"a.example\"",
                       &err), 400);

    UNIT_CASE("request: more than the limit is 413");
    big = apr_pstrdup(root, "{\"domains\": [\"n0.example\"");
    for (i = 1; i <= CS_OD_MAX_NAMES; i++) {
        big = apr_psprintf(root, "%s, \"n%d.example\"", big, i);
    }
    big = apr_pstrcat(root, big, "]}", NULL);
    CHECK_EQ_INT(parse(&items, &host, big, &err), 413);
}

static void test_ask(void)
{
    UNIT_CASE("ask URL");
    CHECK_STR(cs_od_ask_url(root, "https://app.internal/allow",
                            "shop.example"),
              "https://app.internal/allow?domain=shop.example");
    CHECK_STR(cs_od_ask_url(root, "http://a.internal/x?key=1",
                            "shop.example"),
              "http://a.internal/x?key=1&domain=shop.example");
    CHECK_STR(cs_od_ask_url(root, "http://a.internal/x", "a&b=c d"),
              "http://a.internal/x?domain=a%26b%3Dc%20d");

    UNIT_CASE("ask verdict: 200 only");
    CHECK_EQ_INT(cs_od_ask_allows(APR_SUCCESS, 200), 1);
    CHECK_EQ_INT(cs_od_ask_allows(APR_SUCCESS, 204), 0);
    CHECK_EQ_INT(cs_od_ask_allows(APR_SUCCESS, 403), 0);
    CHECK_EQ_INT(cs_od_ask_allows(APR_SUCCESS, 500), 0);
    CHECK_EQ_INT(cs_od_ask_allows(APR_TIMEUP, 200), 0);
    CHECK_EQ_INT(cs_od_ask_allows(APR_EGENERAL, 0), 0);

    UNIT_CASE("events: one per name and window");
    CHECK_STR(cs_od_event_discriminator(root, 7200, 3600),
              cs_od_event_discriminator(root, 10799, 3600));
    CHECK(strcmp(cs_od_event_discriminator(root, 10799, 3600),
                 cs_od_event_discriminator(root, 10800, 3600)) != 0);
    CHECK_STR(cs_od_event_discriminator(root, 5, 0), "on-demand@5");
}

static void test_store(void)
{
    conn_t *a = conn_open(), *b = conn_open();
    cs_od_row_t *row;
    apr_int64_t n, retry;
    int granted, i, got;

    CHECK_EQ_INT(cs_store_schema(&a->db, a->pool), APR_SUCCESS);

    UNIT_CASE("verdicts: unknown, put, read by another connection");
    CHECK_EQ_INT(cs_od_get(&row, &a->db, a->pool, "x.example"),
                 APR_NOTFOUND);
    CHECK_EQ_INT(cs_od_put(&a->db, a->pool, "x.example", CS_OD_REFUSED,
                           2000, "the ask answered HTTP 403", 1000),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_od_get(&row, &b->db, b->pool, "x.example"),
                 APR_SUCCESS);
    CHECK_STR(row->verdict, CS_OD_REFUSED);
    CHECK_EQ_INT(row->until, 2000);
    CHECK_EQ_INT(row->asked, 1000);
    CHECK_STR(row->reason, "the ask answered HTTP 403");

    UNIT_CASE("verdicts: replaced, by the other instance");
    CHECK_EQ_INT(cs_od_put(&b->db, b->pool, "x.example", CS_OD_ALLOWED,
                           5000, NULL, 3000), APR_SUCCESS);
    CHECK_EQ_INT(cs_od_get(&row, &a->db, a->pool, "x.example"),
                 APR_SUCCESS);
    CHECK_STR(row->verdict, CS_OD_ALLOWED);
    CHECK(row->reason == NULL);
    CHECK_EQ_INT(cs_od_count(&n, &a->db, a->pool, CS_OD_ALLOWED),
                 APR_SUCCESS);
    CHECK_EQ_INT(n, 1);

    UNIT_CASE("verdicts: a long reason is cut, not refused");
    CHECK_EQ_INT(cs_od_put(&a->db, a->pool, "y.example", CS_OD_REFUSED,
                           2000, apr_psprintf(a->pool, "%0600d", 7), 1000),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_od_get(&row, &a->db, a->pool, "y.example"),
                 APR_SUCCESS);
    CHECK_EQ_INT((long long)strlen(row->reason), 255);

    UNIT_CASE("verdicts: purge drops the expired only");
    CHECK_EQ_INT(cs_od_purge(&a->db, a->pool, 3000), APR_SUCCESS);
    CHECK_EQ_INT(cs_od_get(&row, &a->db, a->pool, "y.example"),
                 APR_NOTFOUND);
    CHECK_EQ_INT(cs_od_get(&row, &a->db, a->pool, "x.example"),
                 APR_SUCCESS);

    UNIT_CASE("budget: the limiter row under its own name, both instances");
    for (i = 0, got = 0; i < 10; i++) {
        conn_t *c = i % 2 ? a : b;

        CHECK_EQ_INT(cs_store_rate_take(&granted, &retry, &c->db, c->pool,
                                        CS_OD_LIMITER, 100000, 60, 3, 0),
                     APR_SUCCESS);
        got += granted;
    }
    CHECK_EQ_INT(got, 3);
    /* The ACME order limiter is another row: untouched. */
    CHECK_EQ_INT(cs_store_rate_take(&granted, &retry, &a->db, a->pool,
                                    "orders", 100000, 60, 1, 0),
                 APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    /* The next window gives again. */
    CHECK_EQ_INT(cs_store_rate_take(&granted, &retry, &a->db, a->pool,
                                    CS_OD_LIMITER, 100060, 60, 3, 0),
                 APR_SUCCESS);
    CHECK_EQ_INT(granted, 1);
    conn_close(a);
    conn_close(b);
}

int main(void)
{
    int rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((sqlite_path = testkit_tmpfile(root, "cs_ondemand_test_")) == NULL) {
        return 2;
    }
    apr_dbd_init(root);
    test_request();
    test_ask();
    test_store();
    rc = unit_summary();
    unlink(sqlite_path);
    unlink(apr_pstrcat(root, sqlite_path, "-wal", NULL));
    unlink(apr_pstrcat(root, sqlite_path, "-shm", NULL));
    apr_pool_destroy(root);
    return rc;
}
