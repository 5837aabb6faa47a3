/*
 * pp_parse_bench.c: cost of parsing one PROXY protocol header with
 * pp_header_parse(), for three typical headers:
 *
 *   v1      "PROXY TCP4 203.0.113.195 192.0.2.10 56324 443\r\n"
 *   v2      v2 PROXY, TCP over IPv4, no TLV (what haproxy's send-proxy-v2
 *           sends by default)
 *   v2tlv   v2 PROXY, TCP over IPv4, with CRC32C, UNIQUE_ID (32 bytes) and
 *           SSL (version, cipher, sig_alg, key_alg, CN) TLVs, like haproxy's
 *           send-proxy-v2-ssl-cn with proxy-v2-options crc32c,unique-id
 *
 * Two ways of calling the parser are measured:
 *
 *   oneshot      the whole header is in the buffer: one call
 *   incremental  what mod_proxy_protocol does: start with 0 bytes, call,
 *                add the *need bytes the parser asks for, call again, until
 *                PP_OK.  "calls" is how many parser calls (and so how many
 *                ap_get_brigade() reads, minus one) one header costs.
 *
 * Build (from the top of the tree):
 *   cc -O2 -I mod_proxy_protocol bench/pp_parse_bench.c \
 *      mod_proxy_protocol/pp_parse.c mod_proxy_protocol/pp_cidr.c \
 *      -o pp_parse_bench
 *
 * Usage:
 *   pp_parse_bench                     timing table (ns/header)
 *   pp_parse_bench CASE MODE ITERS     parse one case ITERS times and print
 *                                      nothing else; for callgrind:
 *       valgrind --tool=callgrind --toggle-collect=pp_header_parse \
 *                ./pp_parse_bench v2tlv oneshot 100000
 *   then Ir of the run / ITERS = instructions per header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pp_parse.h"

#define MAX_V2      16384       /* ProxyProtocolMaxHeaderSize default */

typedef struct {
    const char *name;
    unsigned char buf[512];
    size_t len;
} bench_case_t;

static bench_case_t cases[3];

/* ------------------------------------------------------------------ */
/* Building the headers                                                */
/* ------------------------------------------------------------------ */

static size_t put_tlv(unsigned char *p, unsigned type, const void *value,
                      size_t len)
{
    p[0] = (unsigned char)type;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    memcpy(p + 3, value, len);
    return 3 + len;
}

/* Fixed part and IPv4 block; returns the offset where TLVs start. */
static size_t put_v2_ipv4(unsigned char *b)
{
    static const unsigned char sig[12] = {
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
    };
    static const unsigned char block[12] = {
        203, 0, 113, 195,       /* source 203.0.113.195 */
        192, 0, 2, 10,          /* destination 192.0.2.10 */
        0xDC, 0x04,             /* source port 56324 */
        0x01, 0xBB              /* destination port 443 */
    };

    memcpy(b, sig, 12);
    b[12] = 0x21;               /* version 2, PROXY */
    b[13] = 0x11;               /* AF_INET, STREAM */
    memcpy(b + 16, block, sizeof(block));
    return 16 + sizeof(block);
}

static void set_v2_length(unsigned char *b, size_t total)
{
    b[14] = (unsigned char)((total - 16) >> 8);
    b[15] = (unsigned char)(total - 16);
}

static void build_cases(void)
{
    static const char v1[] =
        "PROXY TCP4 203.0.113.195 192.0.2.10 56324 443\r\n";
    bench_case_t *c;
    unsigned char *b, ssl[128], *s, uid[32], crc_field[4] = { 0, 0, 0, 0 };
    size_t off, crc_off, i;
    uint32_t crc;

    c = &cases[0];
    c->name = "v1";
    c->len = strlen(v1);
    memcpy(c->buf, v1, c->len);

    c = &cases[1];
    c->name = "v2";
    b = c->buf;
    c->len = put_v2_ipv4(b);
    set_v2_length(b, c->len);

    c = &cases[2];
    c->name = "v2tlv";
    b = c->buf;
    off = put_v2_ipv4(b);
    crc_off = off + 3;
    off += put_tlv(b + off, PP_TLV_CRC32C, crc_field, 4);
    for (i = 0; i < sizeof(uid); i++) {
        uid[i] = (unsigned char)(0xA0 + i);
    }
    off += put_tlv(b + off, PP_TLV_UNIQUE_ID, uid, sizeof(uid));
    /* SSL: client flags (SSL | CERT_CONN | CERT_SESS), verify 0, subs. */
    s = ssl;
    *s++ = 0x07;
    *s++ = 0; *s++ = 0; *s++ = 0; *s++ = 0;
    s += put_tlv(s, PP_SUBTLV_SSL_VERSION, "TLSv1.3", 7);
    s += put_tlv(s, PP_SUBTLV_SSL_CN, "client.example.com", 18);
    s += put_tlv(s, PP_SUBTLV_SSL_CIPHER, "TLS_AES_256_GCM_SHA384", 22);
    s += put_tlv(s, PP_SUBTLV_SSL_SIG_ALG, "RSA-SHA256", 10);
    s += put_tlv(s, PP_SUBTLV_SSL_KEY_ALG, "RSA2048", 7);
    off += put_tlv(b + off, PP_TLV_SSL, ssl, (size_t)(s - ssl));
    c->len = off;
    set_v2_length(b, c->len);
    /* The CRC covers the whole header with its own field zeroed. */
    crc = pp_crc32c(0, b, c->len);
    b[crc_off] = (unsigned char)(crc >> 24);
    b[crc_off + 1] = (unsigned char)(crc >> 16);
    b[crc_off + 2] = (unsigned char)(crc >> 8);
    b[crc_off + 3] = (unsigned char)crc;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                             */
/* ------------------------------------------------------------------ */

static void die_parse(const bench_case_t *c, const pp_header_t *hdr,
                      pp_result_t r)
{
    fprintf(stderr, "pp_parse_bench: case %s did not parse (result %d: %s)\n",
            c->name, (int)r, r == PP_ERROR ? hdr->error : "need more");
    exit(1);
}

/* One header, whole buffer at once. */
static void parse_oneshot(const bench_case_t *c)
{
    pp_header_t hdr;
    size_t need;
    pp_result_t r = pp_header_parse(&hdr, c->buf, c->len, MAX_V2, &need);

    if (r != PP_OK || hdr.length != c->len) {
        die_parse(c, &hdr, r);
    }
}

/* One header the way mod_proxy_protocol reads it; returns the calls. */
static unsigned parse_incremental(const bench_case_t *c)
{
    pp_header_t hdr;
    size_t n = 0, need;
    unsigned calls = 0;
    pp_result_t r;

    for (;;) {
        calls++;
        r = pp_header_parse(&hdr, c->buf, n, MAX_V2, &need);
        if (r == PP_OK) {
            break;
        }
        if (r == PP_ERROR || n + need > c->len) {
            die_parse(c, &hdr, r);
        }
        n += need;
    }
    if (hdr.length != c->len) {
        die_parse(c, &hdr, r);
    }
    return calls;
}

static void run(const bench_case_t *c, int incremental, long iters)
{
    long i;

    for (i = 0; i < iters; i++) {
        if (incremental) {
            parse_incremental(c);
        }
        else {
            parse_oneshot(c);
        }
    }
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/*
 * ns per header: ITERS parses per batch, BATCHES batches; the median batch
 * is reported (the machine is shared), and the fastest as a floor.
 */
#define BATCHES 15

static void time_case(const bench_case_t *c, int incremental, double *median,
                      double *best)
{
    double t[BATCHES], t0;
    long iters = 1000;
    int i;

    /* Warm up, and size a batch to take about 20 ms. */
    for (;;) {
        t0 = now_ns();
        run(c, incremental, iters);
        if (now_ns() - t0 > 20e6 || iters > 100000000L) {
            break;
        }
        iters *= 2;
    }
    for (i = 0; i < BATCHES; i++) {
        t0 = now_ns();
        run(c, incremental, iters);
        t[i] = (now_ns() - t0) / (double)iters;
    }
    qsort(t, BATCHES, sizeof(t[0]), cmp_double);
    *median = t[BATCHES / 2];
    *best = t[0];
}

static const bench_case_t *find_case(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (strcmp(cases[i].name, name) == 0) {
            return &cases[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t i;

    build_cases();

    if (argc == 4) {
        /* Fixed work for callgrind: no timing, no output. */
        const bench_case_t *c = find_case(argv[1]);
        long iters = atol(argv[3]);
        int incremental = strcmp(argv[2], "incremental") == 0;

        if (!c || iters <= 0
            || (!incremental && strcmp(argv[2], "oneshot") != 0)) {
            fprintf(stderr, "usage: %s [v1|v2|v2tlv oneshot|incremental "
                    "ITERATIONS]\n", argv[0]);
            return 2;
        }
        run(c, incremental, iters);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [v1|v2|v2tlv oneshot|incremental "
                "ITERATIONS]\n", argv[0]);
        return 2;
    }

    printf("%-6s %6s  %14s %14s  %6s %14s %14s\n", "header", "bytes",
           "oneshot ns", "(fastest)", "calls", "increm. ns", "(fastest)");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bench_case_t *c = &cases[i];
        double om, ob, im, ib;
        unsigned calls = parse_incremental(c);

        time_case(c, 0, &om, &ob);
        time_case(c, 1, &im, &ib);
        printf("%-6s %6zu  %14.1f %14.1f  %6u %14.1f %14.1f\n", c->name,
               c->len, om, ob, calls, im, ib);
    }
    return 0;
}
