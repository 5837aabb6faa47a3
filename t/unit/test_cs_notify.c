/*
 * test_cs_notify.c: unit tests of CertService's notifications
 * (cs_notify.h): the signature against OpenSSL's own HMAC and a known
 * answer, event ids, the CA's problem document taken from an error text,
 * the JSON body, the backoff and give-up decisions, and the outbox on a
 * real SQLite database: an event recorded twice is one row, a row is
 * claimed by one of several forked workers (each on its own connection,
 * as several CertService instances would be) and so delivered exactly
 * once, retries wait, the expiry scan tells each certificate once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cs_db.h"
#include "cs_notify.h"
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

/* ------------------------------------------------------------------ */
/* Pure decisions                                                      */
/* ------------------------------------------------------------------ */

static void test_sign(void)
{
    static const char secret[] = "s3cret-key";
    static const char body[] = "{\"a\":1}";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    char want[7 + 2 * EVP_MAX_MD_SIZE + 1];
    const char *msg = "1700000000.{\"a\":1}";
    const char *got;

    UNIT_CASE("signature: known answer");
    got = cs_notify_sign(root, (const unsigned char *)secret,
                         strlen(secret), "1700000000", body, strlen(body));
    /* printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256
     *     -hmac s3cret-key */
    CHECK_STR(got, "sha256=8f205229f41e37cd3099c55f73d92a9a4d4c67bd7ae337b8"
                   "02d1723bd83a2a50");

    UNIT_CASE("signature: equals OpenSSL's one-shot HMAC over t.body");
    HMAC(EVP_sha256(), secret, (int)strlen(secret),
         (const unsigned char *)msg, strlen(msg), md, &n);
    strcpy(want, "sha256=");
    for (i = 0; i < n; i++) {
        sprintf(want + 7 + 2 * i, "%02x", md[i]);
    }
    CHECK_STR(got, want);

    UNIT_CASE("signature: the timestamp is signed (no replay with a new one)");
    CHECK(strcmp(got, cs_notify_sign(root, (const unsigned char *)secret,
                                     strlen(secret), "1700000001", body,
                                     strlen(body))) != 0);
    CHECK(strcmp(got, cs_notify_sign(root, (const unsigned char *)"other",
                                     5, "1700000000", body,
                                     strlen(body))) != 0);
    /* A body with a NUL inside is signed whole (length, not strlen). */
    CHECK(strcmp(cs_notify_sign(root, (const unsigned char *)secret, 3,
                                "1", "ab\0c", 4),
                 cs_notify_sign(root, (const unsigned char *)secret, 3,
                                "1", "ab\0d", 4)) != 0);
}

static void test_ids(void)
{
    const char *a, *b;

    UNIT_CASE("event ids: stable, distinct, 32 hex digits");
    a = cs_notify_event_id(root, "issued", "a.example", "0a1b");
    b = cs_notify_event_id(root, "issued", "a.example", "0a1b");
    CHECK_STR(a, b);
    CHECK_EQ_INT(strlen(a), 32);
    CHECK_EQ_INT(strspn(a, "0123456789abcdef"), 32);
    CHECK(strcmp(a, cs_notify_event_id(root, "renewed", "a.example",
                                       "0a1b")) != 0);
    CHECK(strcmp(a, cs_notify_event_id(root, "issued", "b.example",
                                       "0a1b")) != 0);
    /* The separators keep ("ab", "c") apart from ("a", "bc"). */
    CHECK(strcmp(cs_notify_event_id(root, "issued", "ab", "c"),
                 cs_notify_event_id(root, "issued", "a", "bc")) != 0);
    CHECK(cs_notify_type_known("expiring"));
    CHECK(cs_notify_type_known("on-demand-refused"));
    CHECK(cs_notify_type_known("moved"));
    CHECK(!cs_notify_type_known("bogus"));
    CHECK(!cs_notify_type_known(NULL));
}

static void test_problem(void)
{
    const char *s;
    json_t *j;

    UNIT_CASE("problem: an error answer with subproblems");
    s = cs_notify_problem(root, "new order: urn:ietf:params:acme:error:"
                          "rejectedIdentifier: Error creating new order: "
                          "x (y) (HTTP 400); urn:ietf:params:acme:error:"
                          "caa: CAA forbids; urn:ietf:params:acme:error:"
                          "dns: NXDOMAIN");
    CHECK(s != NULL);
    j = json_loads(s ? s : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "type")),
              "urn:ietf:params:acme:error:rejectedIdentifier");
    CHECK_STR(json_string_value(json_object_get(j, "detail")),
              "Error creating new order: x (y)");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "status")), 400);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "subproblems")), 2);
    CHECK_STR(json_string_value(json_object_get(
                  json_array_get(json_object_get(j, "subproblems"), 1),
                  "detail")), "NXDOMAIN");
    json_decref(j);

    UNIT_CASE("problem: a failed validation (the challenge's error)");
    s = cs_notify_problem(root, "validation of x.test failed: "
                          "urn:ietf:params:acme:error:connection: "
                          "127.0.0.2: Fetching http://x.test/: refused");
    j = json_loads(s ? s : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "type")),
              "urn:ietf:params:acme:error:connection");
    CHECK_STR(json_string_value(json_object_get(j, "detail")),
              "127.0.0.2: Fetching http://x.test/: refused");
    CHECK(json_object_get(j, "status") == NULL);
    json_decref(j);

    UNIT_CASE("problem: none in a connection error or the pre-check");
    CHECK(cs_notify_problem(root, "GET https://ca/dir: Connection "
                            "refused") == NULL);
    CHECK(cs_notify_problem(root, NULL) == NULL);
    CHECK(cs_notify_problem(root, "urn:ietf:params:acme:error:") == NULL);
}

static void test_json(void)
{
    cs_event_t ev;
    const char *s;
    json_t *j;

    UNIT_CASE("event JSON: the fields, the problem as an object");
    memset(&ev, 0, sizeof(ev));
    ev.type = CS_EVENT_FAILED;
    ev.domain = "a.example";
    ev.error = "validation failed: urn:ietf:params:acme:error:dns: no";
    ev.problem = cs_notify_problem(root, ev.error);
    ev.attempts = 3;
    ev.time = 1700000000;
    s = cs_notify_event_json(root, "abc", &ev);
    j = json_loads(s ? s : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "id")), "abc");
    CHECK_STR(json_string_value(json_object_get(j, "type")), "failed");
    CHECK_STR(json_string_value(json_object_get(j, "domain")), "a.example");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "time")), 1700000000);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "attempts")), 3);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "problem"),
                                                "type")),
              "urn:ietf:params:acme:error:dns");
    CHECK(json_object_get(j, "serial") == NULL);
    json_decref(j);
    /* Compact, keys sorted: the same event is the same bytes. */
    CHECK(strncmp(s, "{\"attempts\":3,\"domain\":", 23) == 0);
}

static void test_decide(void)
{
    cs_notify_next_t n;
    int i;

    UNIT_CASE("decide: delivered");
    cs_notify_decide(&n, 2, CS_DELIVERY_OK, 200, 0, 1000);
    CHECK_STR(n.state, "sent");
    CHECK_EQ_INT(n.attempts, 2);

    UNIT_CASE("decide: 503 and no answer are retried, doubling");
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 503, 0, 1000);
    CHECK_STR(n.state, "pending");
    CHECK_EQ_INT(n.attempts, 1);
    CHECK_EQ_INT(n.next_at, 1000 + CS_NOTIFY_BACKOFF);
    cs_notify_decide(&n, 1, CS_DELIVERY_UNREACHABLE, 0, 0, 1000);
    CHECK_EQ_INT(n.next_at, 1000 + 2 * CS_NOTIFY_BACKOFF);
    cs_notify_decide(&n, 2, CS_DELIVERY_EXIT, 0, 0, 1000);
    CHECK_STR(n.state, "pending");
    CHECK_EQ_INT(n.next_at, 1000 + 4 * CS_NOTIFY_BACKOFF);
    cs_notify_decide(&n, 12, CS_DELIVERY_STATUS, 500, 0, 1000);
    CHECK_EQ_INT(n.next_at, 1000 + CS_NOTIFY_BACKOFF_CAP);
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 429, 0, 1000);
    CHECK_STR(n.state, "pending");
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 408, 0, 1000);
    CHECK_STR(n.state, "pending");

    UNIT_CASE("decide: Retry-After is honoured, bounded by the cap");
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 503, 300, 1000);
    CHECK_EQ_INT(n.next_at, 1300);
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 429, 999999, 1000);
    CHECK_EQ_INT(n.next_at, 1000 + CS_NOTIFY_BACKOFF_CAP);

    UNIT_CASE("decide: a 4xx refusal is final, and so is the last attempt");
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 401, 0, 1000);
    CHECK_STR(n.state, "dead");
    CHECK_EQ_INT(n.attempts, 1);
    cs_notify_decide(&n, 0, CS_DELIVERY_STATUS, 302, 0, 1000);
    CHECK_STR(n.state, "dead");
    for (i = 0; i < CS_NOTIFY_MAX_ATTEMPTS; i++) {
        cs_notify_decide(&n, i, CS_DELIVERY_UNREACHABLE, 0, 0, 1000);
        if (strcmp(n.state, "pending") != 0) {
            break;
        }
    }
    CHECK_STR(n.state, "dead");
    CHECK_EQ_INT(n.attempts, CS_NOTIFY_MAX_ATTEMPTS);
}

/* ------------------------------------------------------------------ */
/* The outbox on SQLite                                                */
/* ------------------------------------------------------------------ */

static apr_array_header_t *sinks(apr_pool_t *p, int both)
{
    apr_array_header_t *a = apr_array_make(p, 2, sizeof(const char *));

    APR_ARRAY_PUSH(a, const char *) = CS_SINK_WEBHOOK;
    if (both) {
        APR_ARRAY_PUSH(a, const char *) = CS_SINK_CMD;
    }
    return a;
}

static cs_event_t event(const char *type, const char *domain,
                        const char *serial, apr_int64_t now)
{
    cs_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.domain = domain;
    ev.serial = serial;
    ev.not_after = now + 86400;
    ev.time = now;
    return ev;
}

static void test_outbox(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    apr_array_header_t *rows;
    cs_outbox_t *row;
    cs_notify_next_t next;
    cs_event_t ev;
    const char *id, *id2;
    apr_int64_t now = 1700000000, count;
    int added, claimed;

    UNIT_CASE("outbox: schema");
    CHECK_EQ_INT(cs_store_schema(&c->db, p), APR_SUCCESS);

    UNIT_CASE("outbox: an event recorded twice is one row per sink");
    ev = event(CS_EVENT_ISSUED, "a.example", "01ab", now);
    CHECK_EQ_INT(cs_notify_record(&added, &id, &c->db, p, &ev, "01ab",
                                  sinks(p, 1)), APR_SUCCESS);
    CHECK_EQ_INT(added, 2);
    CHECK_EQ_INT(cs_notify_record(&added, &id2, &c->db, p, &ev, "01ab",
                                  sinks(p, 1)), APR_SUCCESS);
    CHECK_EQ_INT(added, 0);
    CHECK_STR(id, id2);
    CHECK_EQ_INT(cs_notify_count(&count, &c->db, p, "pending"),
                 APR_SUCCESS);
    CHECK_EQ_INT(count, 2);
    CHECK_EQ_INT(cs_notify_get(&row, &c->db, p, id, CS_SINK_WEBHOOK),
                 APR_SUCCESS);
    CHECK_STR(row->type, "issued");
    CHECK_STR(row->serial, "01ab");
    CHECK(strstr(row->body, id) != NULL);
    ev.type = "bogus";
    CHECK_EQ_INT(cs_notify_record(&added, NULL, &c->db, p, &ev, "x",
                                  sinks(p, 0)), APR_EINVAL);

    UNIT_CASE("outbox: due, claimed once, a retry waits");
    CHECK_EQ_INT(cs_notify_due(&rows, &c->db, p, now, 10), APR_SUCCESS);
    CHECK_EQ_INT(rows->nelts, 2);
    CHECK_EQ_INT(cs_notify_claim(&claimed, &c->db, p, id, CS_SINK_WEBHOOK,
                                 "w1", now, 60), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 1);
    CHECK_EQ_INT(cs_notify_claim(&claimed, &c->db, p, id, CS_SINK_WEBHOOK,
                                 "w2", now, 60), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 0);
    CHECK_EQ_INT(cs_notify_due(&rows, &c->db, p, now, 10), APR_SUCCESS);
    CHECK_EQ_INT(rows->nelts, 1);
    cs_notify_decide(&next, 0, CS_DELIVERY_STATUS, 503, 0, now);
    CHECK_EQ_INT(cs_notify_finish(&c->db, p, id, CS_SINK_WEBHOOK, "w1",
                                  &next, "HTTP 503", now), APR_SUCCESS);
    CHECK_EQ_INT(cs_notify_due(&rows, &c->db, p, now + 29, 10),
                 APR_SUCCESS);
    CHECK_EQ_INT(rows->nelts, 1);
    CHECK_EQ_INT(cs_notify_due(&rows, &c->db, p, now + 30, 10),
                 APR_SUCCESS);
    CHECK_EQ_INT(rows->nelts, 2);
    CHECK_EQ_INT(cs_notify_get(&row, &c->db, p, id, CS_SINK_WEBHOOK),
                 APR_SUCCESS);
    CHECK_EQ_INT(row->attempts, 1);
    CHECK_STR(row->last_error, "HTTP 503");

    UNIT_CASE("outbox: a claim that expired (a dead worker) is taken over");
    CHECK_EQ_INT(cs_notify_claim(&claimed, &c->db, p, id, CS_SINK_CMD,
                                 "w1", now, 60), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 1);
    CHECK_EQ_INT(cs_notify_claim(&claimed, &c->db, p, id, CS_SINK_CMD,
                                 "w2", now + 59, 60), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 0);
    CHECK_EQ_INT(cs_notify_claim(&claimed, &c->db, p, id, CS_SINK_CMD,
                                 "w2", now + 61, 60), APR_SUCCESS);
    CHECK_EQ_INT(claimed, 1);
    /* The first worker's late finish does not undo the second's claim. */
    cs_notify_decide(&next, 0, CS_DELIVERY_OK, 200, 0, now);
    CHECK_EQ_INT(cs_notify_finish(&c->db, p, id, CS_SINK_CMD, "w1", &next,
                                  NULL, now + 62), APR_SUCCESS);
    CHECK_EQ_INT(cs_notify_get(&row, &c->db, p, id, CS_SINK_CMD),
                 APR_SUCCESS);
    CHECK_STR(row->state, "pending");
    CHECK_EQ_INT(cs_notify_finish(&c->db, p, id, CS_SINK_CMD, "w2", &next,
                                  NULL, now + 62), APR_SUCCESS);
    CHECK_EQ_INT(cs_notify_get(&row, &c->db, p, id, CS_SINK_CMD),
                 APR_SUCCESS);
    CHECK_STR(row->state, "sent");
    CHECK_EQ_INT(cs_notify_due(&rows, &c->db, p, now + 1000, 10),
                 APR_SUCCESS);
    CHECK_EQ_INT(rows->nelts, 1);

    UNIT_CASE("outbox: purge keeps what is pending or recent");
    CHECK_EQ_INT(cs_notify_purge(&c->db, p, now + 86400 + 10, 60),
                 APR_SUCCESS);
    CHECK_EQ_INT(cs_notify_count(&count, &c->db, p, "sent"), APR_SUCCESS);
    CHECK_EQ_INT(count, 0);
    CHECK_EQ_INT(cs_notify_count(&count, &c->db, p, "pending"),
                 APR_SUCCESS);
    CHECK_EQ_INT(count, 1);
    conn_close(c);
}

/* A domain with a certificate valid [nb, na). */
static void put_domain(conn_t *c, const char *domain, const char *serial,
                       apr_int64_t nb, apr_int64_t na)
{
    cs_bundle_t b;

    memset(&b, 0, sizeof(b));
    b.domain = domain;
    b.state = "active";
    b.serial = serial;
    b.not_before = nb;
    b.not_after = na;
    b.key_type = "ec-p256";
    b.chain_pem = "PEM";
    b.key_cms = "CMS";
    CHECK_EQ_INT(cs_store_put_bundle(&c->db, c->pool, &b, "test"),
                 APR_SUCCESS);
}

static void test_expiring(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    apr_int64_t now = 1800000000;
    int added;

    UNIT_CASE("expiring: within the window, once per certificate");
    put_domain(c, "soon.example", "a1", now - 80 * 86400, now + 3 * 86400);
    put_domain(c, "later.example", "b1", now - 10 * 86400, now + 60 * 86400);
    put_domain(c, "gone.example", "c1", now - 90 * 86400, now - 60);
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p, now, 7 * 86400,
                                         0, sinks(p, 0), 100), APR_SUCCESS);
    CHECK_EQ_INT(added, 2);
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p, now + 60,
                                         7 * 86400, 0, sinks(p, 0), 100),
                 APR_SUCCESS);
    CHECK_EQ_INT(added, 0);

    UNIT_CASE("expiring: a renewal's certificate is told again when due");
    put_domain(c, "soon.example", "a2", now, now + 90 * 86400);
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p, now, 7 * 86400,
                                         0, sinks(p, 0), 100), APR_SUCCESS);
    CHECK_EQ_INT(added, 0);
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p,
                                         now + 85 * 86400, 7 * 86400, 0,
                                         sinks(p, 0), 100), APR_SUCCESS);
    /* a2 now; later.example (b1) expired by then */
    CHECK_EQ_INT(added, 2);

    UNIT_CASE("expiring: by the share of the lifetime left");
    put_domain(c, "short.example", "d1", now, now + 160 * 3600);
    /* 10% of 160 h is 16 h. */
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p,
                                         now + 143 * 3600, 0, 10,
                                         sinks(p, 0), 100), APR_SUCCESS);
    CHECK_EQ_INT(added, 0);
    CHECK_EQ_INT(cs_notify_scan_expiring(&added, &c->db, p,
                                         now + 144 * 3600, 0, 10,
                                         sinks(p, 0), 100), APR_SUCCESS);
    CHECK_EQ_INT(added, 1);
    conn_close(c);
}

/* Several processes, each on its own connection, deliver everything that
 * is due; a shared counter per row proves each was delivered once. */
#define N_EVENTS    60
#define N_WORKERS   4

static void worker(int w, const char **ids, int *delivered)
{
    conn_t *c;
    apr_array_header_t *rows;
    cs_notify_next_t next;
    const char *owner;
    int i, k, claimed, idle = 0;

    root = NULL;
    apr_pool_create(&root, NULL);
    c = conn_open();
    owner = apr_psprintf(c->pool, "w%d", w);
    while (idle < 3) {
        if (cs_notify_due(&rows, &c->db, c->pool, 1700000000, 8)
            || !rows->nelts) {
            idle++;
            usleep(20000);
            continue;
        }
        idle = 0;
        for (i = 0; i < rows->nelts; i++) {
            const cs_outbox_t *o = &APR_ARRAY_IDX(rows, i, cs_outbox_t);

            if (cs_notify_claim(&claimed, &c->db, c->pool, o->id, o->sink,
                                owner, 1700000000, 60) || !claimed) {
                continue;
            }
            for (k = 0; k < N_EVENTS; k++) {
                if (strcmp(ids[k], o->id) == 0) {
                    __atomic_add_fetch(&delivered[k], 1, __ATOMIC_SEQ_CST);
                }
            }
            cs_notify_decide(&next, 0, CS_DELIVERY_OK, 200, 0, 1700000000);
            cs_notify_finish(&c->db, c->pool, o->id, o->sink, owner, &next,
                             NULL, 1700000000);
        }
    }
    conn_close(c);
    _exit(0);
}

static void test_concurrent_claims(void)
{
    conn_t *c = conn_open();
    apr_pool_t *p = c->pool;
    const char **ids = apr_pcalloc(p, N_EVENTS * sizeof(*ids));
    int *delivered = mmap(NULL, N_EVENTS * sizeof(int),
                          PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
    apr_int64_t count;
    cs_event_t ev;
    pid_t pids[N_WORKERS];
    int i, once = 0, status, added;

    UNIT_CASE("claims: 4 workers on 4 connections deliver each row once");
    for (i = 0; i < N_EVENTS; i++) {
        ev = event(CS_EVENT_RENEWED, apr_psprintf(p, "d%d.example", i),
                   apr_psprintf(p, "%04x", i), 1700000000);
        cs_notify_record(&added, &ids[i], &c->db, p, &ev, ev.serial,
                         sinks(p, 0));
        delivered[i] = 0;
    }
    for (i = 0; i < N_WORKERS; i++) {
        if ((pids[i] = fork()) == 0) {
            worker(i, ids, delivered);
        }
    }
    for (i = 0; i < N_WORKERS; i++) {
        waitpid(pids[i], &status, 0);
    }
    for (i = 0; i < N_EVENTS; i++) {
        once += delivered[i] == 1;
        if (delivered[i] != 1) {
            printf("# %s delivered %d times\n", ids[i], delivered[i]);
        }
    }
    CHECK_EQ_INT(once, N_EVENTS);
    CHECK_EQ_INT(cs_notify_count(&count, &c->db, p, "sent"), APR_SUCCESS);
    CHECK_EQ_INT(count, N_EVENTS);
    munmap(delivered, N_EVENTS * sizeof(int));
    conn_close(c);
}

int main(void)
{
    int rc;

    apr_initialize();
    apr_pool_create(&root, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((sqlite_path = testkit_tmpfile(root, "cs_notify_test_")) == NULL) {
        return 2;
    }
    apr_dbd_init(root);
    test_sign();
    test_ids();
    test_problem();
    test_json();
    test_decide();
    test_outbox();
    test_expiring();
    test_concurrent_claims();
    rc = unit_summary();
    unlink(sqlite_path);
    unlink(apr_pstrcat(root, sqlite_path, "-wal", NULL));
    unlink(apr_pstrcat(root, sqlite_path, "-shm", NULL));
    apr_pool_destroy(root);
    return rc;
}
