/*
 * test_cs_dns.c: lib/cs_dns.c: the dns-01 TXT value, the RFC 2136 update
 * packet with its TSIG, and, against a real BIND 9 (named, started here
 * on a loopback port as the user running the test; the BIND part is
 * skipped with a note when named is not installed): updates signed with
 * the right key, a wrong secret and an unknown key refused, CNAME
 * following (delegation, a loop), the wait for every authoritative
 * server (one that lags is named), and the hook command (arguments,
 * exit status, timeout).  named answers recursive queries from loopback,
 * as the resolver pebble asks does: a CNAME into another of its zones is
 * answered with the whole chain.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>

#include <ldns/ldns.h>

#include "cs_dns.h"
#include "unit.h"

#define SECRET  "aSRtPmWJ0XAGGtxiiDmuKk/TaHxyq6TB2NWV2M380YE="
#define WRONG   "bSRtPmWJ0XAGGtxiiDmuKk/TaHxyq6TB2NWV2M380YE="

static apr_pool_t *pool;

static void put(const char *dir, const char *name, const char *text)
{
    FILE *f = fopen(apr_pstrcat(pool, dir, "/", name, NULL), "w");

    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_value(void)
{
    unit_case("TXT value");
    /* Python: base64url(sha256(keyauth)) without padding. */
    CHECK_STR(cs_dns01_value(pool, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92"
                             "wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC"
                             "9Xs"),
              "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8");
    CHECK_EQ_INT((int)strlen(cs_dns01_value(pool, "a.b")), 43);
}

static void test_zone_for(void)
{
    apr_array_header_t *zones = apr_array_make(pool, 2,
                                               sizeof(cs_dns_zone_t));
    cs_dns_conf_t c;
    cs_dns_zone_t *z;

    unit_case("zone choice");
    z = apr_array_push(zones);
    memset(z, 0, sizeof(*z));
    z->zone = "example.test";
    z = apr_array_push(zones);
    memset(z, 0, sizeof(*z));
    z->zone = "sub.example.test";
    memset(&c, 0, sizeof(c));
    c.zones = zones;
    CHECK_STR(cs_dns_zone_for(&c, "_acme-challenge.a.example.test")->zone,
              "example.test");
    CHECK_STR(cs_dns_zone_for(&c, "_acme-challenge.sub.example.test")->zone,
              "sub.example.test");
    CHECK_STR(cs_dns_zone_for(&c, "example.test")->zone, "example.test");
    CHECK(cs_dns_zone_for(&c, "badexample.test") == NULL);
    CHECK(cs_dns_zone_for(&c, "example.test.evil") == NULL);
}

/* a equals the name n, with no ldns object left behind. */
static int same_dname(const ldns_rdf *a, const char *n)
{
    ldns_rdf *d = ldns_dname_new_frm_str(n);
    int same = d && ldns_dname_compare(a, d) == 0;

    ldns_rdf_deep_free(d);
    return same;
}

static void test_packet(void)
{
    cs_dns_zone_t z;
    unsigned char *wire;
    apr_size_t len;
    const char *err = NULL;
    ldns_pkt *pkt = NULL;
    ldns_rr *rr, *tsig;
    ldns_rdf *mac;

    unit_case("update packet");
    memset(&z, 0, sizeof(z));
    z.zone = "example.test";
    z.key_name = "cs-test";
    z.key_alg = "hmac-sha256";
    z.key_secret = SECRET;
    CHECK_EQ_INT(cs_dns_update_wire(&wire, &len, pool, &z,
                                 "_acme-challenge.a.example.test",
                                 "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8",
                                 1, 60, &err), APR_SUCCESS);
    CHECK_EQ_INT(ldns_wire2pkt(&pkt, wire, len), LDNS_STATUS_OK);
    if (!pkt) {
        return;
    }
    CHECK_EQ_INT(ldns_pkt_get_opcode(pkt), LDNS_PACKET_UPDATE);
    CHECK(!ldns_pkt_rd(pkt));
    /* Zone section (question): example.test SOA. */
    CHECK_EQ_INT((int)ldns_pkt_qdcount(pkt), 1);
    rr = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
    CHECK_EQ_INT(ldns_rr_get_type(rr), LDNS_RR_TYPE_SOA);
    CHECK(same_dname(ldns_rr_owner(rr), "example.test."));
    /* Update section (authority): one TXT, class IN, TTL 60. */
    CHECK_EQ_INT((int)ldns_pkt_nscount(pkt), 1);
    rr = ldns_rr_list_rr(ldns_pkt_authority(pkt), 0);
    CHECK_EQ_INT(ldns_rr_get_type(rr), LDNS_RR_TYPE_TXT);
    CHECK_EQ_INT(ldns_rr_get_class(rr), LDNS_RR_CLASS_IN);
    CHECK_EQ_INT((int)ldns_rr_ttl(rr), 60);
    CHECK_EQ_INT((int)ldns_rdf_size(ldns_rr_rdf(rr, 0)), 44);
    /* TSIG: the key, the algorithm, a 32-byte MAC that verifies. */
    tsig = ldns_pkt_tsig(pkt);
    CHECK(tsig != NULL);
    if (tsig) {
        CHECK(same_dname(ldns_rr_owner(tsig), "cs-test."));
        CHECK(same_dname(ldns_rr_rdf(tsig, 0), "hmac-sha256."));
        mac = ldns_rr_rdf(tsig, 3);
        CHECK_EQ_INT((int)ldns_rdf_size(mac), 2 + 32);
        CHECK(ldns_pkt_tsig_verify(pkt, wire, len, "cs-test.", SECRET,
                                   NULL));
        CHECK(!ldns_pkt_tsig_verify(pkt, wire, len, "cs-test.", WRONG,
                                    NULL));
    }
    ldns_pkt_free(pkt);
    pkt = NULL;

    unit_case("delete packet");
    CHECK_EQ_INT(cs_dns_update_wire(&wire, &len, pool, &z,
                                 "_acme-challenge.a.example.test", "abc", 0,
                                 60, &err), APR_SUCCESS);
    CHECK_EQ_INT(ldns_wire2pkt(&pkt, wire, len), LDNS_STATUS_OK);
    if (pkt) {
        rr = ldns_rr_list_rr(ldns_pkt_authority(pkt), 0);
        /* RFC 2136 2.5.4: class NONE, TTL 0: this value only. */
        CHECK_EQ_INT(ldns_rr_get_class(rr), LDNS_RR_CLASS_NONE);
        CHECK_EQ_INT((int)ldns_rr_ttl(rr), 0);
        ldns_pkt_free(pkt);
    }

    unit_case("bad values");
    CHECK_EQ_INT(cs_dns_update_wire(&wire, &len, pool, &z, "x.example.test",
                                 "a\" b", 1, 60, &err), APR_EINVAL);
    CHECK_EQ_INT(cs_dns_update_wire(&wire, &len, pool, &z, "x.example.test",
                                 "", 1, 60, &err), APR_EINVAL);
    z.key_alg = "hmac-nonesuch";
    CHECK(cs_dns_update_wire(&wire, &len, pool, &z, "x.example.test", "abc",
                             1, 60, &err) != APR_SUCCESS);
    CHECK(strstr(err, "'hmac-nonesuch' is not a TSIG algorithm") != NULL);
    CHECK_STR(cs_dns_tsig_alg("HMAC-SHA512"), "hmac-sha512");
    CHECK(cs_dns_tsig_alg("hmac-md5") == NULL);
    CHECK(cs_dns_tsig_alg(NULL) == NULL);
}

/* --- against BIND -------------------------------------------------- */

static pid_t named_pid;
static const char *bind_dir;
static int bind_port;

static const char *soa(const char *zone, const char *extra)
{
    return apr_psprintf(pool, "$TTL 60\n@ SOA ns1.%s. admin.%s. 1 60 60 600 "
                        "60\n@ NS ns1.%s.\nns1 A 127.0.0.1\n%s", zone, zone,
                        zone, extra);
}

static const char *zone_conf(const char *zone, int dynamic)
{
    return apr_psprintf(pool, "zone \"%s\" { type primary; file \"%s.db\"; "
                        "%s };\n", zone, zone, dynamic
                        ? "update-policy { grant cs-test zonesub TXT; };"
                        : "");
}

static int start_named(void)
{
    char tmpl[] = "/tmp/cs-dns-test.XXXXXX";
    const char *conf, *named = NULL;
    static const char *where[] = { "/usr/sbin/named", "/usr/bin/named",
                                   "/usr/local/sbin/named" };
    cs_dns_conf_t c;
    const char *target, *err;
    unsigned i;
    int tries;

    for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        if (access(where[i], X_OK) == 0) {
            named = where[i];
        }
    }
    if (!named || !mkdtemp(tmpl)) {
        return 0;
    }
    bind_dir = apr_pstrdup(pool, tmpl);
    chmod(bind_dir, 0755);
    bind_port = 20000 + (int)(getpid() % 20000);
    conf = apr_psprintf(pool,
        "options { directory \"%s\"; pid-file \"%s/named.pid\";\n"
        "  listen-on port %d { 127.0.0.1; }; listen-on-v6 { none; };\n"
        "  recursion yes; allow-recursion { 127.0.0.1; };\n"
        "  dnssec-validation no; notify no;\n"
        "  session-keyfile \"%s/session.key\";\n"
        "  managed-keys-directory \"%s\"; };\n"
        "controls { };\n"
        "key \"cs-test\" { algorithm hmac-sha256; secret \"" SECRET "\"; };\n"
        "key \"other\" { algorithm hmac-sha256; secret \"" WRONG "\"; };\n"
        "%s%s%s%s",
        bind_dir, bind_dir, bind_port, bind_dir, bind_dir,
        zone_conf("example.test", 1), zone_conf("pool.test", 1),
        zone_conf("customer.test", 0), zone_conf("lag.test", 1));
    put(bind_dir, "named.conf", conf);
    put(bind_dir, "example.test.db", soa("example.test", ""));
    put(bind_dir, "pool.test.db", soa("pool.test", ""));
    put(bind_dir, "customer.test.db", soa("customer.test",
        "_acme-challenge.www CNAME www-customer.pool.test.\n"
        "_acme-challenge.two CNAME hop.customer.test.\n"
        "hop CNAME two-customer.pool.test.\n"
        "_acme-challenge.loop CNAME l2.customer.test.\n"
        "l2 CNAME _acme-challenge.loop.customer.test.\n"
        "_acme-challenge.nowhere CNAME nope.customer.test.\n"));
    /* A second name server that does not answer (nothing on 127.0.0.3). */
    put(bind_dir, "lag.test.db", soa("lag.test",
        "@ NS ns2.lag.test.\nns2 A 127.0.0.3\n"));
    if ((named_pid = fork()) == 0) {
        int fd = open(apr_pstrcat(pool, bind_dir, "/named.log", NULL),
                      O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(named, "named", "-g", "-4", "-c",
              apr_pstrcat(pool, bind_dir, "/named.conf", NULL), (char *)NULL);
        _exit(127);
    }
    /* Up when it answers for a name of its own. */
    memset(&c, 0, sizeof(c));
    c.resolver = apr_psprintf(pool, "127.0.0.1:%d", bind_port);
    for (tries = 0; tries < 100; tries++) {
        if (cs_dns_follow(&target, pool, &c, "ns1.example.test", &err)
            == APR_SUCCESS) {
            return 1;
        }
        usleep(100000);
    }
    printf("# named did not start: see %s/named.log\n", bind_dir);
    return 0;
}

/* CERTSUITE_KEEP as the scripts read it (t/lib/certsuite.sh): "failed"
 * keeps the directory only when a check failed, any other value always. */
static int keep_bind_dir(void)
{
    const char *keep = getenv("CERTSUITE_KEEP");

    if (!keep || !*keep) {
        return 0;
    }
    return strcmp(keep, "failed") != 0 || unit_state()->failed > 0;
}

static void stop_named(void)
{
    int st;

    if (named_pid > 0) {
        kill(named_pid, SIGTERM);
        waitpid(named_pid, &st, 0);
    }
    if (!bind_dir) {
        return;
    }
    if (keep_bind_dir()) {
        printf("# kept %s\n", bind_dir);
    }
    else if (system(apr_psprintf(pool, "rm -rf '%s'", bind_dir)) != 0) {
        printf("# could not remove %s\n", bind_dir);
    }
}

/* TXT values of name at BIND ("" when none), "a b" in answer order;
 * rd: as a recursive query (a CNAME chain answered whole). */
static const char *txt_ask(const char *name, int rd)
{
    ldns_resolver *r = ldns_resolver_new();
    ldns_rdf *a = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, "127.0.0.1");
    ldns_rdf *dn = ldns_dname_new_frm_str(name);
    ldns_pkt *pkt = NULL;
    const ldns_rr_list *al;
    const char *out = "";
    size_t i;

    ldns_resolver_push_nameserver(r, a);
    ldns_resolver_set_port(r, (uint16_t)bind_port);
    ldns_resolver_set_recursive(r, rd ? true : false);
    if (ldns_resolver_send(&pkt, r, dn, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN,
                           rd ? LDNS_RD : 0) == LDNS_STATUS_OK && pkt) {
        al = ldns_pkt_answer(pkt);
        for (i = 0; al && i < ldns_rr_list_rr_count(al); i++) {
            ldns_rdf *rd = ldns_rr_rdf(ldns_rr_list_rr(al, i), 0);
            if (ldns_rr_get_type(ldns_rr_list_rr(al, i))
                != LDNS_RR_TYPE_TXT) {
                continue;
            }
            out = apr_psprintf(pool, "%s%s%.*s", out, *out ? " " : "",
                               (int)ldns_rdf_size(rd) - 1,
                               (const char *)ldns_rdf_data(rd) + 1);
        }
    }
    ldns_pkt_free(pkt);
    ldns_rdf_deep_free(a);
    ldns_rdf_deep_free(dn);
    ldns_resolver_deep_free(r);
    return out;
}

static const char *txt_at_bind(const char *name)
{
    return txt_ask(name, 0);
}

static cs_dns_zone_t *zone(apr_array_header_t *zones, const char *name,
                           const char *key, const char *secret)
{
    cs_dns_zone_t *z = apr_array_push(zones);

    z->zone = name;
    z->server = "127.0.0.1";
    z->port = bind_port;
    z->key_name = key;
    z->key_alg = "hmac-sha256";
    z->key_secret = secret;
    return z;
}

static void test_bind(void)
{
    apr_array_header_t *zones = apr_array_make(pool, 4,
                                               sizeof(cs_dns_zone_t));
    cs_dns_zone_t *ex, *bad;
    cs_dns_conf_t c;
    const char *err = NULL, *target, *where, *hook, *log;
    const char *v1 = "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8";
    apr_time_t t0;
    char *text;

    ex = zone(zones, "example.test", "cs-test", SECRET);
    zone(zones, "pool.test", "cs-test", SECRET);
    memset(&c, 0, sizeof(c));
    c.zones = zones;
    c.resolver = apr_psprintf(pool, "127.0.0.1:%d", bind_port);
    c.auth_port = bind_port;
    c.wait = apr_time_from_sec(10);

    unit_case("BIND: update with TSIG");
    CHECK_EQ_INT(cs_dns_update(pool, &c, ex, "_acme-challenge.a.example.test",
                            v1, 1, &err), APR_SUCCESS);
    if (err) {
        printf("# %s\n", err);
    }
    CHECK_STR(txt_at_bind("_acme-challenge.a.example.test"), v1);
    CHECK_EQ_INT(cs_dns_update(pool, &c, ex, "_acme-challenge.a.example.test",
                            "second", 1, &err), APR_SUCCESS);
    CHECK_EQ_INT(cs_dns_wait(pool, &c, "_acme-challenge.a.example.test", v1,
                          &err), APR_SUCCESS);
    /* Delete removes that value only. */
    CHECK_EQ_INT(cs_dns_update(pool, &c, ex, "_acme-challenge.a.example.test",
                            v1, 0, &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("_acme-challenge.a.example.test"), "second");
    CHECK_EQ_INT(cs_dns_update(pool, &c, ex, "_acme-challenge.a.example.test",
                            "second", 0, &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("_acme-challenge.a.example.test"), "");

    unit_case("BIND: wrong secret, unknown key, zone not ours");
    bad = zone(apr_array_make(pool, 1, sizeof(cs_dns_zone_t)),
               "example.test", "cs-test", WRONG);
    err = NULL;
    CHECK_EQ_INT(cs_dns_update(pool, &c, bad, "_acme-challenge.b.example.test",
                            v1, 1, &err), APR_EACCES);
    CHECK(err && strstr(err, "cs-test") && !strstr(err, WRONG));
    printf("# wrong secret: %s\n", err ? err : "");
    bad->key_name = "nonesuch";
    err = NULL;
    CHECK_EQ_INT(cs_dns_update(pool, &c, bad, "_acme-challenge.b.example.test",
                            v1, 1, &err), APR_EACCES);
    printf("# unknown key: %s\n", err ? err : "");
    /* A key BIND knows but the zone's policy does not grant. */
    bad->key_name = "other";
    bad->key_secret = WRONG;
    err = NULL;
    CHECK_EQ_INT(cs_dns_update(pool, &c, bad, "_acme-challenge.b.example.test",
                            v1, 1, &err), APR_EACCES);
    CHECK(err && strstr(err, "REFUSED"));
    printf("# key not granted: %s\n", err ? err : "");
    CHECK_STR(txt_at_bind("_acme-challenge.b.example.test"), "");

    unit_case("BIND: CNAME following");
    CHECK_EQ_INT(cs_dns_follow(&target, pool, &c,
                            "_acme-challenge.www.customer.test", &err),
              APR_SUCCESS);
    CHECK_STR(target, "www-customer.pool.test");
    CHECK_EQ_INT(cs_dns_follow(&target, pool, &c,
                            "_acme-challenge.two.customer.test", &err),
              APR_SUCCESS);
    CHECK_STR(target, "two-customer.pool.test");
    CHECK_EQ_INT(cs_dns_follow(&target, pool, &c,
                            "_acme-challenge.x.example.test", &err),
              APR_SUCCESS);
    CHECK_STR(target, "_acme-challenge.x.example.test");
    err = NULL;
    CHECK_EQ_INT(cs_dns_follow(&target, pool, &c,
                            "_acme-challenge.loop.customer.test", &err),
              APR_EGENERAL);
    CHECK(err && strstr(err, "loop"));
    CHECK_EQ_INT(cs_dns01_check(&target, &where, pool, &c, "www.customer.test",
                             &err), APR_SUCCESS);
    CHECK_STR(where, "zone pool.test");
    err = NULL;
    CHECK_EQ_INT(cs_dns01_check(&target, &where, pool, &c,
                             "nowhere.customer.test", &err), APR_NOTFOUND);
    CHECK(err && strstr(err, "(CNAME to nope.customer.test)"));

    unit_case("BIND: dns-01 publish through a CNAME, then removed");
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "www.customer.test", "tok.thumb",
                               1, &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("www-customer.pool.test"),
              cs_dns01_value(pool, "tok.thumb"));
    CHECK_STR(txt_ask("_acme-challenge.www.customer.test", 1),
              cs_dns01_value(pool, "tok.thumb"));
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "www.customer.test", "tok.thumb",
                               0, &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("www-customer.pool.test"), "");

    unit_case("BIND: a lagging server is named");
    zone(zones, "lag.test", "cs-test", SECRET);
    c.wait = apr_time_from_sec(2);
    t0 = apr_time_now();
    err = NULL;
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "a.lag.test", "tok.thumb", 1,
                               &err), APR_TIMEUP);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(20));
    CHECK(err && strstr(err, "ns2.lag.test (127.0.0.3)")
          && !strstr(err, "ns1.lag.test"));
    printf("# lag: %s\n", err ? err : "");
    /* Removed again after the failed wait. */
    CHECK_STR(txt_at_bind("_acme-challenge.a.lag.test"), "");
    /* A stop (the child's exit) ends the wait within a second, whatever
     * its length, and the record is removed all the same. */
    {
        volatile apr_uint32_t stop = 1;

        c.wait = apr_time_from_sec(60);
        c.stop = &stop;
        t0 = apr_time_now();
        err = NULL;
        CHECK_EQ_INT(cs_dns01_publish(pool, &c, "b.lag.test", "tok.thumb", 1,
                                      &err), APR_EINTR);
        CHECK(apr_time_now() - t0 < apr_time_from_sec(10));
        CHECK(err && strstr(err, "stopping"));
        CHECK_STR(txt_at_bind("_acme-challenge.b.lag.test"), "");
        c.stop = NULL;
        c.wait = apr_time_from_sec(2);
    }

    unit_case("hook");
    hook = apr_pstrcat(pool, bind_dir, "/hook.sh", NULL);
    log = apr_pstrcat(pool, bind_dir, "/hook.log", NULL);
    put(bind_dir, "hook.sh", apr_psprintf(pool,
        "#!/bin/sh\necho \"$*\" >>%s\n"
        "case $2 in fail.*) exit 3;; slow.*) sleep 30;; esac\n"
        "case $4 in *.pool.test) z=pool.test;; *) z=example.test;; esac\n"
        "[ $1 = set ] && exec /usr/bin/nsupdate -y hmac-sha256:cs-test:"
        SECRET " <<EOF\nserver 127.0.0.1 %d\nzone $z\n"
        "update add $4 60 TXT $3\nsend\nEOF\nexit 0\n", log, bind_port));
    chmod(hook, 0755);
    c.zones = NULL;
    c.hook = hook;
    /* Generous for the working hook (nsupdate on a loaded machine takes
     * more than a second); the slow hook below gets 1 s. */
    c.hook_timeout = apr_time_from_sec(15);
    c.wait = apr_time_from_sec(10);
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "h.example.test", "tok.thumb", 1,
                               &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("_acme-challenge.h.example.test"),
              cs_dns01_value(pool, "tok.thumb"));
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "www.customer.test", "tok.thumb",
                               1, &err), APR_SUCCESS);
    CHECK_STR(txt_at_bind("www-customer.pool.test"),
              cs_dns01_value(pool, "tok.thumb"));
    CHECK_EQ_INT(cs_dns01_publish(pool, &c, "h.example.test", "tok.thumb", 0,
                               &err), APR_SUCCESS);
    err = NULL;
    CHECK_EQ_INT(cs_dns_hook(pool, &c, 1, "fail.example.test", "v", "n",
                          &err), APR_EGENERAL);
    CHECK(err && strstr(err, "exit status 3"));
    c.hook_timeout = apr_time_from_sec(1);
    t0 = apr_time_now();
    err = NULL;
    CHECK_EQ_INT(cs_dns_hook(pool, &c, 1, "slow.example.test", "v", "n",
                          &err), APR_TIMEUP);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
    CHECK(err && strstr(err, "did not end within 1 s"));
    /* A stop (the child's exit) kills the hook within a poll, whatever its
     * timeout. */
    {
        volatile apr_uint32_t stop = 1;

        c.hook_timeout = apr_time_from_sec(30);
        c.stop = &stop;
        t0 = apr_time_now();
        err = NULL;
        CHECK_EQ_INT(cs_dns_hook(pool, &c, 1, "slow.example.test", "v", "n",
                                 &err), APR_EINTR);
        CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
        CHECK(err && strstr(err, "killed: stopping"));
        c.stop = NULL;
    }
    c.hook = "/nonexistent/hook";
    err = NULL;
    CHECK(cs_dns_hook(pool, &c, 1, "x.example.test", "v", "n", &err)
          != APR_SUCCESS);
    CHECK(err && strstr(err, "/nonexistent/hook"));
    {
        FILE *f = fopen(log, "r");
        char buf[4096];
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f) {
            fclose(f);
        }
        buf[n] = '\0';
        text = apr_pstrdup(pool, buf);
    }
    CHECK(strstr(text, apr_psprintf(pool, "set h.example.test %s "
                                    "_acme-challenge.h.example.test\n",
                                    cs_dns01_value(pool, "tok.thumb")))
          != NULL);
    CHECK(strstr(text, "set www.customer.test ") != NULL
          && strstr(text, " www-customer.pool.test\n") != NULL);
    CHECK(strstr(text, "unset h.example.test ") != NULL);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_value();
    test_zone_for();
    test_packet();
    if (start_named()) {
        test_bind();
    }
    else {
        printf("# named (bind9) not available: the BIND part is skipped\n");
    }
    stop_named();
    /* The resolvers and packets live until their pool's cleanups (the
     * pool's own memory is mapped, unseen by LeakSanitizer). */
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
