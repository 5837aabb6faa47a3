/*
 * test_pp_parse.c: unit tests of the PROXY protocol parser (pp_parse.c)
 * and of the CIDR rules (pp_cidr.c).
 *
 * Expected values come from haproxy's doc/proxy-protocol.txt, not from the
 * parser: v2 headers are built byte by byte here, and CRC32C is computed by
 * an independent bitwise implementation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "pp_cidr.h"
#include "pp_parse.h"
#include "unit.h"

#define MAX_V2  16384   /* ProxyProtocolMaxHeaderSize default */

/* What typically follows a header in the same segment: a TLS ClientHello. */
static const unsigned char trailer[] = {
    0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03
};

static const unsigned char v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

static pp_result_t parse(pp_header_t *hdr, const void *buf, size_t len)
{
    size_t need;

    return pp_header_parse(hdr, buf, len, MAX_V2, &need);
}

/* ------------------------------------------------------------------ */
/* Reference CRC32C (Castagnoli, reflected polynomial 0x82F63B78)      */
/* ------------------------------------------------------------------ */

static uint32_t ref_crc32c(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFU;
    int k;

    while (n--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82F63B78U & (0U - (crc & 1U)));
        }
    }
    return ~crc;
}

/* ------------------------------------------------------------------ */
/* v2 header builder                                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    unsigned char b[PP_V2_MAX_LEN + sizeof(trailer)];
    size_t n;
} v2_t;

static void put(v2_t *h, const void *p, size_t n)
{
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void put_byte(v2_t *h, unsigned c)
{
    h->b[h->n++] = (unsigned char)c;
}

static void put_be16(v2_t *h, unsigned v)
{
    put_byte(h, (v >> 8) & 0xFF);
    put_byte(h, v & 0xFF);
}

/* The fixed part; the length field is filled by v2_end(). */
static void v2_begin(v2_t *h, unsigned vercmd, unsigned fam)
{
    h->n = 0;
    put(h, v2_sig, sizeof(v2_sig));
    put_byte(h, vercmd);
    put_byte(h, fam);
    put_be16(h, 0);
}

static void v2_inet(v2_t *h, const char *src, const char *dst,
                    unsigned sport, unsigned dport)
{
    unsigned char a[4];

    inet_pton(AF_INET, src, a);
    put(h, a, 4);
    inet_pton(AF_INET, dst, a);
    put(h, a, 4);
    put_be16(h, sport);
    put_be16(h, dport);
}

static void v2_inet6(v2_t *h, const char *src, const char *dst,
                     unsigned sport, unsigned dport)
{
    unsigned char a[16];

    inet_pton(AF_INET6, src, a);
    put(h, a, 16);
    inet_pton(AF_INET6, dst, a);
    put(h, a, 16);
    put_be16(h, sport);
    put_be16(h, dport);
}

static void v2_unix(v2_t *h, const char *src, const char *dst)
{
    unsigned char a[108];

    memset(a, 0, sizeof(a));
    memcpy(a, src, strlen(src));
    put(h, a, sizeof(a));
    memset(a, 0, sizeof(a));
    memcpy(a, dst, strlen(dst));
    put(h, a, sizeof(a));
}

static void v2_tlv(v2_t *h, unsigned type, const void *value, size_t len)
{
    put_byte(h, type);
    put_be16(h, (unsigned)len);
    put(h, value, len);
}

/* A CRC32C TLV with a zero value; returns where the value is. */
static size_t v2_crc_slot(v2_t *h)
{
    v2_tlv(h, PP_TLV_CRC32C, "\0\0\0\0", 4);
    return h->n - 4;
}

static void v2_end(v2_t *h)
{
    size_t len = h->n - PP_V2_FIXED_LEN;

    h->b[14] = (unsigned char)(len >> 8);
    h->b[15] = (unsigned char)(len & 0xFF);
}

/* After v2_end(): the checksum of the whole header, network order. */
static void v2_fill_crc(v2_t *h, size_t slot)
{
    uint32_t crc = ref_crc32c(h->b, h->n);

    h->b[slot] = (unsigned char)(crc >> 24);
    h->b[slot + 1] = (unsigned char)(crc >> 16);
    h->b[slot + 2] = (unsigned char)(crc >> 8);
    h->b[slot + 3] = (unsigned char)crc;
}

static v2_t *v2_new(void)
{
    v2_t *h = calloc(1, sizeof(*h));

    if (!h) {
        perror("calloc");
        exit(2);
    }
    return h;
}

/* The usual PROXY TCP4 header, TLVs to follow. */
static void v2_begin_inet(v2_t *h)
{
    v2_begin(h, 0x21, 0x11);
    v2_inet(h, "192.0.2.1", "198.51.100.2", 56324, 443);
}

static pp_result_t v2_parse(pp_header_t *hdr, const v2_t *h)
{
    return parse(hdr, h->b, h->n);
}

/* ------------------------------------------------------------------ */
/* Export collector                                                    */
/* ------------------------------------------------------------------ */

#define EX_MAX      24
#define EX_VALUE    1100    /* 4 * 256 + 1: the longest value tests use */

typedef struct {
    int n;
    char name[EX_MAX][64];
    char value[EX_MAX][EX_VALUE];
    pp_format_t fmt[EX_MAX];
} exports_t;

static void collect_one(void *baton, const char *name, pp_format_t fmt,
                        const unsigned char *value, size_t len)
{
    exports_t *ex = baton;
    size_t flen = pp_format_len(fmt, len);
    size_t n;

    if (!CHECK(ex->n < EX_MAX) || !CHECK(flen <= EX_VALUE)) {
        return;
    }
    snprintf(ex->name[ex->n], sizeof(ex->name[0]), "%s", name);
    n = pp_format_value(ex->value[ex->n], fmt, value, len);
    CHECK(n == strlen(ex->value[ex->n]) && n < flen);
    ex->fmt[ex->n] = fmt;
    ex->n++;
}

static void collect(exports_t *ex, const pp_header_t *hdr)
{
    memset(ex, 0, sizeof(*ex));
    pp_header_export_tlvs(hdr, collect_one, ex);
}

static const char *ex_get(const exports_t *ex, const char *name)
{
    int i;

    for (i = 0; i < ex->n; i++) {
        if (strcmp(ex->name[i], name) == 0) {
            return ex->value[i];
        }
    }
    return NULL;
}

static int ex_count(const exports_t *ex, const char *name)
{
    int i, c = 0;

    for (i = 0; i < ex->n; i++) {
        c += strcmp(ex->name[i], name) == 0;
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* Version 1                                                           */
/* ------------------------------------------------------------------ */

static void v1_accepts(const char *name, const char *line)
{
    pp_header_t hdr;

    UNIT_CASE(name);
    if (CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK)) {
        CHECK_EQ_INT(hdr.length, strlen(line));
        CHECK_EQ_INT(hdr.version, 1);
    }
    else {
        printf("    %s\n", hdr.error);
    }
}

static void v1_rejects(const char *name, const char *line, size_t len)
{
    pp_header_t hdr;

    UNIT_CASE(name);
    if (CHECK_EQ_INT(parse(&hdr, line, len), PP_ERROR)) {
        CHECK(hdr.error != NULL);
    }
}

static void test_v1_valid(void)
{
    pp_header_t hdr;
    const char *line;
    unsigned char a[16];
    char buf[256];

    UNIT_CASE("v1 TCP4");
    line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK);
    CHECK_EQ_INT(hdr.version, 1);
    CHECK_EQ_INT(hdr.command, PP_CMD_PROXY);
    CHECK_EQ_INT(hdr.family, PP_FAM_INET);
    CHECK_EQ_INT(hdr.transport, PP_TRANS_STREAM);
    CHECK_EQ_INT(hdr.has_addresses, 1);
    inet_pton(AF_INET, "192.0.2.1", a);
    CHECK_MEM(hdr.src_addr, a, 4);
    inet_pton(AF_INET, "198.51.100.2", a);
    CHECK_MEM(hdr.dst_addr, a, 4);
    CHECK_EQ_INT(hdr.src_port, 56324);
    CHECK_EQ_INT(hdr.dst_port, 443);
    CHECK_EQ_INT(hdr.length, strlen(line));
    CHECK_EQ_INT(hdr.tlvs_len, 0);

    UNIT_CASE("v1 TCP6");
    line = "PROXY TCP6 2001:db8::1 2001:DB8::A:2 1 65535\r\n";
    CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK);
    CHECK_EQ_INT(hdr.family, PP_FAM_INET6);
    CHECK_EQ_INT(hdr.transport, PP_TRANS_STREAM);
    CHECK_EQ_INT(hdr.has_addresses, 1);
    inet_pton(AF_INET6, "2001:db8::1", a);
    CHECK_MEM(hdr.src_addr, a, 16);
    inet_pton(AF_INET6, "2001:db8::a:2", a);
    CHECK_MEM(hdr.dst_addr, a, 16);
    CHECK_EQ_INT(hdr.src_port, 1);
    CHECK_EQ_INT(hdr.dst_port, 65535);
    CHECK_EQ_INT(hdr.length, strlen(line));

    UNIT_CASE("v1 UNKNOWN short form");
    line = "PROXY UNKNOWN\r\n";
    CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK);
    CHECK_EQ_INT(hdr.length, 15);
    CHECK_EQ_INT(hdr.family, PP_FAM_UNSPEC);
    CHECK_EQ_INT(hdr.has_addresses, 0);

    UNIT_CASE("v1 UNKNOWN long form");
    line = "PROXY UNKNOWN anything\r\n";
    CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK);
    CHECK_EQ_INT(hdr.length, strlen(line));
    CHECK_EQ_INT(hdr.has_addresses, 0);

    v1_accepts("v1 UNKNOWN with addresses",
               "PROXY UNKNOWN 192.0.2.1 198.51.100.2 56324 443\r\n");
    /* "the receiver must ignore anything presented before the CRLF" */
    v1_accepts("v1 UNKNOWN ignores what follows",
               "PROXY UNKNOWN  double  spaces \x01\xff\r\n");
    v1_accepts("v1 TCP4 extremes",
               "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
    v1_accepts("v1 port 0", "PROXY TCP4 192.0.2.1 192.0.2.2 0 0\r\n");
    v1_accepts("v1 TCP6 ::", "PROXY TCP6 :: ::1 80 443\r\n");
    v1_accepts("v1 TCP6 with embedded IPv4",
               "PROXY TCP6 ::ffff:192.0.2.1 64:ff9b::198.51.100.2 80 443\r\n");
    v1_accepts("v1 TCP6 longest canonical",
               "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");

    UNIT_CASE("v1 107 bytes (UNKNOWN)");
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 105, "\r\n", 2);
    CHECK_EQ_INT(parse(&hdr, buf, 107), PP_OK);
    CHECK_EQ_INT(hdr.length, 107);

    line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
           "fff:ffff:ffff:ffff:ffff:ffff:1.2.3.4 65535 65535\r\n";
    UNIT_CASE("v1 107 bytes (TCP6)");
    CHECK_EQ_INT(strlen(line), 107);
    v1_accepts("v1 107 bytes (TCP6)", line);

    UNIT_CASE("v1 followed by data");
    line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    CHECK_EQ_INT(parse(&hdr, line, strlen(line)), PP_OK);
    CHECK_EQ_INT(hdr.length, 45);

    UNIT_CASE("v1 bare CR at the end waits for LF");
    line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r";
    {
        size_t need = 0;
        CHECK_EQ_INT(pp_header_parse(&hdr, (const unsigned char *)line,
                                     strlen(line), MAX_V2, &need),
                     PP_NEED_MORE);
        CHECK_EQ_INT(need, 1);
    }

    UNIT_CASE("v1 no TLVs exported");
    line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    {
        exports_t ex;
        parse(&hdr, line, strlen(line));
        collect(&ex, &hdr);
        CHECK_EQ_INT(ex.n, 0);
    }
}

#define TCP4_TAIL " 192.0.2.1 198.51.100.2 56324 443\r\n"
#define A4  "PROXY TCP4 %s 198.51.100.2 56324 443\r\n"

static const struct {
    const char *name;
    const char *line;
} v1_bad[] = {
    /* separators: exactly one space */
    { "v1 double space after PROXY", "PROXY  TCP4" TCP4_TAIL },
    { "v1 double space after TCP4",
      "PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n" },
    { "v1 double space between addresses",
      "PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n" },
    { "v1 double space before source port",
      "PROXY TCP4 192.0.2.1 198.51.100.2  56324 443\r\n" },
    { "v1 double space before destination port",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324  443\r\n" },
    { "v1 leading space", " PROXY TCP4" TCP4_TAIL },
    { "v1 space before CRLF",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n" },
    { "v1 tab separator", "PROXY\tTCP4" TCP4_TAIL },
    { "v1 tab between fields",
      "PROXY TCP4 192.0.2.1\t198.51.100.2 56324 443\r\n" },
    /* line end: CRLF only */
    { "v1 bare LF", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n" },
    { "v1 bare CR", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX" },
    { "v1 CR CR LF", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\r\n" },
    { "v1 LF CR", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n\r" },
    { "v1 LF inside", "PROXY TCP4 192.0.2.1 198.51.100.2 56324\n443\r\n" },
    { "v1 CR inside", "PROXY TCP4 192.0.2.1\r198.51.100.2 56324 443\r\n" },
    { "v1 UNKNOWN bare LF", "PROXY UNKNOWN\n" },
    { "v1 UNKNOWN bare CR", "PROXY UNKNOWN\rGET" },
    /* keywords */
    { "v1 lower-case proxy", "proxy TCP4" TCP4_TAIL },
    { "v1 mixed-case Proxy", "Proxy TCP4" TCP4_TAIL },
    { "v1 lower-case tcp4", "PROXY tcp4" TCP4_TAIL },
    { "v1 TCP5", "PROXY TCP5" TCP4_TAIL },
    { "v1 TCP", "PROXY TCP" TCP4_TAIL },
    { "v1 TCP44", "PROXY TCP44" TCP4_TAIL },
    { "v1 UDP4", "PROXY UDP4" TCP4_TAIL },
    { "v1 lower-case unknown", "PROXY unknown\r\n" },
    { "v1 UNKNOWNX", "PROXY UNKNOWNX\r\n" },
    { "v1 PROXYTCP4 without space", "PROXYTCP4" TCP4_TAIL },
    /* missing fields */
    { "v1 PROXY alone", "PROXY\r\n" },
    { "v1 PROXY and space", "PROXY \r\n" },
    { "v1 TCP4 alone", "PROXY TCP4\r\n" },
    { "v1 TCP4 and space", "PROXY TCP4 \r\n" },
    { "v1 TCP6 alone", "PROXY TCP6\r\n" },
    { "v1 source only", "PROXY TCP4 192.0.2.1\r\n" },
    { "v1 no ports", "PROXY TCP4 192.0.2.1 198.51.100.2\r\n" },
    { "v1 no destination port",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n" },
    { "v1 empty destination port",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 \r\n" },
    { "v1 TCP6 no destination port", "PROXY TCP6 ::1 ::1 80\r\n" },
    /* trailing data */
    { "v1 a fifth field",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 x\r\n" },
    { "v1 two lines' worth",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 PROXY\r\n" },
    { "v1 junk glued to the port",
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443x\r\n" },
    /* IPv4 addresses: dotted quad only */
    { "v1 octal 010.1.1.1", "PROXY TCP4 010.1.1.1 198.51.100.2 80 443\r\n" },
    { "v1 leading zero in last octet",
      "PROXY TCP4 192.0.2.01 198.51.100.2 80 443\r\n" },
    { "v1 leading zero 00", "PROXY TCP4 00.1.1.1 198.51.100.2 80 443\r\n" },
    { "v1 leading zero in destination",
      "PROXY TCP4 192.0.2.1 198.051.100.2 80 443\r\n" },
    { "v1 integer address 16777217",
      "PROXY TCP4 16777217 198.51.100.2 80 443\r\n" },
    { "v1 short form 1.2.3", "PROXY TCP4 1.2.3 198.51.100.2 80 443\r\n" },
    { "v1 short form 127.1", "PROXY TCP4 127.1 198.51.100.2 80 443\r\n" },
    { "v1 five parts", "PROXY TCP4 1.2.3.4.5 198.51.100.2 80 443\r\n" },
    { "v1 octet 256", "PROXY TCP4 256.1.1.1 198.51.100.2 80 443\r\n" },
    { "v1 hex 0x7f.0.0.1", "PROXY TCP4 0x7f.0.0.1 198.51.100.2 80 443\r\n" },
    { "v1 trailing dot", "PROXY TCP4 1.2.3.4. 198.51.100.2 80 443\r\n" },
    { "v1 empty octet", "PROXY TCP4 1..3.4 198.51.100.2 80 443\r\n" },
    { "v1 hostname", "PROXY TCP4 localhost 198.51.100.2 80 443\r\n" },
    { "v1 CIDR as address",
      "PROXY TCP4 192.0.2.0/24 198.51.100.2 80 443\r\n" },
    { "v1 address too long",
      "PROXY TCP4 1111.2222.3333.4444 198.51.100.2 80 443\r\n" },
    /* IPv6 addresses */
    { "v1 zone id fe80::1%eth0",
      "PROXY TCP6 fe80::1%eth0 2001:db8::2 80 443\r\n" },
    { "v1 zone id %1", "PROXY TCP6 fe80::1%1 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 hostname", "PROXY TCP6 example.com 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 hostname of hex letters",
      "PROXY TCP6 cafe.be 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 two ::", "PROXY TCP6 1::2::3 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 nine groups",
      "PROXY TCP6 1:2:3:4:5:6:7:8:9 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 group of 5 digits",
      "PROXY TCP6 2001:db8::12345 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 in brackets", "PROXY TCP6 [::1] 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 embedded octal",
      "PROXY TCP6 ::ffff:010.1.1.1 2001:db8::2 80 443\r\n" },
    { "v1 IPv6 single colon", "PROXY TCP6 : 2001:db8::2 80 443\r\n" },
    /* family must match the keyword */
    { "v1 TCP4 with IPv6 source", "PROXY TCP4 ::1 198.51.100.2 80 443\r\n" },
    { "v1 TCP4 with IPv6 destination",
      "PROXY TCP4 192.0.2.1 2001:db8::2 80 443\r\n" },
    { "v1 TCP4 with mapped IPv6",
      "PROXY TCP4 ::ffff:192.0.2.1 198.51.100.2 80 443\r\n" },
    { "v1 TCP6 with IPv4 addresses",
      "PROXY TCP6 192.0.2.1 198.51.100.2 80 443\r\n" },
    { "v1 TCP6 with IPv4 destination",
      "PROXY TCP6 2001:db8::1 198.51.100.2 80 443\r\n" },
    /* ports: decimal 0..65535, no sign, no leading zero */
    { "v1 port 00", "PROXY TCP4 192.0.2.1 198.51.100.2 00 443\r\n" },
    { "v1 port 080", "PROXY TCP4 192.0.2.1 198.51.100.2 080 443\r\n" },
    { "v1 destination port 080",
      "PROXY TCP4 192.0.2.1 198.51.100.2 80 080\r\n" },
    { "v1 port +80", "PROXY TCP4 192.0.2.1 198.51.100.2 +80 443\r\n" },
    { "v1 port -1", "PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n" },
    { "v1 port 65536", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n" },
    { "v1 destination port 65536",
      "PROXY TCP4 192.0.2.1 198.51.100.2 80 65536\r\n" },
    { "v1 port 99999", "PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n" },
    { "v1 port 123456", "PROXY TCP4 192.0.2.1 198.51.100.2 123456 443\r\n" },
    { "v1 port 0x50", "PROXY TCP4 192.0.2.1 198.51.100.2 0x50 443\r\n" },
    { "v1 port 8a", "PROXY TCP4 192.0.2.1 198.51.100.2 8a 443\r\n" },
    { "v1 port 4294967376 (wraps to 80)",
      "PROXY TCP4 192.0.2.1 198.51.100.2 4294967376 443\r\n" },
    { "v1 TCP6 port 65536", "PROXY TCP6 ::1 ::1 65536 443\r\n" },
    /* 108 bytes: one more than the longest line */
    { "v1 108 bytes (TCP6)",
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
      "ffff:ffff:ffff:ffff:ffff:ffff:1.2.3.4 65535 65535\r\n" },
    /* not a header at all */
    { "HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n" },
    { "TLS ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" },
};

static void test_v1_invalid(void)
{
    char buf[256];
    size_t i;

    for (i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
        v1_rejects(v1_bad[i].name, v1_bad[i].line, strlen(v1_bad[i].line));
    }

    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 106, "\r\n", 2);
    v1_rejects("v1 108 bytes (UNKNOWN)", buf, 108);

    /* No CRLF in the first 107 bytes: rejected without waiting for more. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    v1_rejects("v1 no CRLF within 107 bytes", buf, 107);
    v1_rejects("v1 no CRLF within 200 bytes", buf, 200);

    memcpy(buf, "PROXY TCP4 192.0.2.1\0" "198.51.100.2 80 443\r\n", 42);
    v1_rejects("v1 NUL inside", buf, 42);
}

/* ------------------------------------------------------------------ */
/* Version 2: fixed part, families, commands                           */
/* ------------------------------------------------------------------ */

static void v2_rejects(const char *name, const v2_t *h)
{
    pp_header_t hdr;

    UNIT_CASE(name);
    if (CHECK_EQ_INT(v2_parse(&hdr, h), PP_ERROR)) {
        CHECK(hdr.error != NULL);
    }
}

static void v2_accepts(const char *name, const v2_t *h, pp_header_t *hdr)
{
    UNIT_CASE(name);
    if (CHECK_EQ_INT(v2_parse(hdr, h), PP_OK)) {
        CHECK_EQ_INT(hdr->version, 2);
        CHECK_EQ_INT(hdr->length, h->n);
    }
    else {
        printf("    %s\n", hdr->error);
    }
}

static void test_v2_basic(void)
{
    v2_t *h = v2_new();
    pp_header_t hdr;
    unsigned char a[16];
    unsigned i;
    char name[64];

    v2_begin_inet(h);
    v2_end(h);
    v2_accepts("v2 PROXY TCP4", h, &hdr);
    CHECK_EQ_INT(hdr.command, PP_CMD_PROXY);
    CHECK_EQ_INT(hdr.family, PP_FAM_INET);
    CHECK_EQ_INT(hdr.transport, PP_TRANS_STREAM);
    CHECK_EQ_INT(hdr.has_addresses, 1);
    inet_pton(AF_INET, "192.0.2.1", a);
    CHECK_MEM(hdr.src_addr, a, 4);
    inet_pton(AF_INET, "198.51.100.2", a);
    CHECK_MEM(hdr.dst_addr, a, 4);
    CHECK_EQ_INT(hdr.src_port, 56324);
    CHECK_EQ_INT(hdr.dst_port, 443);
    CHECK_EQ_INT(hdr.length, 28);
    CHECK_EQ_INT(hdr.tlvs_len, 0);

    UNIT_CASE("v2 followed by a ClientHello");
    put(h, trailer, sizeof(trailer));
    CHECK_EQ_INT(v2_parse(&hdr, h), PP_OK);
    CHECK_EQ_INT(hdr.length, 28);
    CHECK_EQ_INT(hdr.tlvs_len, 0);

    v2_begin(h, 0x21, 0x21);
    v2_inet6(h, "2001:db8::1", "2001:db8::2", 1, 65535);
    v2_end(h);
    v2_accepts("v2 PROXY TCP6", h, &hdr);
    CHECK_EQ_INT(hdr.family, PP_FAM_INET6);
    CHECK_EQ_INT(hdr.transport, PP_TRANS_STREAM);
    CHECK_EQ_INT(hdr.has_addresses, 1);
    inet_pton(AF_INET6, "2001:db8::1", a);
    CHECK_MEM(hdr.src_addr, a, 16);
    inet_pton(AF_INET6, "2001:db8::2", a);
    CHECK_MEM(hdr.dst_addr, a, 16);
    CHECK_EQ_INT(hdr.src_port, 1);
    CHECK_EQ_INT(hdr.dst_port, 65535);
    CHECK_EQ_INT(hdr.length, 52);

    /* Signature: every byte matters. */
    for (i = 0; i < 12; i++) {
        v2_begin_inet(h);
        v2_end(h);
        h->b[i] ^= 0x01;
        snprintf(name, sizeof(name), "v2 signature byte %u wrong", i);
        v2_rejects(name, h);
    }

    /* Version: the high nibble of byte 13 must be 2. */
    v2_begin_inet(h);
    v2_end(h);
    h->b[12] = 0x11;
    v2_rejects("v2 version 1 (0x11)", h);
    h->b[12] = 0x31;
    v2_rejects("v2 version 3 (0x31)", h);
    h->b[12] = 0x01;
    v2_rejects("v2 version 0 (0x01)", h);
    h->b[12] = 0xF1;
    v2_rejects("v2 version 15 (0xF1)", h);
    h->b[12] = 0x10;
    v2_rejects("v2 version 1 LOCAL (0x10)", h);

    /* Command: LOCAL or PROXY only. */
    h->b[12] = 0x22;
    v2_rejects("v2 command 2 (0x22)", h);
    h->b[12] = 0x2F;
    v2_rejects("v2 command 15 (0x2F)", h);

    UNIT_CASE("v2 version checked before the fixed part is complete");
    {
        size_t need;
        h->b[12] = 0x31;
        CHECK_EQ_INT(pp_header_parse(&hdr, h->b, 13, MAX_V2, &need),
                     PP_ERROR);
    }

    /* LOCAL: the real peer is kept and the block is skipped unread. */
    v2_begin(h, 0x20, 0x00);
    v2_end(h);
    v2_accepts("v2 LOCAL, empty", h, &hdr);
    CHECK_EQ_INT(hdr.command, PP_CMD_LOCAL);
    CHECK_EQ_INT(hdr.has_addresses, 0);
    CHECK_EQ_INT(hdr.length, 16);

    v2_begin(h, 0x20, 0x11);
    v2_inet(h, "192.0.2.1", "198.51.100.2", 56324, 443);
    v2_end(h);
    v2_accepts("v2 LOCAL with a TCP4 block", h, &hdr);
    CHECK_EQ_INT(hdr.command, PP_CMD_LOCAL);
    CHECK_EQ_INT(hdr.has_addresses, 0);

    v2_begin(h, 0x20, 0xFF);
    put(h, "\xde\xad\xbe\xef\x00\xff\x42", 7);
    v2_end(h);
    v2_accepts("v2 LOCAL with garbage and an invalid family", h, &hdr);
    CHECK_EQ_INT(hdr.command, PP_CMD_LOCAL);
    CHECK_EQ_INT(hdr.has_addresses, 0);
    CHECK_EQ_INT(hdr.length, 23);

    v2_begin(h, 0x20, 0x21);
    put(h, "\x01\x02\x03", 3);
    v2_end(h);
    v2_accepts("v2 LOCAL with TCP6 family and a short block", h, &hdr);
    CHECK_EQ_INT(hdr.has_addresses, 0);

    v2_begin(h, 0x20, 0x11);
    v2_inet(h, "192.0.2.1", "198.51.100.2", 56324, 443);
    put(h, "\x01\xff\xff\x00", 4);          /* a TLV that overruns */
    v2_tlv(h, PP_TLV_CRC32C, "\x12\x34\x56\x78", 4);   /* a wrong CRC */
    v2_end(h);
    v2_accepts("v2 LOCAL with TLV garbage and a wrong CRC", h, &hdr);
    CHECK_EQ_INT(hdr.has_addresses, 0);
    {
        exports_t ex;
        collect(&ex, &hdr);
        CHECK_EQ_INT(ex.n, 0);
    }

    free(h);
}

static const struct {
    unsigned fam;
    size_t block;
    pp_family_t family;
    pp_transport_t transport;
    int has_addresses;
    const char *name;
} families[] = {
    { 0x00, 0,   PP_FAM_UNSPEC, PP_TRANS_UNSPEC, 0, "v2 PROXY UNSPEC (0x00)" },
    { 0x11, 12,  PP_FAM_INET,   PP_TRANS_STREAM, 1, "v2 PROXY TCP4 (0x11)" },
    { 0x12, 12,  PP_FAM_INET,   PP_TRANS_DGRAM,  0, "v2 PROXY UDP4 (0x12)" },
    { 0x21, 36,  PP_FAM_INET6,  PP_TRANS_STREAM, 1, "v2 PROXY TCP6 (0x21)" },
    { 0x22, 36,  PP_FAM_INET6,  PP_TRANS_DGRAM,  0, "v2 PROXY UDP6 (0x22)" },
    { 0x31, 216, PP_FAM_UNIX,   PP_TRANS_STREAM, 0,
      "v2 PROXY UNIX stream (0x31)" },
    { 0x32, 216, PP_FAM_UNIX,   PP_TRANS_DGRAM,  0,
      "v2 PROXY UNIX dgram (0x32)" },
};

static void test_v2_families(void)
{
    static const unsigned bad[] = {
        0x01, 0x02, 0x03, 0x10, 0x13, 0x1F, 0x20, 0x23, 0x30, 0x33,
        0x41, 0x42, 0xF1, 0xFF
    };
    v2_t *h = v2_new();
    pp_header_t hdr;
    unsigned char zero[216];
    char name[80];
    size_t i;

    memset(zero, 0, sizeof(zero));
    for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        v2_begin(h, 0x21, families[i].fam);
        if (families[i].fam == 0x12) {
            v2_inet(h, "192.0.2.1", "198.51.100.2", 53, 53);
        }
        else if (families[i].fam == 0x22) {
            v2_inet6(h, "2001:db8::1", "2001:db8::2", 53, 53);
        }
        else if (families[i].fam == 0x31 || families[i].fam == 0x32) {
            v2_unix(h, "/run/client.sock", "/run/server.sock");
        }
        else {
            put(h, zero, families[i].block);
        }
        v2_end(h);
        v2_accepts(families[i].name, h, &hdr);
        CHECK_EQ_INT(hdr.command, PP_CMD_PROXY);
        CHECK_EQ_INT(hdr.family, families[i].family);
        CHECK_EQ_INT(hdr.transport, families[i].transport);
        CHECK_EQ_INT(hdr.has_addresses, families[i].has_addresses);
        CHECK_EQ_INT(hdr.tlvs_len, 0);

        if (families[i].block) {
            /* One byte short of the family's address block. */
            v2_begin(h, 0x21, families[i].fam);
            put(h, zero, families[i].block - 1);
            v2_end(h);
            snprintf(name, sizeof(name), "%s, len %u (short)",
                     families[i].name, (unsigned)families[i].block - 1);
            v2_rejects(name, h);
        }
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* A long enough block, so that only the family byte is wrong. */
        v2_begin(h, 0x21, bad[i]);
        put(h, zero, sizeof(zero));
        v2_end(h);
        snprintf(name, sizeof(name), "v2 PROXY family 0x%02X", bad[i]);
        v2_rejects(name, h);
    }

    /* UNSPEC: address information is ignored, whatever it is. */
    v2_begin(h, 0x21, 0x00);
    put(h, "\x01\xff\xff garbage", 11);
    v2_end(h);
    v2_accepts("v2 PROXY UNSPEC with a block", h, &hdr);
    CHECK_EQ_INT(hdr.has_addresses, 0);
    CHECK_EQ_INT(hdr.length, 27);

    free(h);
}

static void test_v2_max(void)
{
    v2_t *h = v2_new();
    pp_header_t hdr;
    size_t need;
    unsigned char *pad = calloc(1, 65535);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_NOOP, pad, 100);
    v2_end(h);                                  /* 131 bytes */

    UNIT_CASE("v2 size exactly max_v2");
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, h->n, 131, &need), PP_OK);
    CHECK_EQ_INT(hdr.length, 131);

    UNIT_CASE("v2 size max_v2 + 1");
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, h->n, 130, &need), PP_ERROR);

    UNIT_CASE("v2 too large is rejected from the fixed part alone");
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, 16, 130, &need), PP_ERROR);

    UNIT_CASE("v2 largest header (65551 bytes)");
    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_NOOP, pad, 65535 - 12 - 3);
    v2_end(h);
    CHECK_EQ_INT(h->n, PP_V2_MAX_LEN);
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, h->n, PP_V2_MAX_LEN, &need),
                 PP_OK);
    CHECK_EQ_INT(hdr.length, PP_V2_MAX_LEN);

    UNIT_CASE("v2 largest header, max_v2 above the protocol's limit");
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, h->n, (size_t)-1, &need),
                 PP_OK);

    UNIT_CASE("v2 largest header over the default limit");
    CHECK_EQ_INT(pp_header_parse(&hdr, h->b, h->n, MAX_V2, &need),
                 PP_ERROR);

    free(pad);
    free(h);
}

/* ------------------------------------------------------------------ */
/* Version 2: TLVs                                                     */
/* ------------------------------------------------------------------ */

static void test_v2_tlv_walk(void)
{
    v2_t *h = v2_new();
    pp_header_t hdr;
    pp_tlv_t tlv;
    size_t off;

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_NOOP, "", 0);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    v2_end(h);
    v2_accepts("v2 TLVs, one of length 0", h, &hdr);
    CHECK_EQ_INT(hdr.tlvs_len, 8);
    CHECK(hdr.tlvs == h->b + 28);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    put(h, "\x02\x00\x0a" "abcde", 8);      /* says 10, has 5 */
    v2_end(h);
    v2_rejects("v2 TLV overrun", h);

    v2_begin_inet(h);
    put(h, "\x02\xff\xff", 3);
    v2_end(h);
    v2_rejects("v2 TLV overrun, length 65535", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    put_byte(h, 0x04);
    v2_end(h);
    v2_rejects("v2 truncated TLV header (1 byte)", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    put(h, "\x04\x00", 2);
    v2_end(h);
    v2_rejects("v2 truncated TLV header (2 bytes)", h);

    v2_begin(h, 0x21, 0x12);
    v2_inet(h, "192.0.2.1", "198.51.100.2", 53, 53);
    put(h, "\x02\x00\x0a", 3);
    v2_end(h);
    v2_rejects("v2 DGRAM TLVs are checked too", h);

    UNIT_CASE("pp_tlv_next");
    off = 0;
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)"", 0, &off), 0);
    off = 0;
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)"\x01\x00", 2,
                             &off), -1);
    off = 0;
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)"\x01\x00\x01", 3,
                             &off), -1);
    off = 0;
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)
                             "\x01\x00\x01X\x02\x00\x00", 7, &off), 1);
    CHECK_EQ_INT(tlv.type, 1);
    CHECK_EQ_INT(tlv.len, 1);
    CHECK_EQ_INT(tlv.value[0], 'X');
    CHECK_EQ_INT(off, 4);
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)
                             "\x01\x00\x01X\x02\x00\x00", 7, &off), 1);
    CHECK_EQ_INT(tlv.type, 2);
    CHECK_EQ_INT(tlv.len, 0);
    CHECK_EQ_INT(pp_tlv_next(&tlv, (const unsigned char *)
                             "\x01\x00\x01X\x02\x00\x00", 7, &off), 0);

    free(h);
}

static void test_crc32c(void)
{
    v2_t *h = v2_new();
    pp_header_t hdr;
    unsigned char data[300];
    size_t i, slot, bad = 0;
    uint32_t s = 12345;

    UNIT_CASE("CRC32C check value");
    CHECK_EQ_INT(ref_crc32c((const unsigned char *)"123456789", 9),
                 0xE3069283U);
    CHECK_EQ_INT(pp_crc32c(0, (const unsigned char *)"123456789", 9),
                 0xE3069283U);

    UNIT_CASE("CRC32C against the bitwise reference");
    for (i = 0; i < sizeof(data); i++) {
        s = s * 1103515245U + 12345U;
        data[i] = (unsigned char)(s >> 16);
    }
    for (i = 0; i <= sizeof(data); i++) {
        bad += pp_crc32c(0, data, i) != ref_crc32c(data, i);
    }
    CHECK_EQ_INT(bad, 0);

    UNIT_CASE("CRC32C in pieces");
    CHECK_EQ_INT(pp_crc32c(pp_crc32c(0, data, 100), data + 100, 200),
                 ref_crc32c(data, 300));

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    slot = v2_crc_slot(h);
    v2_end(h);
    v2_fill_crc(h, slot);
    v2_accepts("v2 correct CRC32C", h, &hdr);

    h->b[16] ^= 0x01;
    v2_rejects("v2 CRC32C mismatch (address changed)", h);
    h->b[16] ^= 0x01;
    h->b[slot + 3] ^= 0x80;
    v2_rejects("v2 CRC32C mismatch (checksum changed)", h);
    h->b[slot + 3] ^= 0x80;
    put(h, trailer, sizeof(trailer));
    UNIT_CASE("v2 correct CRC32C, data after the header");
    CHECK_EQ_INT(v2_parse(&hdr, h), PP_OK);
    CHECK_EQ_INT(hdr.length, h->n - sizeof(trailer));

    v2_begin(h, 0x21, 0x21);
    v2_inet6(h, "2001:db8::1", "2001:db8::2", 443, 443);
    slot = v2_crc_slot(h);
    v2_tlv(h, PP_TLV_AUTHORITY, "example.com", 11);
    v2_tlv(h, PP_TLV_NOOP, "\0\0\0\0\0\0\0\0", 8);
    v2_end(h);
    v2_fill_crc(h, slot);
    v2_accepts("v2 correct CRC32C before other TLVs", h, &hdr);

    h->b[h->n - 1] = 0x01;
    v2_rejects("v2 CRC32C mismatch (TLV after it changed)", h);

    v2_begin_inet(h);
    slot = v2_crc_slot(h);
    v2_end(h);
    v2_rejects("v2 CRC32C of zero when it should not be", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_CRC32C, "\0\0\0", 3);
    v2_end(h);
    v2_rejects("v2 CRC32C TLV of 3 bytes", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_CRC32C, "\0\0\0\0\0", 5);
    v2_end(h);
    v2_rejects("v2 CRC32C TLV of 5 bytes", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_CRC32C, "", 0);
    v2_end(h);
    v2_rejects("v2 CRC32C TLV of 0 bytes", h);

    free(h);
}

static void test_tlv_limits(void)
{
    v2_t *h = v2_new();
    pp_header_t hdr;
    exports_t ex;
    unsigned char id[129];
    const char *v;
    size_t i;

    for (i = 0; i < sizeof(id); i++) {
        id[i] = (unsigned char)i;
    }

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_UNIQUE_ID, id, 128);
    v2_end(h);
    v2_accepts("v2 UNIQUE_ID of 128 bytes", h, &hdr);
    collect(&ex, &hdr);
    v = ex_get(&ex, "PROXY_PROTOCOL_TLV_UNIQUE_ID");
    if (CHECK(v != NULL)) {
        CHECK_EQ_INT(strlen(v), 256);
        CHECK(strncmp(v, "000102030405", 12) == 0);
        CHECK(strcmp(v + 250, "7d7e7f") == 0);
    }

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_UNIQUE_ID, id, 129);
    v2_end(h);
    v2_rejects("v2 UNIQUE_ID of 129 bytes", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_UNIQUE_ID, id, 0);
    v2_end(h);
    v2_accepts("v2 UNIQUE_ID of 0 bytes", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_UNIQUE_ID"), "");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0", 4);
    v2_end(h);
    v2_rejects("v2 SSL TLV of 4 bytes", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, "", 0);
    v2_end(h);
    v2_rejects("v2 SSL TLV of 0 bytes", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0\0", 5);
    v2_end(h);
    v2_accepts("v2 SSL TLV of 5 bytes, no sub-TLV", h, &hdr);
    collect(&ex, &hdr);
    CHECK_EQ_INT(ex.n, 0);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0\0" "\x21\x00\x07" "TLSv1", 13);
    v2_end(h);
    v2_rejects("v2 SSL sub-TLV overrun", h);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0\0" "\x21\x00", 7);
    v2_end(h);
    v2_rejects("v2 SSL truncated sub-TLV header", h);

    free(h);
}

static void test_tlv_export(void)
{
    static const unsigned char ssl[] =
        "\x07"                          /* client: SSL, cert conn, sess */
        "\x00\x00\x00\x00"              /* verify: ok */
        "\x21\x00\x07" "TLSv1.3"
        "\x22\x00\x0b" "example.com"
        "\x23\x00\x16" "TLS_AES_128_GCM_SHA256"
        "\x24\x00\x0a" "RSA-SHA256"
        "\x25\x00\x07" "RSA2048"
        "\x26\x00\x02" "\xab\xcd"       /* unknown sub-type */
        "\x22\x00\x05" "other";         /* second CN: ignored */
    v2_t *h = v2_new();
    pp_header_t hdr;
    exports_t ex;

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_SSL, ssl, sizeof(ssl) - 1);
    v2_end(h);
    v2_accepts("v2 SSL sub-TLVs exported", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_VERSION"), "TLSv1.3");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_CN"), "example.com");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_CIPHER"),
              "TLS_AES_128_GCM_SHA256");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_SIG_ALG"), "RSA-SHA256");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_KEY_ALG"), "RSA2048");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_0x26"), "abcd");
    CHECK_EQ_INT(ex_count(&ex, "PROXY_PROTOCOL_TLV_SSL_CN"), 1);
    CHECK_EQ_INT(ex.n, 6);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AWS, "\x01" "vpce-08d2bf15fac5001c9", 23);
    v2_end(h);
    v2_accepts("v2 AWS VPC endpoint id", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AWS_VPCE_ID"),
              "vpce-08d2bf15fac5001c9");
    CHECK_EQ_INT(ex.n, 1);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AWS, "\x02" "x", 2);
    v2_end(h);
    v2_accepts("v2 AWS unknown subtype", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AWS_VPCE_ID"), NULL);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0xEA"), "0278");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AZURE, "\x01\x01\x02\x03\x04", 5);
    v2_end(h);
    v2_accepts("v2 Azure private link id", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AZURE_LINKID"), "67305985");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AZURE, "\x01\xff\xff\xff\xff", 5);
    v2_end(h);
    v2_accepts("v2 Azure private link id 2^32-1", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AZURE_LINKID"), "4294967295");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AZURE, "\x01\x01\x02\x03", 4);
    v2_end(h);
    v2_accepts("v2 Azure TLV of the wrong size", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AZURE_LINKID"), NULL);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0xEE"), "01010203");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_GCP, "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
    v2_end(h);
    v2_accepts("v2 GCP PSC connection id", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_GCP_PSC_ID"),
              "283686952306183");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_GCP, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
    v2_end(h);
    v2_accepts("v2 GCP PSC connection id 2^64-1", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_GCP_PSC_ID"),
              "18446744073709551615");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_GCP, "\x01\x02", 2);
    v2_end(h);
    v2_accepts("v2 GCP TLV of the wrong size", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_GCP_PSC_ID"), NULL);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0xE0"), "0102");

    v2_begin_inet(h);
    v2_tlv(h, 0x42, "\x01\xab\xff", 3);
    v2_tlv(h, PP_TLV_NETNS, "ns1", 3);
    v2_end(h);
    v2_accepts("v2 unknown type 0x42", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0x42"), "01abff");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0x30"), "6e7331");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    v2_tlv(h, PP_TLV_AUTHORITY, "www.example.com", 15);
    v2_end(h);
    v2_accepts("v2 ALPN and AUTHORITY", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_ALPN"), "h2");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AUTHORITY"), "www.example.com");
    CHECK_EQ_INT(ex.n, 2);

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AUTHORITY, "a\\b\x01\x1f \x7e\x7f\x80\xff\"%\n", 13);
    v2_tlv(h, PP_TLV_ALPN, "\x00h2", 3);
    v2_end(h);
    v2_accepts("v2 escapes in text values", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AUTHORITY"),
              "a\\x5cb\\x01\\x1f ~\\x7f\\x80\\xff\"%\\x0a");
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_ALPN"), "\\x00h2");

    v2_begin_inet(h);
    v2_tlv(h, PP_TLV_AUTHORITY, "first.example", 13);
    v2_tlv(h, PP_TLV_AUTHORITY, "second.example", 14);
    v2_tlv(h, 0x42, "\x01", 1);
    v2_tlv(h, 0x42, "\x02", 1);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0\0" "\x21\x00\x03" "one", 11);
    v2_tlv(h, PP_TLV_SSL, "\x01\0\0\0\0" "\x21\x00\x03" "two", 11);
    v2_end(h);
    v2_accepts("v2 first occurrence wins", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AUTHORITY"), "first.example");
    CHECK_EQ_INT(ex_count(&ex, "PROXY_PROTOCOL_TLV_AUTHORITY"), 1);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_0x42"), "01");
    CHECK_EQ_INT(ex_count(&ex, "PROXY_PROTOCOL_TLV_0x42"), 1);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_SSL_VERSION"), "one");
    CHECK_EQ_INT(ex_count(&ex, "PROXY_PROTOCOL_TLV_SSL_VERSION"), 1);
    CHECK_EQ_INT(ex.n, 3);

    {
        size_t slot;
        v2_begin_inet(h);
        v2_tlv(h, PP_TLV_NOOP, "pad", 3);
        slot = v2_crc_slot(h);
        v2_end(h);
        v2_fill_crc(h, slot);
        v2_accepts("v2 CRC32C and NOOP are not exported", h, &hdr);
        collect(&ex, &hdr);
        CHECK_EQ_INT(ex.n, 0);
    }

    v2_begin(h, 0x21, 0x31);
    v2_unix(h, "/run/a", "/run/b");
    v2_tlv(h, PP_TLV_AUTHORITY, "unix.example", 12);
    v2_end(h);
    v2_accepts("v2 UNIX: TLVs after the 216-byte block", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_AUTHORITY"), "unix.example");

    v2_begin(h, 0x21, 0x22);
    v2_inet6(h, "2001:db8::1", "2001:db8::2", 53, 53);
    v2_tlv(h, PP_TLV_ALPN, "dns", 3);
    v2_end(h);
    v2_accepts("v2 UDP6: TLVs after the 36-byte block", h, &hdr);
    collect(&ex, &hdr);
    CHECK_STR(ex_get(&ex, "PROXY_PROTOCOL_TLV_ALPN"), "dns");

    free(h);
}

static void test_format(void)
{
    unsigned char all[256];
    char out[4 * 256 + 1];
    size_t i, n;

    for (i = 0; i < sizeof(all); i++) {
        all[i] = (unsigned char)i;
    }

    UNIT_CASE("format TEXT of every byte");
    n = pp_format_value(out, PP_FMT_TEXT, all, 256);
    /* 94 printable bytes kept (backslash is not), 162 escaped */
    CHECK_EQ_INT(n, 94 + 162 * 4);
    CHECK_EQ_INT(strlen(out), n);
    CHECK(n < pp_format_len(PP_FMT_TEXT, 256));
    CHECK(strncmp(out, "\\x00\\x01", 8) == 0);

    UNIT_CASE("format TEXT of backslashes");
    n = pp_format_value(out, PP_FMT_TEXT, (const unsigned char *)"\\\\", 2);
    CHECK_STR(out, "\\x5c\\x5c");
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(pp_format_len(PP_FMT_TEXT, 2), 9);

    UNIT_CASE("format TEXT of nothing");
    CHECK_EQ_INT(pp_format_value(out, PP_FMT_TEXT, all, 0), 0);
    CHECK_STR(out, "");

    UNIT_CASE("format HEX");
    n = pp_format_value(out, PP_FMT_HEX, all + 250, 6);
    CHECK_STR(out, "fafbfcfdfeff");
    CHECK_EQ_INT(n, 12);
    CHECK_EQ_INT(pp_format_len(PP_FMT_HEX, 6), 13);

    UNIT_CASE("format U32LE");
    n = pp_format_value(out, PP_FMT_U32LE,
                        (const unsigned char *)"\x00\x00\x00\x80", 4);
    CHECK_STR(out, "2147483648");
    CHECK(n < pp_format_len(PP_FMT_U32LE, 4));

    UNIT_CASE("format U64BE");
    n = pp_format_value(out, PP_FMT_U64BE,
                        (const unsigned char *)"\0\0\0\0\0\0\0\0", 8);
    CHECK_STR(out, "0");
    CHECK_EQ_INT(n, 1);
}

/* ------------------------------------------------------------------ */
/* Incremental reading                                                 */
/* ------------------------------------------------------------------ */

static int same_header(const pp_header_t *a, const pp_header_t *b)
{
    return a->version == b->version && a->command == b->command
           && a->family == b->family && a->transport == b->transport
           && a->has_addresses == b->has_addresses
           && memcmp(a->src_addr, b->src_addr, 16) == 0
           && memcmp(a->dst_addr, b->dst_addr, 16) == 0
           && a->src_port == b->src_port && a->dst_port == b->dst_port
           && a->length == b->length && a->tlvs == b->tlvs
           && a->tlvs_len == b->tlvs_len;
}

/*
 * Reads a header from stream (header + trailer) the way the connection
 * filter does: at most min(*need, chunk) bytes per read.  Returns the
 * bytes consumed, or (size_t)-1 if a need pointed past the header.
 */
static size_t feed(pp_header_t *hdr, pp_result_t *rv,
                   const unsigned char *stream, size_t hlen, size_t chunk)
{
    size_t fed = 0, need;

    for (;;) {
        *rv = pp_header_parse(hdr, stream, fed, MAX_V2, &need);
        if (*rv != PP_NEED_MORE) {
            return fed;
        }
        if (need < 1 || need > hlen - fed) {
            printf("    after %lu bytes: need %lu, %lu left in header\n",
                   (unsigned long)fed, (unsigned long)need,
                   (unsigned long)(hlen - fed));
            return (size_t)-1;
        }
        fed += need < chunk ? need : chunk;
    }
}

static void incremental(const char *name, const unsigned char *header,
                        size_t hlen)
{
    static const size_t chunks[] = { (size_t)-1, 1, 2, 3, 7 };
    unsigned char *stream = malloc(hlen + sizeof(trailer));
    pp_header_t whole, hdr;
    pp_result_t rv;
    size_t i, fed, need, bad_prefix = (size_t)-1;
    char what[160];

    memcpy(stream, header, hlen);
    memcpy(stream + hlen, trailer, sizeof(trailer));

    snprintf(what, sizeof(what), "incremental %s: whole", name);
    UNIT_CASE(what);
    CHECK_EQ_INT(pp_header_parse(&whole, stream, hlen + sizeof(trailer),
                                 MAX_V2, &need), PP_OK);
    CHECK_EQ_INT(whole.length, hlen);

    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        if (chunks[i] == (size_t)-1) {
            snprintf(what, sizeof(what), "incremental %s: reads of *need",
                     name);
        }
        else {
            snprintf(what, sizeof(what), "incremental %s: reads of at most "
                     "%lu", name, (unsigned long)chunks[i]);
        }
        UNIT_CASE(what);
        fed = feed(&hdr, &rv, stream, hlen, chunks[i]);
        if (CHECK(fed != (size_t)-1)) {
            CHECK_EQ_INT(rv, PP_OK);
            CHECK_EQ_INT(fed, hlen);
            CHECK_EQ_INT(hdr.length, hlen);
            CHECK(same_header(&hdr, &whole));
        }
    }

    snprintf(what, sizeof(what), "incremental %s: every prefix", name);
    UNIT_CASE(what);
    for (i = 0; i < hlen && bad_prefix == (size_t)-1; i++) {
        rv = pp_header_parse(&hdr, stream, i, MAX_V2, &need);
        if (rv != PP_NEED_MORE || need < 1 || need > hlen - i) {
            bad_prefix = i;
            printf("    prefix of %lu bytes: result %d, need %lu\n",
                   (unsigned long)i, (int)rv, (unsigned long)need);
        }
    }
    CHECK(bad_prefix == (size_t)-1);

    free(stream);
}

static void incremental_v1(const char *name, const char *line)
{
    incremental(name, (const unsigned char *)line, strlen(line));
}

static void test_incremental(void)
{
    static const unsigned char ssl[] =
        "\x01\0\0\0\0" "\x21\x00\x07" "TLSv1.3" "\x22\x00\x03" "a.b";
    v2_t *h = v2_new();
    size_t slot;
    char buf[108];

    incremental_v1("v1 shortest TCP4", "PROXY TCP4 1.1.1.1 1.1.1.1 0 0\r\n");
    incremental_v1("v1 longest TCP4", "PROXY TCP4 255.255.255.255 "
                   "255.255.255.255 65535 65535\r\n");
    incremental_v1("v1 shortest TCP6", "PROXY TCP6 :: :: 0 0\r\n");
    incremental_v1("v1 TCP6", "PROXY TCP6 2001:db8::1 2001:db8::2 80 443\r\n");
    incremental_v1("v1 107-byte TCP6",
                   "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
                   "fff:ffff:ffff:ffff:ffff:ffff:1.2.3.4 65535 65535\r\n");
    incremental_v1("v1 UNKNOWN", "PROXY UNKNOWN\r\n");
    incremental_v1("v1 UNKNOWN long", "PROXY UNKNOWN ::1 ::1 80 443\r\n");
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 105, "\r\n", 2);
    incremental("v1 107-byte UNKNOWN", (const unsigned char *)buf, 107);

    v2_begin(h, 0x20, 0x00);
    v2_end(h);
    incremental("v2 LOCAL", h->b, h->n);

    v2_begin(h, 0x20, 0xFF);
    put(h, "\x01\xff\xff garbage", 11);
    v2_end(h);
    incremental("v2 LOCAL with garbage", h->b, h->n);

    v2_begin_inet(h);
    v2_end(h);
    incremental("v2 TCP4", h->b, h->n);

    v2_begin(h, 0x21, 0x21);
    v2_inet6(h, "2001:db8::1", "2001:db8::2", 443, 443);
    v2_tlv(h, PP_TLV_ALPN, "h2", 2);
    v2_tlv(h, PP_TLV_AUTHORITY, "www.example.com", 15);
    v2_tlv(h, PP_TLV_SSL, ssl, sizeof(ssl) - 1);
    v2_tlv(h, PP_TLV_UNIQUE_ID, "0123456789abcdef", 16);
    slot = v2_crc_slot(h);
    v2_end(h);
    v2_fill_crc(h, slot);
    incremental("v2 TCP6 with TLVs and CRC32C", h->b, h->n);

    v2_begin(h, 0x21, 0x31);
    v2_unix(h, "/run/a", "/run/b");
    v2_tlv(h, PP_TLV_NOOP, "", 0);
    v2_end(h);
    incremental("v2 UNIX", h->b, h->n);

    v2_begin(h, 0x21, 0x00);
    put(h, "\x16\x03\x01", 3);
    v2_end(h);
    incremental("v2 UNSPEC", h->b, h->n);

    v2_begin(h, 0x21, 0x12);
    v2_inet(h, "192.0.2.1", "198.51.100.2", 53, 53);
    v2_end(h);
    incremental("v2 UDP4", h->b, h->n);

    free(h);
}

/* ------------------------------------------------------------------ */
/* CIDR                                                                */
/* ------------------------------------------------------------------ */

static void cidr_accepts(const char *text, int family, const char *addr,
                         unsigned bits)
{
    pp_cidr_t c;
    unsigned char a[16];
    char what[96];

    snprintf(what, sizeof(what), "cidr parse %s", text);
    UNIT_CASE(what);
    memset(a, 0, sizeof(a));
    inet_pton(family == 4 ? AF_INET : AF_INET6, addr, a);
    if (CHECK_STR(pp_cidr_parse(&c, text), NULL)) {
        CHECK_EQ_INT(c.family, family);
        CHECK_EQ_INT(c.bits, bits);
        CHECK_MEM(c.addr, a, family == 4 ? 4 : 16);
    }
}

static void cidr_rejects(const char *text)
{
    pp_cidr_t c;
    char what[96];

    snprintf(what, sizeof(what), "cidr rejects \"%s\"", text);
    UNIT_CASE(what);
    CHECK(pp_cidr_parse(&c, text) != NULL);
}

static int cidr_match(const char *rule, const char *peer)
{
    pp_cidr_t c;
    unsigned char a[16];
    int family = strchr(peer, ':') ? 6 : 4;

    if (pp_cidr_parse(&c, rule) != NULL) {
        return -1;
    }
    inet_pton(family == 4 ? AF_INET : AF_INET6, peer, a);
    return pp_cidr_match(&c, family, a);
}

static void test_cidr(void)
{
    pp_cidr_t list[3];
    unsigned char a[16];
    const unsigned char *p;
    int family;

    cidr_accepts("192.0.2.1", 4, "192.0.2.1", 32);
    cidr_accepts("2001:db8::1", 6, "2001:db8::1", 128);
    cidr_accepts("10.0.0.0/8", 4, "10.0.0.0", 8);
    cidr_accepts("10.1.2.3/8", 4, "10.0.0.0", 8);
    cidr_accepts("10.255.255.255/9", 4, "10.128.0.0", 9);
    cidr_accepts("192.0.2.77/31", 4, "192.0.2.76", 31);
    cidr_accepts("1.2.3.4/0", 4, "0.0.0.0", 0);
    cidr_accepts("0.0.0.0/0", 4, "0.0.0.0", 0);
    cidr_accepts("192.0.2.1/32", 4, "192.0.2.1", 32);
    cidr_accepts("::/0", 6, "::", 0);
    cidr_accepts("2001:db8::1/128", 6, "2001:db8::1", 128);
    cidr_accepts("2001:db8:ffff::1/33", 6, "2001:db8:8000::", 33);
    cidr_accepts("::ffff:10.0.0.0/104", 4, "10.0.0.0", 8);
    cidr_accepts("::ffff:10.1.2.3", 4, "10.1.2.3", 32);
    cidr_accepts("::ffff:0:0/96", 4, "0.0.0.0", 0);
    cidr_accepts("::ffff:0:0/95", 6, "::fffe:0:0", 95);

    cidr_rejects("192.0.2.1/33");
    cidr_rejects("2001:db8::/129");
    cidr_rejects("10.0.0.0/08");
    cidr_rejects("10.0.0.0/");
    cidr_rejects("10.0.0.0/-1");
    cidr_rejects("10.0.0.0/+8");
    cidr_rejects("10.0.0.0/8x");
    cidr_rejects("10.0.0.0/8/8");
    cidr_rejects("10.0.0.0 /8");
    cidr_rejects("10.0.0.0/ 8");
    cidr_rejects("10.0.0.0/4294967304");
    cidr_rejects("/8");
    cidr_rejects("");
    cidr_rejects("localhost");
    cidr_rejects("example.com/24");
    cidr_rejects("010.0.0.1");
    cidr_rejects("10.1");
    cidr_rejects("fe80::1%eth0");
    cidr_rejects("[::1]");
    cidr_rejects("::ffff:10.0.0.0/129");
    cidr_rejects("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:"
                 "cccc:dddd/64");

    UNIT_CASE("cidr match IPv4");
    CHECK_EQ_INT(cidr_match("127.0.0.0/8", "127.0.0.2"), 1);
    CHECK_EQ_INT(cidr_match("127.0.0.0/8", "128.0.0.1"), 0);
    CHECK_EQ_INT(cidr_match("127.0.0.0/8", "126.255.255.255"), 0);
    CHECK_EQ_INT(cidr_match("10.1.2.3/8", "10.200.0.1"), 1);
    CHECK_EQ_INT(cidr_match("192.0.2.1", "192.0.2.1"), 1);
    CHECK_EQ_INT(cidr_match("192.0.2.1", "192.0.2.2"), 0);
    CHECK_EQ_INT(cidr_match("192.0.2.0/25", "192.0.2.127"), 1);
    CHECK_EQ_INT(cidr_match("192.0.2.0/25", "192.0.2.128"), 0);
    CHECK_EQ_INT(cidr_match("0.0.0.0/0", "203.0.113.9"), 1);

    UNIT_CASE("cidr match IPv4-mapped peers");
    CHECK_EQ_INT(cidr_match("127.0.0.0/8", "::ffff:127.0.0.2"), 1);
    CHECK_EQ_INT(cidr_match("127.0.0.0/8", "::ffff:128.0.0.1"), 0);
    CHECK_EQ_INT(cidr_match("0.0.0.0/0", "::ffff:203.0.113.9"), 1);
    CHECK_EQ_INT(cidr_match("::ffff:10.0.0.0/104", "10.9.9.9"), 1);
    CHECK_EQ_INT(cidr_match("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"), 1);
    CHECK_EQ_INT(cidr_match("::ffff:10.0.0.0/104", "11.0.0.1"), 0);

    UNIT_CASE("cidr match IPv6");
    CHECK_EQ_INT(cidr_match("2001:db8::/32", "2001:db8:1::5"), 1);
    CHECK_EQ_INT(cidr_match("2001:db8::/32", "2001:db9::5"), 0);
    CHECK_EQ_INT(cidr_match("2001:db8:8000::/33", "2001:db8:7fff::1"), 0);
    CHECK_EQ_INT(cidr_match("2001:db8:8000::/33", "2001:db8:8000::1"), 1);
    CHECK_EQ_INT(cidr_match("::1", "::1"), 1);
    CHECK_EQ_INT(cidr_match("::/0", "2001:db8::1"), 1);

    UNIT_CASE("cidr families do not mix");
    CHECK_EQ_INT(cidr_match("0.0.0.0/0", "2001:db8::1"), 0);
    CHECK_EQ_INT(cidr_match("::/0", "192.0.2.1"), 0);
    CHECK_EQ_INT(cidr_match("::/0", "::ffff:192.0.2.1"), 0);
    CHECK_EQ_INT(cidr_match("::1", "0.0.0.1"), 0);

    UNIT_CASE("cidr match any");
    CHECK_STR(pp_cidr_parse(&list[0], "10.0.0.0/8"), NULL);
    CHECK_STR(pp_cidr_parse(&list[1], "2001:db8::/32"), NULL);
    CHECK_STR(pp_cidr_parse(&list[2], "192.0.2.7"), NULL);
    inet_pton(AF_INET, "192.0.2.7", a);
    CHECK_EQ_INT(pp_cidr_match_any(list, 3, 4, a), 1);
    inet_pton(AF_INET, "192.0.2.8", a);
    CHECK_EQ_INT(pp_cidr_match_any(list, 3, 4, a), 0);
    inet_pton(AF_INET6, "2001:db8::8", a);
    CHECK_EQ_INT(pp_cidr_match_any(list, 3, 6, a), 1);
    inet_pton(AF_INET6, "::ffff:10.0.0.1", a);
    CHECK_EQ_INT(pp_cidr_match_any(list, 3, 6, a), 1);
    CHECK_EQ_INT(pp_cidr_match_any(list, 0, 6, a), 0);

    UNIT_CASE("pp_addr_unmap");
    inet_pton(AF_INET6, "::ffff:192.0.2.1", a);
    family = 6;
    p = a;
    pp_addr_unmap(&family, &p);
    CHECK_EQ_INT(family, 4);
    CHECK(p == a + 12);
    inet_pton(AF_INET6, "::192.0.2.1", a);
    family = 6;
    p = a;
    pp_addr_unmap(&family, &p);
    CHECK_EQ_INT(family, 6);
    CHECK(p == a);
    inet_pton(AF_INET, "192.0.2.1", a);
    family = 4;
    p = a;
    pp_addr_unmap(&family, &p);
    CHECK_EQ_INT(family, 4);
    CHECK(p == a);
}

/* The v1 IPv4 reader against the C library's inet_pton plus the rule
 * against leading zeros, over every string of up to 7 characters from
 * "0129.5", and a few longer ones: the same verdict and address each. */
static void test_v1_addr4_oracle(void)
{
    static const char alpha[] = "0129.5";
    static const char *const longer[] = {
        "255.255.255.255", "256.255.255.255", "1.2.3.4", "01.2.3.4",
        "1.2.3.04", "0.0.0.0", "1.2.3.4.", ".1.2.3.4", "1..2.3",
        "1.2.3.1000", "192.168.100.200", "1.2.3.-4", "1.2.3.4a", NULL
    };
    char cand[16], line[96];
    int len, k, bad = 0, cases = 0;

    UNIT_CASE("v1 IPv4 addresses agree with inet_pton (no leading zeros)");
    for (len = 1; len <= 7 + 1; len++) {
        long total = 1, idx;

        for (k = 0; k < len && len <= 7; k++) {
            total *= (long)(sizeof(alpha) - 1);
        }
        for (idx = 0; idx < (len <= 7 ? total : 0) || (len > 7 && idx < 13);
             idx++) {
            pp_header_t hdr;
            unsigned char want[4];
            int ok, lz = 0, got;
            long x = idx;

            if (len <= 7) {
                for (k = 0; k < len; k++) {
                    cand[k] = alpha[x % (long)(sizeof(alpha) - 1)];
                    x /= (long)(sizeof(alpha) - 1);
                }
                cand[len] = '\0';
            }
            else {
                strcpy(cand, longer[idx]);
            }
            ok = inet_pton(AF_INET, cand, want) == 1;
            for (k = 0; cand[k]; k++) {
                if (cand[k] == '0' && (k == 0 || cand[k - 1] == '.')
                    && cand[k + 1] && cand[k + 1] != '.') {
                    lz = 1;
                }
            }
            ok = ok && !lz;
            snprintf(line, sizeof(line),
                     "PROXY TCP4 %s 198.51.100.2 80 443\r\n", cand);
            got = parse(&hdr, line, strlen(line)) == PP_OK;
            cases++;
            if (got != ok || (ok && memcmp(hdr.src_addr, want, 4) != 0)) {
                if (bad++ < 5) {
                    printf("    '%s': parser %s, inet_pton %s\n", cand,
                           got ? "accepts" : "refuses",
                           ok ? "accepts" : "refuses");
                }
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(cases > 300000);
}

/* The reference for a v1 IPv4 address: inet_pton, and no octet with a
 * leading zero (haproxy's doc leaves octal out; the parser refuses it). */
static int ref_addr4(const char *text, unsigned char *out)
{
    int k;

    if (inet_pton(AF_INET, text, out) != 1) {
        return 0;
    }
    for (k = 0; text[k]; k++) {
        if (text[k] == '0' && (k == 0 || text[k - 1] == '.')
            && text[k + 1] && text[k + 1] != '.') {
            return 0;
        }
    }
    return 1;
}

/* The reference for a v1 port: 1 to 5 digits, no leading zero, <= 65535. */
static int ref_port(const char *text, unsigned *out)
{
    size_t n = strlen(text), i;
    unsigned long v = 0;

    if (n < 1 || n > 5 || (n > 1 && text[0] == '0')) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return 0;
        }
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    *out = (unsigned)v;
    return v <= 65535;
}

/* The reference for a whole TCP4 line (CRLF excluded): six fields
 * separated by single spaces. */
static int ref_tcp4(const char *line, unsigned char *src, unsigned char *dst,
                    unsigned *sport, unsigned *dport)
{
    char copy[128], *field[7];
    int nf = 0;
    char *p = copy;

    snprintf(copy, sizeof(copy), "%s", line);
    field[nf++] = p;
    while ((p = strchr(p, ' ')) != NULL) {
        *p++ = '\0';
        if (nf == 7) {
            return 0;
        }
        field[nf++] = p;
    }
    return nf == 6 && strcmp(field[0], "PROXY") == 0
           && strcmp(field[1], "TCP4") == 0 && ref_addr4(field[2], src)
           && ref_addr4(field[3], dst) && ref_port(field[4], sport)
           && ref_port(field[5], dport);
}

/* A small deterministic generator, so that a failure can be replayed. */
static unsigned long rng_state = 12345;

static unsigned rng(unsigned n)
{
    rng_state = rng_state * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned)((rng_state >> 33) % n);
}

/* One of the first valid entries of list three times in four, else any. */
static const char *pick(const char *const *list, unsigned valid, unsigned n)
{
    return list[rng(4) ? rng(valid) : rng(n)];
}

/*
 * Whole TCP4 lines, valid and near-valid (octets and ports at and past
 * their bounds, leading zeros, doubled or missing separators, one byte
 * substituted, inserted or deleted), against the reference above: the
 * same verdict, addresses and ports each.  The line nearly every proxy
 * sends is read by its own one-pass reader; this checks it accepts
 * exactly what the general reader and the reference accept.
 */
static void test_v1_tcp4_oracle(void)
{
    static const char *const octets[] = {
        "0", "1", "9", "10", "99", "100", "199", "249", "250", "255", "256",
        "260", "300", "999", "00", "01", "010", "1000", "", "2555"
    };
    static const char *const ports[] = {
        "0", "1", "80", "443", "6553", "65535", "65536", "65539", "70000",
        "99999", "080", "00", "123456", "", "8O"
    };
    static const char *const keywords[] = {
        "TCP4", "TCP6", "tcp4", "TCP44", "TCP"
    };
    static const char mutate[] = "0123456789. :aT4-";
    const unsigned no = sizeof(octets) / sizeof(octets[0]);
    const unsigned np = sizeof(ports) / sizeof(ports[0]);
    int i, bad = 0, accepted = 0, refused = 0;

    UNIT_CASE("v1 TCP4 lines agree with the reference (inet_pton, ports)");
    for (i = 0; i < 200000; i++) {
        char line[128], crlf[132];
        unsigned char want_src[4], want_dst[4];
        unsigned want_sport = 0, want_dport = 0;
        pp_header_t hdr;
        int ok, got, same;
        size_t n;

        snprintf(line, sizeof(line), "PROXY %s %s.%s.%s.%s%s%s.%s.%s.%s %s %s",
                 pick(keywords, 1, 5), pick(octets, 10, no),
                 pick(octets, 10, no), pick(octets, 10, no),
                 pick(octets, 10, no), rng(16) ? " " : "  ",
                 pick(octets, 10, no), pick(octets, 10, no),
                 pick(octets, 10, no), pick(octets, 10, no),
                 pick(ports, 6, np), pick(ports, 6, np));
        n = strlen(line);
        switch (rng(6)) {
        case 0:     /* substitute */
            line[rng((unsigned)n)] = mutate[rng(sizeof(mutate) - 1)];
            break;
        case 1:     /* delete */
            {
                size_t at = rng((unsigned)n);

                memmove(line + at, line + at + 1, n - at);
            }
            break;
        case 2:     /* insert */
            {
                size_t at = rng((unsigned)n + 1);

                memmove(line + at + 1, line + at, n - at + 1);
                line[at] = mutate[rng(sizeof(mutate) - 1)];
            }
            break;
        default:
            break;
        }
        ok = ref_tcp4(line, want_src, want_dst, &want_sport, &want_dport);
        snprintf(crlf, sizeof(crlf), "%s\r\n", line);
        got = parse(&hdr, crlf, strlen(crlf)) == PP_OK;
        same = got && ok && hdr.version == 1 && hdr.family == PP_FAM_INET
               && hdr.has_addresses && hdr.transport == PP_TRANS_STREAM
               && hdr.length == strlen(crlf)
               && memcmp(hdr.src_addr, want_src, 4) == 0
               && memcmp(hdr.dst_addr, want_dst, 4) == 0
               && hdr.src_port == want_sport && hdr.dst_port == want_dport;
        accepted += ok;
        refused += !ok;
        if (got != ok || (ok && !same)) {
            if (bad++ < 5) {
                printf("    '%s': parser %s, reference %s\n", line,
                       !got ? "refuses" : same ? "accepts"
                                        : "accepts with other values",
                       ok ? "accepts" : "refuses");
            }
        }
    }
    printf("    %d accepted, %d refused\n", accepted, refused);
    CHECK_EQ_INT(bad, 0);
    /* Both verdicts well represented, or the test shows little. */
    CHECK(accepted > 10000);
    CHECK(refused > 10000);
}

/* The address and port writers against inet_ntop and printf. */
static void test_addr_port_text(void)
{
    unsigned char a[4];
    char got[PP_ADDR4_TEXT_LEN], want[INET_ADDRSTRLEN];
    char pgot[PP_PORT_TEXT_LEN], pwant[8];
    unsigned v, k;
    int bad = 0;

    UNIT_CASE("pp_addr4_text writes what inet_ntop writes");
    for (k = 0; k < 4; k++) {
        for (v = 0; v < 256; v++) {
            a[0] = (unsigned char)rng(256);
            a[1] = (unsigned char)rng(256);
            a[2] = (unsigned char)rng(256);
            a[3] = (unsigned char)rng(256);
            a[k] = (unsigned char)v;
            inet_ntop(AF_INET, a, want, sizeof(want));
            if (pp_addr4_text(got, a) != strlen(want)
                || strcmp(got, want) != 0) {
                if (bad++ < 5) {
                    printf("    '%s' for '%s'\n", got, want);
                }
            }
        }
    }
    CHECK_EQ_INT(bad, 0);

    UNIT_CASE("pp_port_text writes every port as printf's %u");
    bad = 0;
    for (v = 0; v <= 65535; v++) {
        snprintf(pwant, sizeof(pwant), "%u", v);
        if (pp_port_text(pgot, (uint16_t)v) != strlen(pwant)
            || strcmp(pgot, pwant) != 0) {
            if (bad++ < 5) {
                printf("    '%s' for '%s'\n", pgot, pwant);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    test_v1_valid();
    test_v1_addr4_oracle();
    test_v1_tcp4_oracle();
    test_addr_port_text();
    test_v1_invalid();
    test_v2_basic();
    test_v2_families();
    test_v2_max();
    test_v2_tlv_walk();
    test_crc32c();
    test_tlv_limits();
    test_tlv_export();
    test_format();
    test_incremental();
    test_cidr();
    return unit_summary();
}
