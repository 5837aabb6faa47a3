/*
 * test_cs_request.c: unit tests of what a CertService request carries
 * (mod_certservice/cs_request.c): the query string, names, JSON bodies.
 */
#include <stdio.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "cs_request.h"
#include "unit.h"

static apr_pool_t *p;

/* The status of parsing args, and the error text in *err. */
static int parse(const char *args, apr_array_header_t **params,
                 const char **err)
{
    *err = NULL;
    return cs_query_parse(params, p, args, err);
}

static void test_query_parse(void)
{
    apr_array_header_t *q;
    const char *err;

    UNIT_CASE("query: split and decoded");
    CHECK_EQ_INT(parse("since=5&limit=2", &q, &err), 0);
    CHECK_EQ_INT(q->nelts, 2);
    CHECK_STR(cs_query_get(q, "since"), "5");
    CHECK_STR(cs_query_get(q, "limit"), "2");
    CHECK(cs_query_get(q, "after") == NULL);
    CHECK(cs_query_get(q, "LIMIT") == NULL);
    CHECK_EQ_INT(parse("%61fter=B%C3%BCcher.example&x&y=&&", &q, &err), 0);
    CHECK_EQ_INT(q->nelts, 3);
    CHECK_STR(cs_query_get(q, "after"), "B\xc3\xbc" "cher.example");
    CHECK_STR(cs_query_get(q, "x"), "");
    CHECK_STR(cs_query_get(q, "y"), "");
    CHECK_EQ_INT(parse("a=1%2F2+3%2b&a=last", &q, &err), 0);
    CHECK_STR(APR_ARRAY_IDX(q, 0, cs_query_param_t).value, "1/2+3+");
    CHECK_STR(cs_query_get(q, "a"), "last");
    CHECK_EQ_INT(parse(NULL, &q, &err), 0);
    CHECK_EQ_INT(q->nelts, 0);
    CHECK_EQ_INT(parse("", &q, &err), 0);
    CHECK_EQ_INT(q->nelts, 0);

    UNIT_CASE("query: %00 and bad escapes are 400 naming the parameter");
    CHECK_EQ_INT(parse("since=5%00", &q, &err), 400);
    CHECK_STR(err, "query parameter 'since' contains a NUL byte (%00)");
    CHECK_EQ_INT(parse("limit=1&after=known.example%00zzz", &q, &err), 400);
    CHECK(err && strstr(err, "'after'") && strstr(err, "NUL"));
    CHECK_EQ_INT(parse("since=%zz", &q, &err), 400);
    CHECK(err && strstr(err, "'since' is not percent-encoded correctly"));
    CHECK_EQ_INT(parse("limit=1%4", &q, &err), 400);
    CHECK(err && strstr(err, "'limit'"));
    CHECK_EQ_INT(parse("limit=%", &q, &err), 400);
    CHECK_EQ_INT(parse("since=1&since=%0", &q, &err), 400);
    /* Every part, the last one too, even of a name no endpoint reads. */
    CHECK_EQ_INT(parse("since=1&foo=%00", &q, &err), 400);
    CHECK(err && strstr(err, "'foo'"));
    /* In the name: shown as sent, printable. */
    CHECK_EQ_INT(parse("si%00nce=1", &q, &err), 400);
    CHECK_STR(err, "query parameter 'si%00nce' contains a NUL byte (%00)");
    CHECK_EQ_INT(parse("a\x01%zz=1", &q, &err), 400);
    CHECK(err && strstr(err, "'a\\x01%zz'"));
}

static void test_query_values(void)
{
    apr_array_header_t *q;
    apr_int64_t since;
    const char *err, *after;
    int limit;
    static const char *const bad_changes[] = {
        "limit=0", "limit=1001", "limit=-1", "limit=x", "limit=", "limit=1x",
        "since=-1", "since=x", "since=", "since=1.5", "since=+1",
        "since= 1", "since=99999999999999999999999", "since=5%00",
        "since=%zz", NULL
    };
    int i;

    UNIT_CASE("query: GET /v1/changes");
    CHECK_EQ_INT(parse("", &q, &err), 0);
    CHECK_EQ_INT(cs_req_changes(&since, &limit, p, q, &err), 0);
    CHECK_EQ_INT(since, 0);
    CHECK_EQ_INT(limit, 100);
    CHECK_EQ_INT(parse("since=9223372036854775807&limit=1000", &q, &err), 0);
    CHECK_EQ_INT(cs_req_changes(&since, &limit, p, q, &err), 0);
    CHECK(since == APR_INT64_MAX);
    CHECK_EQ_INT(limit, 1000);
    CHECK_EQ_INT(parse("since=9223372036854775808", &q, &err), 0);
    CHECK_EQ_INT(cs_req_changes(&since, &limit, p, q, &err), 400);
    for (i = 0; bad_changes[i]; i++) {
        int rc = parse(bad_changes[i], &q, &err);

        if (rc == 0) {
            rc = cs_req_changes(&since, &limit, p, q, &err);
        }
        if (!CHECK_EQ_INT(rc, 400)) {
            printf("  for %s\n", bad_changes[i]);
        }
    }
    CHECK_EQ_INT(parse("limit=0", &q, &err), 0);
    CHECK_EQ_INT(cs_req_changes(&since, &limit, p, q, &err), 400);
    CHECK_STR(err, "limit must be at least 1");
    CHECK_EQ_INT(parse("since=x", &q, &err), 0);
    CHECK_EQ_INT(cs_req_changes(&since, &limit, p, q, &err), 400);
    CHECK_STR(err, "query parameter 'since' must be a number from 0 to "
              "9223372036854775807");

    UNIT_CASE("query: GET /v1/domains");
    CHECK_EQ_INT(parse("limit=2&after=Shop.Example.COM.", &q, &err), 0);
    CHECK_EQ_INT(cs_req_domains(&after, &limit, p, q, &err), 0);
    CHECK_STR(after, "shop.example.com");
    CHECK_EQ_INT(limit, 2);
    CHECK_EQ_INT(parse("after=b%C3%BCcher.example", &q, &err), 0);
    CHECK_EQ_INT(cs_req_domains(&after, &limit, p, q, &err), 0);
    CHECK_STR(after, "xn--bcher-kva.example");
    CHECK_EQ_INT(parse("", &q, &err), 0);
    CHECK_EQ_INT(cs_req_domains(&after, &limit, p, q, &err), 0);
    CHECK(after == NULL);
    CHECK_EQ_INT(parse("after=-x.example", &q, &err), 0);
    CHECK_EQ_INT(cs_req_domains(&after, &limit, p, q, &err), 400);
    CHECK(err && strncmp(err, "query parameter 'after': invalid domain "
                         "name '-x.example': ", 56) == 0);
    CHECK_EQ_INT(parse("after=%FF.example", &q, &err), 0);
    CHECK_EQ_INT(cs_req_domains(&after, &limit, p, q, &err), 400);
    CHECK(err && strstr(err, "'\\xff.example'"));
    CHECK_EQ_INT(parse("after=known.example%00zzz", &q, &err), 400);
}

static int body(int (*f)(const char *, const char **), const char *json,
                const char **err)
{
    *err = NULL;
    return f(json, err);
}

static const char *host;
static int ttl, kt, reason;
static const char *profile;
static apr_array_header_t *names;
static cs_report_t rep;

static int lease_body(const char *b, const char **err)
{
    return cs_req_lease(&host, &ttl, p, b, strlen(b), 900, err);
}

static int bundles(const char *b, const char **err)
{
    return cs_req_bundles(&names, p, b, strlen(b), 2, err);
}

static int report(const char *b, const char **err)
{
    return cs_req_report(&rep, p, b, strlen(b), err);
}

static int put_domain(const char *b, const char **err)
{
    return cs_req_put_domain(&kt, &profile, p, b, strlen(b), 0, err);
}

static int revoke_body(const char *b, const char **err)
{
    return cs_req_revoke(&reason, p, b, strlen(b), err);
}

static void test_bodies(void)
{
    const char *err, *chain, *key, *cms;
    static const char import_ok[] =
        "{\"chain_pem\":\"c\",\"key_pem\":\"k\"}";
    char long_token[66];

    UNIT_CASE("body: JSON");
    CHECK_EQ_INT(body(put_domain, "", &err), 0);
    CHECK_EQ_INT(kt, 0);
    CHECK_EQ_INT(body(put_domain, "{\"key_type\":\"rsa-2048\"}", &err), 0);
    CHECK_EQ_INT(kt, 1);
    CHECK_EQ_INT(body(put_domain, "{\"key_type\":\"ec-p384\"}", &err), 400);
    CHECK_EQ_INT(body(put_domain, "[]", &err), 400);
    CHECK_STR(err, "the body must be a JSON object");
    CHECK_EQ_INT(body(put_domain, "{\"a\":1,\"a\":2}", &err), 400);
    CHECK(err && strncmp(err, "malformed JSON at line 1", 24) == 0);
    CHECK_EQ_INT(body(put_domain, "{\"x\":\"\\u0000\"}", &err), 400);
    CHECK_EQ_INT(cs_req_put_domain(&kt, &profile, p, "{}\0", 3, 0, &err),
                 400);

    UNIT_CASE("body: PUT /v1/domains/D with an ACME profile");
    CHECK_EQ_INT(body(put_domain, "{}", &err), 0);
    CHECK(profile == NULL);
    CHECK_EQ_INT(body(put_domain, "{\"profile\":\"shortlived\"}", &err), 0);
    CHECK_STR(profile, "shortlived");
    CHECK_EQ_INT(kt, 0);
    CHECK_EQ_INT(body(put_domain, "{\"profile\":\"tlsserver\","
                      "\"key_type\":\"rsa-2048\"}", &err), 0);
    CHECK_STR(profile, "tlsserver");
    CHECK_EQ_INT(kt, 1);
    CHECK_EQ_INT(body(put_domain, "{\"profile\":null}", &err), 0);
    CHECK(profile == NULL);
    CHECK_EQ_INT(body(put_domain, "{\"profile\":\"short lived\"}", &err),
                 400);
    CHECK_STR(err, "profile 'short lived' is not a profile name (1 to 64 "
              "of A-Z a-z 0-9 . _ -)");
    CHECK(profile == NULL);
    CHECK_EQ_INT(body(put_domain, "{\"profile\":\"\"}", &err), 400);
    CHECK(err && strstr(err, "profile '' is not"));
    CHECK_EQ_INT(body(put_domain, "{\"profile\":\"a\\u0001\\u00e9\"}",
                      &err), 400);
    CHECK(err && strstr(err, "profile 'a\\x01\\xc3\\xa9' is not"));
    CHECK_EQ_INT(body(put_domain, "{\"profile\":7}", &err), 400);
    CHECK_STR(err, "profile must be a string (an ACME profile name) or "
              "null");
    memset(long_token, 'p', 65);
    long_token[65] = '\0';
    CHECK_EQ_INT(body(put_domain, apr_psprintf(p, "{\"profile\":\"%s\"}",
                                               long_token), &err), 400);
    long_token[64] = '\0';
    CHECK_EQ_INT(body(put_domain, apr_psprintf(p, "{\"profile\":\"%s\"}",
                                               long_token), &err), 0);
    CHECK_STR(profile, long_token);

    UNIT_CASE("body: POST /v1/bundles");
    CHECK_EQ_INT(body(bundles, "{\"domains\":[\"A.example.\","
                      "\"b\xc3\xbc" "cher.example\"]}", &err), 0);
    CHECK_EQ_INT(names->nelts, 2);
    CHECK_STR(APR_ARRAY_IDX(names, 0, const char *), "a.example");
    CHECK_STR(APR_ARRAY_IDX(names, 1, const char *),
              "xn--bcher-kva.example");
    CHECK_EQ_INT(body(bundles, "{\"domains\":[\"a.example\",\"b.example\","
                      "\"c.example\"]}", &err), 413);
    CHECK_STR(err, "3 domains requested; CertServiceMaxBatch is 2");
    CHECK_EQ_INT(body(bundles, "{\"domains\":[\"a.example\",1]}", &err),
                 400);
    CHECK_STR(err, "domains[1] is not a string");
    CHECK_EQ_INT(body(bundles, "{\"domains\":\"a.example\"}", &err), 400);
    CHECK_EQ_INT(body(bundles, "{\"domains\":[\"a\\u0001.example\"]}",
                      &err), 400);
    CHECK(err && strstr(err, "'a\\x01.example'"));

    UNIT_CASE("body: leases, reports, revoke, import");
    CHECK_EQ_INT(body(lease_body, "{\"host\":\"proxy-1\",\"ttl\":300}", &err),
                 0);
    CHECK_STR(host, "proxy-1");
    CHECK_EQ_INT(ttl, 300);
    CHECK_EQ_INT(body(lease_body, "{\"host\":\"proxy-1\",\"ttl\":901}", &err),
                 400);
    CHECK(err && strstr(err, "<1..900 seconds>"));
    CHECK_EQ_INT(body(lease_body, "{\"host\":\"a b\",\"ttl\":1}", &err), 400);
    CHECK_EQ_INT(body(report, "{\"pool\":\"edge\",\"seq\":3,\"state\":"
                      "\"done\",\"failed\":{\"x.example\":\"no\"}}", &err),
                 0);
    CHECK_STR(rep.failed_json, "{\"x.example\":\"no\"}");
    CHECK_EQ_INT(rep.seq, 3);
    CHECK_EQ_INT(body(report, "{\"pool\":\"edge\",\"seq\":0,\"state\":"
                      "\"idle\"}", &err), 0);
    CHECK_STR(rep.failed_json, "{}");
    CHECK_EQ_INT(body(report, "{\"pool\":\"edge\",\"seq\":-1,\"state\":"
                      "\"idle\"}", &err), 400);
    CHECK_EQ_INT(body(revoke_body, "", &err), 0);
    CHECK_EQ_INT(reason, 0);
    CHECK_EQ_INT(body(revoke_body, "{\"reason\":4}", &err), 0);
    CHECK_EQ_INT(reason, 4);
    CHECK_EQ_INT(body(revoke_body, "{\"reason\":7}", &err), 400);
    CHECK_EQ_INT(cs_req_import(&chain, &key, &cms, p, import_ok,
                               sizeof(import_ok) - 1, &err), 0);
    CHECK_STR(chain, "c");
    CHECK_STR(key, "k");
    CHECK(cms == NULL);
    CHECK_EQ_INT(cs_req_import(&chain, &key, &cms, p,
                               "{\"chain_pem\":\"c\"}", 17, &err), 400);
    /* A key sealed by its importer instead of key_pem; not both. */
    CHECK_EQ_INT(cs_req_import(&chain, &key, &cms, p,
                               "{\"chain_pem\":\"c\",\"key_cms\":\"QUJD\"}",
                               34, &err), 0);
    CHECK_STR(cms, "QUJD");
    CHECK(key == NULL);
    CHECK_EQ_INT(cs_req_import(&chain, &key, &cms, p,
                               "{\"chain_pem\":\"c\",\"key_cms\":\"Q\","
                               "\"key_pem\":\"k\"}", 45, &err), 400);
    CHECK(err && strstr(err, "key_cms"));
    /* Callers that take no sealed key refuse one. */
    CHECK_EQ_INT(cs_req_import(&chain, &key, NULL, p,
                               "{\"chain_pem\":\"c\",\"key_cms\":\"QUJD\"}",
                               34, &err), 400);

    UNIT_CASE("names");
    CHECK(cs_req_token_ok("edge-1.a_b"));
    CHECK(!cs_req_token_ok(""));
    CHECK(!cs_req_token_ok("a/b"));
    memset(long_token, 'a', 65);
    long_token[65] = '\0';
    CHECK(!cs_req_token_ok(long_token));
    long_token[64] = '\0';
    CHECK(cs_req_token_ok(long_token));
}

int main(void)
{
    int rc;

    apr_initialize();
    apr_pool_create(&p, NULL);
    test_query_parse();
    test_query_values();
    test_bodies();
    rc = unit_summary();
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
