/*
 * fuzz_dns.c: libFuzzer harness for what name servers send back to
 * CertService's dns-01 code (lib/cs_dns.c): the answers to its CNAME,
 * SOA, NS, A/AAAA and TXT questions and the reply to an RFC 2136 UPDATE
 * with its TSIG, each parsed by ldns and read by cs_dns.c, over a stub
 * transport (cs_dns_conf_t.xfer): no socket, deterministic.
 *
 * Input: byte 0 picks the flow: cs_dns_follow, cs_dns_wait (one round),
 * cs_dns_update, cs_dns01_publish or cs_dns01_check, for the name
 * _acme-challenge.a.fuzz.example in zone fuzz.example.  Byte 1 holds
 * flags the transport applies to each answer: 1 the query's ID is copied
 * in, 2 the answer is TSIG-signed with the zone's key as the server would
 * (an answer to a signed update), 4 the query's question is copied in.
 * Then the answers, in order: two bytes of length (big-endian), the wire
 * bytes; length 0 is a transport error.  When they run out, the server
 * does not answer.
 *
 * Beyond "no crash", it aborts when
 *   - more queries are sent than the bounds of cs_dns.c allow (9 for a
 *     CNAME chain; for the wait: the name's labels, one NS, two per name
 *     server up to 16 of them, 32 servers), or a query goes to an address
 *     that is not a printable IP address, or on another port than 53;
 *   - the NS set asked for is not that of the name or one of its parents
 *     (the zone comes from the SOA the resolver gives);
 *   - a CNAME target is returned that no answer named, or that is not
 *     lower case without a final dot;
 *   - the wait succeeds while a server's answer (as parsed here) lacks
 *     the TXT value; an update succeeds unsigned or with another rcode
 *     than NOERROR; publish succeeds without a signed update;
 *   - an error text is missing, not printable ASCII or longer than 16 KB;
 *     an OpenSSL error is left queued; ASan, UBSan or LeakSanitizer
 *     report.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <ldns/ldns.h>
#include <openssl/err.h>

#include "cs_dns.h"
#include "fuzz.h"

#define NAME    "_acme-challenge.a.fuzz.example"
#define VALUE   "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8"
#define KEYAUTH "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCc" \
                "d-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
#define SECRET  "aSRtPmWJ0XAGGtxiiDmuKk/TaHxyq6TB2NWV2M380YE="

enum { F_FOLLOW, F_WAIT, F_UPDATE, F_PUBLISH, F_CHECK, F_COUNT };

static apr_pool_t *gp_seed;

typedef struct {
    const uint8_t *in;
    size_t left;
    int flags;
    apr_pool_t *p;
    int queries;
    int txt_queries, txt_with_value;
    int updates, updates_ok;        /* signed NOERROR replies given */
    int ns_queries;
    const char *ns_zone;            /* the NS set asked for */
    apr_hash_t *cnames;             /* CNAME targets the answers named */
} stub_t;

static void printable(const char *s)
{
    REQUIRE(s != NULL && *s);
    REQUIRE(strlen(s) <= 16384);
    for (; *s; s++) {
        REQUIRE((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
    }
}

/* A name as the code under test writes it: lower case, no final dot. */
static const char *lname(apr_pool_t *p, const ldns_rdf *rdf)
{
    char *s = ldns_rdf2str(rdf), *r, *c;
    size_t n;

    r = apr_pstrdup(p, s ? s : "");
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

/* Whether name is zone or below it. */
static int name_in(const char *name, const char *zone)
{
    size_t n = strlen(name), z = strlen(zone);

    return n == z ? strcmp(name, zone) == 0
                  : n > z && name[n - z - 1] == '.'
                    && strcmp(name + n - z, zone) == 0;
}

/* What the answer a holds, noted for the invariants. */
static void note_answer(stub_t *s, ldns_pkt *q, ldns_pkt *a)
{
    const ldns_rr_list *al = ldns_pkt_answer(a);
    ldns_rr_type qt = ldns_rr_get_type(ldns_rr_list_rr(
                                           ldns_pkt_question(q), 0));
    size_t i;

    for (i = 0; al && i < ldns_rr_list_rr_count(al); i++) {
        ldns_rr *rr = ldns_rr_list_rr(al, i);

        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME
            && ldns_rr_rd_count(rr) >= 1) {
            apr_hash_set(s->cnames, lname(s->p, ldns_rr_rdf(rr, 0)),
                         APR_HASH_KEY_STRING, "");
        }
        if (qt == LDNS_RR_TYPE_TXT && ldns_rr_get_type(rr) == LDNS_RR_TYPE_TXT
            && ldns_rr_rd_count(rr) == 1
            && strcmp(lname(s->p, ldns_rr_owner(rr)), NAME) == 0
            && ldns_rdf_size(ldns_rr_rdf(rr, 0)) == strlen(VALUE) + 1
            && memcmp(ldns_rdf_data(ldns_rr_rdf(rr, 0)) + 1, VALUE,
                      strlen(VALUE)) == 0
            && ldns_pkt_get_rcode(a) == LDNS_RCODE_NOERROR
            && ldns_pkt_id(a) == ldns_pkt_id(q)) {
            s->txt_with_value++;
            return;
        }
    }
}

static apr_status_t xfer(void *baton, unsigned char **aw, apr_size_t *alen,
                         apr_pool_t *p, const char *server, int port,
                         const unsigned char *qw, apr_size_t qlen)
{
    stub_t *s = baton;
    ldns_pkt *q = NULL, *a = NULL;
    ldns_rr_type qt;
    const char *qname;
    size_t n;
    uint8_t *buf = NULL;
    size_t blen = 0;

    s->queries++;
    /* The code's own bounds (see the header). */
    REQUIRE(s->queries <= 4 + 1 + 2 * 16 + 32 + 9 + 2);
    printable(server);
    REQUIRE(strspn(server, "0123456789abcdef.:") == strlen(server));
    REQUIRE(port == 53);
    REQUIRE(ldns_wire2pkt(&q, qw, qlen) == LDNS_STATUS_OK);
    REQUIRE(ldns_pkt_qdcount(q) == 1);
    qt = ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(q), 0));
    qname = lname(s->p, ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(q),
                                                     0)));
    if (ldns_pkt_get_opcode(q) == LDNS_PACKET_UPDATE) {
        REQUIRE(ldns_pkt_tsig(q) != NULL);
        REQUIRE(strcmp(qname, "fuzz.example") == 0);
        s->updates++;
    }
    else if (qt == LDNS_RR_TYPE_NS) {
        /* The zone of the name: itself or a parent. */
        REQUIRE(name_in(NAME, qname));
        s->ns_zone = qname;
        s->ns_queries++;
    }
    else if (qt == LDNS_RR_TYPE_TXT) {
        REQUIRE(strcmp(qname, NAME) == 0);
        s->txt_queries++;
    }
    if (s->left < 2) {
        ldns_pkt_free(q);
        return APR_TIMEUP;
    }
    n = ((size_t)s->in[0] << 8) | s->in[1];
    s->in += 2;
    s->left -= 2;
    if (n == 0) {
        ldns_pkt_free(q);
        return APR_ECONNREFUSED;
    }
    if (n > s->left) {
        n = s->left;
    }
    *aw = apr_pmemdup(p, s->in, n);
    *alen = n;
    s->in += n;
    s->left -= n;
    if ((s->flags & 1) && n >= 2) {
        (*aw)[0] = qw[0];
        (*aw)[1] = qw[1];
    }
    if ((s->flags & 6) && ldns_wire2pkt(&a, *aw, *alen) == LDNS_STATUS_OK) {
        if (s->flags & 4) {
            ldns_rr_list_deep_free(ldns_pkt_question(a));
            ldns_pkt_set_question(a, ldns_rr_list_clone(
                                         ldns_pkt_question(q)));
            ldns_pkt_set_qdcount(a, ldns_pkt_qdcount(q));
        }
        if ((s->flags & 2) && ldns_pkt_tsig(q)
            && ldns_rr_rd_count(ldns_pkt_tsig(q)) > 3) {
            ldns_pkt_set_tsig(a, NULL);
            if (ldns_pkt_tsig_sign_next(a, "fuzz-key.", SECRET, 300,
                                        "hmac-sha256.",
                                        ldns_rr_rdf(ldns_pkt_tsig(q), 3),
                                        0) != LDNS_STATUS_OK) {
                ldns_pkt_free(a);
                a = NULL;
            }
        }
        if (a && ldns_pkt2wire(&buf, a, &blen) == LDNS_STATUS_OK) {
            *aw = apr_pmemdup(p, buf, blen);
            *alen = blen;
        }
        free(buf);
        ldns_pkt_free(a);
        a = NULL;
    }
    if (ldns_wire2pkt(&a, *aw, *alen) == LDNS_STATUS_OK) {
        note_answer(s, q, a);
        if (ldns_pkt_get_opcode(q) == LDNS_PACKET_UPDATE
            && (s->flags & 2) && ldns_pkt_id(a) == ldns_pkt_id(q)
            && ldns_pkt_get_rcode(a) == LDNS_RCODE_NOERROR) {
            s->updates_ok++;
        }
        ldns_pkt_free(a);
    }
    ldns_pkt_free(q);
    return APR_SUCCESS;
}

/* --- seeds (FUZZ_DNS_SEEDS=DIR: written once, then exit) ------------ */

typedef struct {
    char buf[8192];
    size_t len;
} seed_t;

/* One answer: rcode, then "A|N|D record" lines (answer, authority,
 * additional section). */
static void ans(seed_t *sd, ldns_pkt_rcode rc, const char *const *rrs)
{
    ldns_pkt *a = ldns_pkt_new();
    uint8_t *w = NULL;
    size_t n = 0;
    ldns_rr *rr;

    ldns_pkt_set_qr(a, true);
    ldns_pkt_set_rcode(a, (uint8_t)rc);
    for (; rrs && *rrs; rrs++) {
        REQUIRE(ldns_rr_new_frm_str(&rr, *rrs + 2, 0, NULL, NULL)
                == LDNS_STATUS_OK);
        ldns_pkt_push_rr(a, **rrs == 'A' ? LDNS_SECTION_ANSWER
                            : **rrs == 'N' ? LDNS_SECTION_AUTHORITY
                            : LDNS_SECTION_ADDITIONAL, rr);
    }
    REQUIRE(ldns_pkt2wire(&w, a, &n) == LDNS_STATUS_OK);
    REQUIRE(sd->len + 2 + n <= sizeof(sd->buf));
    sd->buf[sd->len++] = (char)(n >> 8);
    sd->buf[sd->len++] = (char)(n & 0xff);
    memcpy(sd->buf + sd->len, w, n);
    sd->len += n;
    free(w);
    ldns_pkt_free(a);
}

static void start(seed_t *sd, int flow, int flags)
{
    sd->buf[0] = (char)flow;
    sd->buf[1] = (char)flags;
    sd->len = 2;
}

static void put(const char *dir, const char *name, const seed_t *sd)
{
    FILE *f = fopen(apr_pstrcat(gp_seed, dir, "/", name, NULL), "wb");

    REQUIRE(f != NULL);
    fwrite(sd->buf, 1, sd->len, f);
    fclose(f);
}

#define RRS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* The answers of a wait that succeeds, two servers, from the SOA on. */
static void wait_ok(seed_t *sd, int lag)
{
    ans(sd, LDNS_RCODE_NXDOMAIN, RRS("N fuzz.example. 60 IN SOA "
        "ns1.fuzz.example. h.fuzz.example. 1 60 60 60 60"));
    ans(sd, LDNS_RCODE_NOERROR, RRS("A fuzz.example. 60 IN NS "
        "ns1.fuzz.example.", "A fuzz.example. 60 IN NS ns2.fuzz.example."));
    ans(sd, LDNS_RCODE_NOERROR, RRS("A ns1.fuzz.example. 60 IN A 127.0.0.2"));
    ans(sd, LDNS_RCODE_NOERROR, NULL);
    ans(sd, LDNS_RCODE_NOERROR, RRS("A ns2.fuzz.example. 60 IN A 127.0.0.3"));
    ans(sd, LDNS_RCODE_NOERROR, RRS("A ns2.fuzz.example. 60 IN AAAA ::1"));
    ans(sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN TXT \"" VALUE "\""));
    ans(sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN TXT \"" VALUE "\"",
        "A " NAME ". 60 IN TXT \"other\""));
    if (lag) {
        ans(sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN TXT \"old\""));
    }
    else {
        ans(sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN TXT \""
            VALUE "\""));
    }
}

static void make_seeds(const char *dir)
{
    static seed_t sd;
    char rr[128];
    int i;

    start(&sd, F_FOLLOW, 5);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_follow_none", &sd);
    start(&sd, F_FOLLOW, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME "
        "Tok.Acme.Pool.Example."));
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A tok.acme.pool.example. 60 IN CNAME "
        "z.fuzz.example."));
    ans(&sd, LDNS_RCODE_NXDOMAIN, NULL);
    put(dir, "seed_follow_chain", &sd);
    start(&sd, F_FOLLOW, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME b.example."));
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A b.example. 60 IN CNAME " NAME "."));
    put(dir, "seed_follow_loop", &sd);
    start(&sd, F_FOLLOW, 5);
    ans(&sd, LDNS_RCODE_SERVFAIL, NULL);
    put(dir, "seed_follow_servfail", &sd);
    start(&sd, F_FOLLOW, 0);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME evil.test."));
    put(dir, "seed_follow_wrong_id", &sd);
    start(&sd, F_FOLLOW, 1);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME evil.test."));
    put(dir, "seed_follow_no_question", &sd);

    start(&sd, F_WAIT, 5);
    wait_ok(&sd, 0);
    put(dir, "seed_wait_ok", &sd);
    start(&sd, F_WAIT, 5);
    wait_ok(&sd, 1);
    put(dir, "seed_wait_lag", &sd);
    start(&sd, F_WAIT, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("N evil.test. 60 IN SOA ns.evil.test. "
        "h.evil.test. 1 60 60 60 60"));
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A evil.test. 60 IN NS ns.evil.test."));
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A ns.evil.test. 60 IN A 192.0.2.1"));
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN TXT \"" VALUE
        "\""));
    put(dir, "regress_wait_soa_elsewhere", &sd);
    start(&sd, F_WAIT, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("N fuzz.example. 60 IN SOA "
        "ns1.fuzz.example. h.fuzz.example. 1 60 60 60 60"));
    {
        const char *list[41];
        for (i = 0; i < 40; i++) {
            apr_snprintf(rr, sizeof(rr), "A fuzz.example. 60 IN NS "
                         "ns%d.fuzz.example.", i);
            list[i] = apr_pstrdup(gp_seed, rr);
        }
        list[40] = NULL;
        ans(&sd, LDNS_RCODE_NOERROR, list);
    }
    put(dir, "regress_wait_ns_flood", &sd);

    start(&sd, F_UPDATE, 7);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_update_ok", &sd);
    start(&sd, F_UPDATE, 5);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_update_unsigned", &sd);
    start(&sd, F_UPDATE, 7);
    ans(&sd, LDNS_RCODE_REFUSED, NULL);
    put(dir, "seed_update_refused", &sd);
    start(&sd, F_UPDATE, 7);
    ans(&sd, LDNS_RCODE_NOTAUTH, NULL);
    put(dir, "seed_update_notauth", &sd);
    start(&sd, F_UPDATE, 3);
    sd.buf[sd.len++] = 0;
    sd.buf[sd.len++] = 0;
    put(dir, "seed_update_no_connection", &sd);

    start(&sd, F_PUBLISH, 7);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    wait_ok(&sd, 0);
    put(dir, "seed_publish_ok", &sd);
    start(&sd, F_PUBLISH, 7);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    wait_ok(&sd, 1);
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_publish_lag", &sd);

    start(&sd, F_CHECK, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME "
        "x.other.example."));
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_check_outside", &sd);
    start(&sd, F_CHECK, 5);
    ans(&sd, LDNS_RCODE_NOERROR, RRS("A " NAME ". 60 IN CNAME "
        "x.fuzz.example."));
    ans(&sd, LDNS_RCODE_NOERROR, NULL);
    put(dir, "seed_check_inside", &sd);
    start(&sd, F_CHECK, 1);
    /* 12 bytes announced: a header claiming five answers, and no more. */
    memcpy(sd.buf + sd.len, "\0\x0c\0\0\x81\x80\0\x01\0\x05\0\0\0", 14);
    sd.len += 14;
    put(dir, "seed_check_truncated", &sd);
    exit(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    static apr_array_header_t *zones;
    static apr_pool_t *gp;
    static int trace;           /* FUZZ_DNS_TRACE: each result on stderr */
    cs_dns_conf_t conf;
    cs_dns_zone_t *z;
    stub_t st;
    apr_pool_t *p;
    const char *err = NULL, *target = NULL, *where = NULL;
    apr_status_t rv = APR_SUCCESS;
    int flow;

    if (!initialized) {
        apr_initialize();
        apr_pool_create(&gp, NULL);
        zones = apr_array_make(gp, 1, sizeof(cs_dns_zone_t));
        z = apr_array_push(zones);
        z->zone = "fuzz.example";
        z->server = "127.0.0.1";
        z->port = 53;
        z->key_name = "fuzz-key";
        z->key_alg = "hmac-sha256";
        z->key_secret = SECRET;
        initialized = 1;
        trace = getenv("FUZZ_DNS_TRACE") != NULL;
        if (getenv("FUZZ_DNS_SEEDS")) {
            gp_seed = gp;
            make_seeds(getenv("FUZZ_DNS_SEEDS"));
        }
    }
    if (size < 2) {
        return 0;
    }
    apr_pool_create(&p, NULL);
    memset(&st, 0, sizeof(st));
    st.flags = data[1];
    st.in = data + 2;
    st.left = size - 2;
    st.p = p;
    st.cnames = apr_hash_make(p);
    memset(&conf, 0, sizeof(conf));
    conf.zones = zones;
    conf.resolver = "127.0.0.1:53";
    conf.wait = 1;                  /* one round, no sleep */
    conf.xfer = xfer;
    conf.xfer_baton = &st;
    z = &APR_ARRAY_IDX(zones, 0, cs_dns_zone_t);

    flow = data[0] % F_COUNT;
    switch (flow) {
    case F_FOLLOW:
        rv = cs_dns_follow(&target, p, &conf, NAME, &err);
        REQUIRE(st.queries <= 9);
        if (rv == APR_SUCCESS) {
            printable(target);
            REQUIRE(strcmp(target, NAME) == 0
                    || apr_hash_get(st.cnames, target, APR_HASH_KEY_STRING));
        }
        break;
    case F_WAIT:
        rv = cs_dns_wait(p, &conf, NAME, VALUE, &err);
        /* SOA up the labels, one NS, A and AAAA of 16 NS names at most,
         * a TXT for each of 32 servers at most. */
        REQUIRE(st.ns_queries <= 1);
        REQUIRE(st.queries <= 4 + 1 + 2 * 16 + 32);
        if (rv == APR_SUCCESS) {
            REQUIRE(st.txt_queries >= 1
                    && st.txt_with_value == st.txt_queries);
        }
        break;
    case F_UPDATE:
        rv = cs_dns_update(p, &conf, z, NAME, VALUE, 1, &err);
        REQUIRE(st.queries == 1 && st.updates == 1);
        if (rv == APR_SUCCESS) {
            REQUIRE(st.updates_ok == 1);
        }
        break;
    case F_PUBLISH:
        rv = cs_dns01_publish(p, &conf, "a.fuzz.example", KEYAUTH, 1, &err);
        if (rv == APR_SUCCESS) {
            REQUIRE(st.updates == 1 && st.updates_ok == 1);
            REQUIRE(st.txt_queries >= 1
                    && st.txt_with_value == st.txt_queries);
        }
        REQUIRE(st.updates <= 2);
        break;
    case F_CHECK:
        rv = cs_dns01_check(&target, &where, p, &conf, "a.fuzz.example",
                            &err);
        REQUIRE(st.queries <= 9);
        if (rv == APR_SUCCESS) {
            REQUIRE(name_in(target, "fuzz.example"));
            REQUIRE(strcmp(where, "zone fuzz.example") == 0);
        }
        break;
    }
    if (trace) {
        fprintf(stderr, "flow %d: rv %d, %d queries: %s\n", flow, rv,
                st.queries, rv ? err : "ok");
    }
    if (rv != APR_SUCCESS) {
        printable(err);
    }
    if (target) {
        size_t n = strlen(target);

        REQUIRE(n > 0 && (n == 1 || target[n - 1] != '.'));
        REQUIRE(strcspn(target, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == n);
    }
    REQUIRE(ERR_peek_error() == 0);
    apr_pool_destroy(p);
    return 0;
}
