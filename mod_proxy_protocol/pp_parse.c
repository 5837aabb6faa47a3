/*
 * pp_parse.c: strict, incremental PROXY protocol v1/v2 parser.
 * See pp_parse.h for the contract.  Pure code: no httpd, no APR.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "pp_parse.h"

static const unsigned char v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};
static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN   6
#define V1_MIN_LEN      15      /* "PROXY UNKNOWN\r\n" */

static pp_result_t fail(pp_header_t *hdr, const char *why)
{
    hdr->error = why;
    return PP_ERROR;
}

static pp_result_t more(size_t *need, size_t n)
{
    *need = n ? n : 1;
    return PP_NEED_MORE;
}

/* ------------------------------------------------------------------ */
/* Version 1                                                           */
/* ------------------------------------------------------------------ */

typedef enum { V1_ADDR4, V1_ADDR6, V1_PORT } v1_field_t;

/* Shortest text each field can have, and the longest we accept. */
static size_t v1_field_min(v1_field_t f)
{
    return f == V1_ADDR4 ? 7 : f == V1_ADDR6 ? 2 : 1;
}

static size_t v1_field_max(v1_field_t f)
{
    /* INET6_ADDRSTRLEN - 1: the longest form with an embedded IPv4. */
    return f == V1_ADDR4 ? 15 : f == V1_ADDR6 ? 45 : 5;
}

static int v1_char_ok(v1_field_t f, unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return 1;
    }
    if (f == V1_PORT) {
        return 0;
    }
    if (ch == '.') {
        return 1;
    }
    return f == V1_ADDR6
           && (ch == ':' || (ch >= 'a' && ch <= 'f')
               || (ch >= 'A' && ch <= 'F'));
}

/* Checks what has arrived of a field, which may be incomplete. */
static const char *v1_field_prefix_check(v1_field_t f, const unsigned char *s,
                                         size_t n)
{
    size_t i;

    if (n > v1_field_max(f)) {
        return f == V1_PORT ? "v1: port too long" : "v1: address too long";
    }
    for (i = 0; i < n; i++) {
        if (!v1_char_ok(f, s[i])) {
            return f == V1_PORT ? "v1: port is not a decimal number"
                                : "v1: invalid character in address";
        }
    }
    if (f == V1_PORT && n > 1 && s[0] == '0') {
        return "v1: port has a leading zero";
    }
    return NULL;
}

/* IPv4 dotted quad: four decimal octets 0..255, no leading zeros (octal
 * ambiguity), nothing else.  Read by hand: the C library's inet_pton was
 * most of what a v1 header cost (callgrind, docs/benchmarks.md). */
static const char *v1_addr4(unsigned char *out, const unsigned char *s,
                            size_t n)
{
    size_t i = 0;
    int part;

    for (part = 0; part < 4; part++) {
        unsigned int v = 0;
        size_t from = i;

        if (part > 0) {
            if (i >= n || s[i] != '.') {
                return "v1: invalid IPv4 address";
            }
            from = ++i;
        }
        while (i < n && i - from < 3 && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (unsigned int)(s[i++] - '0');
        }
        if (i == from || (i < n && s[i] >= '0' && s[i] <= '9') || v > 255) {
            return "v1: invalid IPv4 address";
        }
        if (s[from] == '0' && i - from > 1) {
            return "v1: IPv4 address has a leading zero";
        }
        out[part] = (unsigned char)v;
    }
    return i == n ? NULL : "v1: invalid IPv4 address";
}

static const char *v1_addr6(unsigned char *out, const unsigned char *s,
                            size_t n)
{
    char tmp[46];

    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET6, tmp, out) != 1) {
        return "v1: invalid IPv6 address";
    }
    return NULL;
}

static const char *v1_port(uint16_t *out, const unsigned char *s, size_t n)
{
    unsigned long v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535) {
        return "v1: port out of range";
    }
    *out = (uint16_t)v;
    return NULL;
}

static const char *const v1_protos[] = { "TCP4", "TCP6", "UNKNOWN" };

/* Shortest tail after each protocol keyword, CRLF included. */
static size_t v1_proto_tail(int proto)
{
    v1_field_t f = proto == 0 ? V1_ADDR4 : V1_ADDR6;

    if (proto == 2) {
        return 2;
    }
    return 4 + 2 * v1_field_min(f) + 2 * v1_field_min(V1_PORT) + 2;
}

/*
 * Parses the line s[0..n) (CRLF excluded).  complete says whether the CR
 * has been seen; if not, the prefix is checked and *need set to the fewest
 * bytes any valid completion still needs.
 */
static pp_result_t v1_line(pp_header_t *hdr, const unsigned char *s, size_t n,
                           int complete, size_t *need)
{
    const unsigned char *tok;
    size_t pos, tlen, i, best;
    int proto = -1, k;
    v1_field_t fields[4];
    const char *err;

    if (n < V1_PREFIX_LEN) {
        if (complete) {
            return fail(hdr, "v1: truncated header");
        }
        return more(need, V1_MIN_LEN - n);
    }

    /* The protocol keyword. */
    tok = s + V1_PREFIX_LEN;
    for (tlen = 0; V1_PREFIX_LEN + tlen < n && tok[tlen] != ' '; tlen++)
        ;
    pos = V1_PREFIX_LEN + tlen;
    if (pos == n && !complete) {
        best = 0;
        for (i = 0; i < 3; i++) {
            size_t kl = strlen(v1_protos[i]);
            if (tlen <= kl && memcmp(tok, v1_protos[i], tlen) == 0) {
                size_t w = kl - tlen + v1_proto_tail((int)i);
                if (!best || w < best) {
                    best = w;
                }
            }
        }
        if (!best) {
            return fail(hdr, "v1: unknown protocol");
        }
        return more(need, best);
    }
    for (i = 0; i < 3; i++) {
        if (tlen == strlen(v1_protos[i])
            && memcmp(tok, v1_protos[i], tlen) == 0) {
            proto = (int)i;
        }
    }
    if (proto < 0) {
        return fail(hdr, "v1: unknown protocol");
    }

    hdr->version = 1;
    hdr->command = PP_CMD_PROXY;
    if (proto == 2) {
        /* UNKNOWN: whatever follows up to CRLF is ignored. */
        hdr->family = PP_FAM_UNSPEC;
        hdr->transport = PP_TRANS_UNSPEC;
        hdr->has_addresses = 0;
        if (!complete) {
            return more(need, 2);
        }
        return PP_OK;
    }

    hdr->family = proto == 0 ? PP_FAM_INET : PP_FAM_INET6;
    hdr->transport = PP_TRANS_STREAM;
    fields[0] = fields[1] = proto == 0 ? V1_ADDR4 : V1_ADDR6;
    fields[2] = fields[3] = V1_PORT;

    for (k = 0; k < 4; k++) {
        if (pos == n) {
            /* The separator before field k has not arrived. */
            size_t w = 2;
            int j;
            if (complete) {
                return fail(hdr, "v1: missing fields");
            }
            for (j = k; j < 4; j++) {
                w += 1 + v1_field_min(fields[j]);
            }
            return more(need, w);
        }
        /* s[pos] is a space: the separator. */
        pos++;
        tok = s + pos;
        for (tlen = 0; pos + tlen < n && tok[tlen] != ' '; tlen++)
            ;
        if ((err = v1_field_prefix_check(fields[k], tok, tlen)) != NULL) {
            return fail(hdr, err);
        }
        pos += tlen;
        if (pos == n && !complete) {
            size_t min = v1_field_min(fields[k]);
            size_t w = (tlen < min ? min - tlen : 0) + 2;
            int j;
            for (j = k + 1; j < 4; j++) {
                w += 1 + v1_field_min(fields[j]);
            }
            return more(need, w);
        }
        if (tlen == 0) {
            return fail(hdr, "v1: empty field (separators must be single "
                             "spaces)");
        }
        if (pos < n && k == 3) {
            return fail(hdr, "v1: data after the destination port");
        }
        if (pos == n && k < 3) {
            return fail(hdr, "v1: missing fields");
        }
        switch (k) {
        case 0:
        case 1:
            err = (proto == 0 ? v1_addr4 : v1_addr6)(
                      k == 0 ? hdr->src_addr : hdr->dst_addr, tok, tlen);
            break;
        default:
            err = v1_port(k == 2 ? &hdr->src_port : &hdr->dst_port, tok,
                          tlen);
            break;
        }
        if (err) {
            return fail(hdr, err);
        }
    }
    hdr->has_addresses = 1;
    return PP_OK;
}

/*
 * The line nearly every proxy sends, "PROXY TCP4 a.b.c.d e.f.g.h sport
 * dport" (CRLF excluded), read in one pass once it has arrived whole.
 * It accepts exactly the TCP4 lines v1_line() accepts, with the same
 * result; anything else returns 0 and v1_line() decides, with its error
 * messages.  v1_line() visits each byte four times (the token scan, the
 * character check, the field reader, the CR scan before it): callgrind
 * put it at most of the module's cost per connection.
 */

/* A decimal number of 1 to max_digits digits without a leading zero at
 * *pp (moved past it), not followed by a digit. */
static int v1_number(unsigned int *out, const unsigned char **pp,
                     const unsigned char *end, unsigned int max_digits)
{
    const unsigned char *p = *pp;
    unsigned int v, digits = 1;

    if (p == end || *p < '0' || *p > '9') {
        return 0;
    }
    v = (unsigned int)(*p++ - '0');
    if (v != 0) {
        while (p < end && *p >= '0' && *p <= '9' && digits++ < max_digits) {
            v = v * 10 + (unsigned int)(*p++ - '0');
        }
    }
    if (p < end && *p >= '0' && *p <= '9') {
        return 0;
    }
    *out = v;
    *pp = p;
    return 1;
}

static int v1_quad(unsigned char *out, const unsigned char **pp,
                   const unsigned char *end)
{
    unsigned int v;
    int k;

    for (k = 0; k < 4; k++) {
        if (k > 0 && (*pp == end || *(*pp)++ != '.')) {
            return 0;
        }
        if (!v1_number(&v, pp, end, 3) || v > 255) {
            return 0;
        }
        out[k] = (unsigned char)v;
    }
    return 1;
}

/* A single space at *pp, moved past it. */
static int v1_space(const unsigned char **pp, const unsigned char *end)
{
    return *pp < end && *(*pp)++ == ' ';
}

static int v1_tcp4_line(pp_header_t *hdr, const unsigned char *s, size_t n)
{
    const unsigned char *p = s + 11, *end = s + n;
    unsigned int sport, dport;

    if (n < 11 || memcmp(s, "PROXY TCP4 ", 11) != 0) {
        return 0;
    }
    if (!v1_quad(hdr->src_addr, &p, end) || !v1_space(&p, end)
        || !v1_quad(hdr->dst_addr, &p, end) || !v1_space(&p, end)
        || !v1_number(&sport, &p, end, 5) || sport > 65535
        || !v1_space(&p, end)
        || !v1_number(&dport, &p, end, 5) || dport > 65535 || p != end) {
        memset(hdr->src_addr, 0, sizeof(hdr->src_addr));
        memset(hdr->dst_addr, 0, sizeof(hdr->dst_addr));
        return 0;
    }
    hdr->version = 1;
    hdr->command = PP_CMD_PROXY;
    hdr->family = PP_FAM_INET;
    hdr->transport = PP_TRANS_STREAM;
    hdr->src_port = (uint16_t)sport;
    hdr->dst_port = (uint16_t)dport;
    hdr->has_addresses = 1;
    return 1;
}

static pp_result_t parse_v1(pp_header_t *hdr, const unsigned char *buf,
                            size_t len, size_t *need)
{
    size_t scan = len < PP_V1_MAX_LEN ? len : PP_V1_MAX_LEN;
    const unsigned char *cr;
    size_t i;
    pp_result_t rv;

    if (memcmp(buf, v1_prefix, len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN)) {
        return fail(hdr, "not a PROXY protocol header");
    }
    /* The line ends at the first CR; an LF before it is an error.  Two
     * memchr() instead of a loop over every byte: the C library's are
     * vectorised. */
    cr = memchr(buf, '\r', scan);
    i = cr ? (size_t)(cr - buf) : scan;
    if (memchr(buf, '\n', i)) {
        return fail(hdr, "v1: LF without CR");
    }
    if (i == scan) {
        if (len >= PP_V1_MAX_LEN) {
            return fail(hdr, "v1: no CRLF within 107 bytes");
        }
        return v1_line(hdr, buf, len, 0, need);
    }
    if (i + 2 > PP_V1_MAX_LEN) {
        return fail(hdr, "v1: header longer than 107 bytes");
    }
    if (i + 1 < len && buf[i + 1] != '\n') {
        return fail(hdr, "v1: CR not followed by LF");
    }
    if (i + 1 < len && v1_tcp4_line(hdr, buf, i)) {
        hdr->length = i + 2;
        return PP_OK;
    }
    rv = v1_line(hdr, buf, i, 1, need);
    if (rv != PP_OK) {
        return rv;
    }
    if (i + 1 == len) {
        return more(need, 1);
    }
    hdr->length = i + 2;
    return PP_OK;
}

/* ------------------------------------------------------------------ */
/* Version 2                                                           */
/* ------------------------------------------------------------------ */

uint32_t pp_crc32c(uint32_t crc, const unsigned char *buf, size_t len)
{
    static const uint32_t table[256] = {
    0x00000000U, 0xf26b8303U, 0xe13b70f7U, 0x1350f3f4U,
    0xc79a971fU, 0x35f1141cU, 0x26a1e7e8U, 0xd4ca64ebU,
    0x8ad958cfU, 0x78b2dbccU, 0x6be22838U, 0x9989ab3bU,
    0x4d43cfd0U, 0xbf284cd3U, 0xac78bf27U, 0x5e133c24U,
    0x105ec76fU, 0xe235446cU, 0xf165b798U, 0x030e349bU,
    0xd7c45070U, 0x25afd373U, 0x36ff2087U, 0xc494a384U,
    0x9a879fa0U, 0x68ec1ca3U, 0x7bbcef57U, 0x89d76c54U,
    0x5d1d08bfU, 0xaf768bbcU, 0xbc267848U, 0x4e4dfb4bU,
    0x20bd8edeU, 0xd2d60dddU, 0xc186fe29U, 0x33ed7d2aU,
    0xe72719c1U, 0x154c9ac2U, 0x061c6936U, 0xf477ea35U,
    0xaa64d611U, 0x580f5512U, 0x4b5fa6e6U, 0xb93425e5U,
    0x6dfe410eU, 0x9f95c20dU, 0x8cc531f9U, 0x7eaeb2faU,
    0x30e349b1U, 0xc288cab2U, 0xd1d83946U, 0x23b3ba45U,
    0xf779deaeU, 0x05125dadU, 0x1642ae59U, 0xe4292d5aU,
    0xba3a117eU, 0x4851927dU, 0x5b016189U, 0xa96ae28aU,
    0x7da08661U, 0x8fcb0562U, 0x9c9bf696U, 0x6ef07595U,
    0x417b1dbcU, 0xb3109ebfU, 0xa0406d4bU, 0x522bee48U,
    0x86e18aa3U, 0x748a09a0U, 0x67dafa54U, 0x95b17957U,
    0xcba24573U, 0x39c9c670U, 0x2a993584U, 0xd8f2b687U,
    0x0c38d26cU, 0xfe53516fU, 0xed03a29bU, 0x1f682198U,
    0x5125dad3U, 0xa34e59d0U, 0xb01eaa24U, 0x42752927U,
    0x96bf4dccU, 0x64d4cecfU, 0x77843d3bU, 0x85efbe38U,
    0xdbfc821cU, 0x2997011fU, 0x3ac7f2ebU, 0xc8ac71e8U,
    0x1c661503U, 0xee0d9600U, 0xfd5d65f4U, 0x0f36e6f7U,
    0x61c69362U, 0x93ad1061U, 0x80fde395U, 0x72966096U,
    0xa65c047dU, 0x5437877eU, 0x4767748aU, 0xb50cf789U,
    0xeb1fcbadU, 0x197448aeU, 0x0a24bb5aU, 0xf84f3859U,
    0x2c855cb2U, 0xdeeedfb1U, 0xcdbe2c45U, 0x3fd5af46U,
    0x7198540dU, 0x83f3d70eU, 0x90a324faU, 0x62c8a7f9U,
    0xb602c312U, 0x44694011U, 0x5739b3e5U, 0xa55230e6U,
    0xfb410cc2U, 0x092a8fc1U, 0x1a7a7c35U, 0xe811ff36U,
    0x3cdb9bddU, 0xceb018deU, 0xdde0eb2aU, 0x2f8b6829U,
    0x82f63b78U, 0x709db87bU, 0x63cd4b8fU, 0x91a6c88cU,
    0x456cac67U, 0xb7072f64U, 0xa457dc90U, 0x563c5f93U,
    0x082f63b7U, 0xfa44e0b4U, 0xe9141340U, 0x1b7f9043U,
    0xcfb5f4a8U, 0x3dde77abU, 0x2e8e845fU, 0xdce5075cU,
    0x92a8fc17U, 0x60c37f14U, 0x73938ce0U, 0x81f80fe3U,
    0x55326b08U, 0xa759e80bU, 0xb4091bffU, 0x466298fcU,
    0x1871a4d8U, 0xea1a27dbU, 0xf94ad42fU, 0x0b21572cU,
    0xdfeb33c7U, 0x2d80b0c4U, 0x3ed04330U, 0xccbbc033U,
    0xa24bb5a6U, 0x502036a5U, 0x4370c551U, 0xb11b4652U,
    0x65d122b9U, 0x97baa1baU, 0x84ea524eU, 0x7681d14dU,
    0x2892ed69U, 0xdaf96e6aU, 0xc9a99d9eU, 0x3bc21e9dU,
    0xef087a76U, 0x1d63f975U, 0x0e330a81U, 0xfc588982U,
    0xb21572c9U, 0x407ef1caU, 0x532e023eU, 0xa145813dU,
    0x758fe5d6U, 0x87e466d5U, 0x94b49521U, 0x66df1622U,
    0x38cc2a06U, 0xcaa7a905U, 0xd9f75af1U, 0x2b9cd9f2U,
    0xff56bd19U, 0x0d3d3e1aU, 0x1e6dcdeeU, 0xec064eedU,
    0xc38d26c4U, 0x31e6a5c7U, 0x22b65633U, 0xd0ddd530U,
    0x0417b1dbU, 0xf67c32d8U, 0xe52cc12cU, 0x1747422fU,
    0x49547e0bU, 0xbb3ffd08U, 0xa86f0efcU, 0x5a048dffU,
    0x8ecee914U, 0x7ca56a17U, 0x6ff599e3U, 0x9d9e1ae0U,
    0xd3d3e1abU, 0x21b862a8U, 0x32e8915cU, 0xc083125fU,
    0x144976b4U, 0xe622f5b7U, 0xf5720643U, 0x07198540U,
    0x590ab964U, 0xab613a67U, 0xb831c993U, 0x4a5a4a90U,
    0x9e902e7bU, 0x6cfbad78U, 0x7fab5e8cU, 0x8dc0dd8fU,
    0xe330a81aU, 0x115b2b19U, 0x020bd8edU, 0xf0605beeU,
    0x24aa3f05U, 0xd6c1bc06U, 0xc5914ff2U, 0x37faccf1U,
    0x69e9f0d5U, 0x9b8273d6U, 0x88d28022U, 0x7ab90321U,
    0xae7367caU, 0x5c18e4c9U, 0x4f48173dU, 0xbd23943eU,
    0xf36e6f75U, 0x0105ec76U, 0x12551f82U, 0xe03e9c81U,
    0x34f4f86aU, 0xc69f7b69U, 0xd5cf889dU, 0x27a40b9eU,
    0x79b737baU, 0x8bdcb4b9U, 0x988c474dU, 0x6ae7c44eU,
    0xbe2da0a5U, 0x4c4623a6U, 0x5f16d052U, 0xad7d5351U,
    };

    crc = ~crc;
    while (len--) {
        crc = table[(crc ^ *buf++) & 0xFF] ^ (crc >> 8);
    }
    return ~crc;
}

int pp_tlv_next(pp_tlv_t *tlv, const unsigned char *area, size_t len,
                size_t *off)
{
    size_t o = *off;

    if (o >= len) {
        return 0;
    }
    if (len - o < 3) {
        return -1;
    }
    tlv->type = area[o];
    tlv->len = ((size_t)area[o + 1] << 8) | area[o + 2];
    if (len - o - 3 < tlv->len) {
        return -1;
    }
    tlv->value = area + o + 3;
    *off = o + 3 + tlv->len;
    return 1;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16)
           | ((uint32_t)p[2] << 8) | p[3];
}

/* The CRC covers the whole header with the checksum field zeroed. */
static int crc_matches(const unsigned char *buf, size_t total,
                       const unsigned char *field)
{
    static const unsigned char zero[4] = { 0, 0, 0, 0 };
    size_t before = (size_t)(field - buf);
    uint32_t crc;

    crc = pp_crc32c(0, buf, before);
    crc = pp_crc32c(crc, zero, 4);
    crc = pp_crc32c(crc, field + 4, total - before - 4);
    return crc == be32(field);
}

static const char *v2_check_tlvs(const unsigned char *buf, size_t total,
                                 const unsigned char *area, size_t len)
{
    pp_tlv_t tlv, sub;
    size_t off = 0, soff;
    int r, s;

    while ((r = pp_tlv_next(&tlv, area, len, &off)) == 1) {
        switch (tlv.type) {
        case PP_TLV_CRC32C:
            if (tlv.len != 4) {
                return "v2: CRC32C TLV length is not 4";
            }
            if (!crc_matches(buf, total, tlv.value)) {
                return "v2: CRC32C mismatch";
            }
            break;
        case PP_TLV_UNIQUE_ID:
            if (tlv.len > PP_UNIQUE_ID_MAX) {
                return "v2: UNIQUE_ID longer than 128 bytes";
            }
            break;
        case PP_TLV_SSL:
            if (tlv.len < 5) {
                return "v2: SSL TLV shorter than 5 bytes";
            }
            soff = 0;
            while ((s = pp_tlv_next(&sub, tlv.value + 5, tlv.len - 5,
                                    &soff)) == 1)
                ;
            if (s < 0) {
                return "v2: SSL sub-TLV overruns the SSL TLV";
            }
            break;
        default:
            break;
        }
    }
    return r < 0 ? "v2: TLV overruns the header" : NULL;
}

static pp_result_t parse_v2(pp_header_t *hdr, const unsigned char *buf,
                            size_t len, size_t max_v2, size_t *need)
{
    size_t block, total;
    unsigned fam;
    const char *err;

    if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig))) {
        return fail(hdr, "not a PROXY protocol header");
    }
    if (len > 12 && (buf[12] >> 4) != 2) {
        return fail(hdr, "v2: version is not 2");
    }
    if (len > 12 && (buf[12] & 0x0F) > PP_CMD_PROXY) {
        return fail(hdr, "v2: command is neither LOCAL nor PROXY");
    }
    if (len < PP_V2_FIXED_LEN) {
        return more(need, PP_V2_FIXED_LEN - len);
    }

    hdr->version = 2;
    hdr->command = (pp_command_t)(buf[12] & 0x0F);
    total = PP_V2_FIXED_LEN + (((size_t)buf[14] << 8) | buf[15]);
    hdr->length = total;
    if (total > max_v2) {
        return fail(hdr, "v2: header larger than ProxyProtocolMaxHeaderSize");
    }

    fam = buf[13];
    hdr->has_addresses = 0;
    if (hdr->command == PP_CMD_LOCAL) {
        /* The block is skipped whatever it holds, family included. */
        if (len < total) {
            return more(need, total - len);
        }
        return PP_OK;
    }

    switch (fam) {
    case 0x00: block = 0;   break;
    case 0x11: case 0x12: block = 12;  break;
    case 0x21: case 0x22: block = 36;  break;
    case 0x31: case 0x32: block = 216; break;
    default:
        return fail(hdr, "v2: invalid address family or transport");
    }
    hdr->family = (pp_family_t)(fam >> 4);
    hdr->transport = (pp_transport_t)(fam & 0x0F);
    if (total - PP_V2_FIXED_LEN < block) {
        return fail(hdr, "v2: length shorter than the address block");
    }
    if (len < total) {
        return more(need, total - len);
    }

    if (hdr->family == PP_FAM_INET) {
        memcpy(hdr->src_addr, buf + 16, 4);
        memcpy(hdr->dst_addr, buf + 20, 4);
        hdr->src_port = (uint16_t)((buf[24] << 8) | buf[25]);
        hdr->dst_port = (uint16_t)((buf[26] << 8) | buf[27]);
    }
    else if (hdr->family == PP_FAM_INET6) {
        memcpy(hdr->src_addr, buf + 16, 16);
        memcpy(hdr->dst_addr, buf + 32, 16);
        hdr->src_port = (uint16_t)((buf[48] << 8) | buf[49]);
        hdr->dst_port = (uint16_t)((buf[50] << 8) | buf[51]);
    }
    hdr->has_addresses = (hdr->family == PP_FAM_INET
                          || hdr->family == PP_FAM_INET6)
                         && hdr->transport == PP_TRANS_STREAM;

    /* UNSPEC: "the receiver should ignore address information"; the rest
     * of the block is skipped like LOCAL's, TLVs included. */
    if (hdr->family != PP_FAM_UNSPEC) {
        hdr->tlvs = buf + PP_V2_FIXED_LEN + block;
        hdr->tlvs_len = total - PP_V2_FIXED_LEN - block;
        if ((err = v2_check_tlvs(buf, total, hdr->tlvs, hdr->tlvs_len))) {
            return fail(hdr, err);
        }
    }
    return PP_OK;
}

pp_result_t pp_header_parse(pp_header_t *hdr, const unsigned char *buf,
                            size_t len, size_t max_v2, size_t *need)
{
    memset(hdr, 0, sizeof(*hdr));
    *need = 0;
    if (max_v2 > PP_V2_MAX_LEN) {
        max_v2 = PP_V2_MAX_LEN;
    }
    if (len == 0) {
        /* The shortest header of either version is 15 bytes. */
        return more(need, V1_MIN_LEN);
    }
    if (buf[0] == v1_prefix[0]) {
        return parse_v1(hdr, buf, len, need);
    }
    if (buf[0] == v2_sig[0]) {
        return parse_v2(hdr, buf, len, max_v2, need);
    }
    return fail(hdr, "not a PROXY protocol header");
}

/* ------------------------------------------------------------------ */
/* Export                                                              */
/* ------------------------------------------------------------------ */

size_t pp_format_len(pp_format_t fmt, size_t len)
{
    switch (fmt) {
    case PP_FMT_TEXT:  return 4 * len + 1;
    case PP_FMT_HEX:   return 2 * len + 1;
    default:           return 21;   /* 2^64 has 20 digits */
    }
}

size_t pp_format_value(char *out, pp_format_t fmt, const unsigned char *value,
                       size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned long long v = 0;
    char *o = out;
    size_t i;

    switch (fmt) {
    case PP_FMT_TEXT:
        for (i = 0; i < len; i++) {
            unsigned char ch = value[i];
            if (ch >= 0x20 && ch < 0x7F && ch != '\\') {
                *o++ = (char)ch;
            }
            else {
                *o++ = '\\';
                *o++ = 'x';
                *o++ = hex[ch >> 4];
                *o++ = hex[ch & 0x0F];
            }
        }
        break;
    case PP_FMT_HEX:
        for (i = 0; i < len; i++) {
            *o++ = hex[value[i] >> 4];
            *o++ = hex[value[i] & 0x0F];
        }
        break;
    case PP_FMT_U32LE:
        for (i = len < 4 ? len : 4; i > 0; i--) {
            v = (v << 8) | value[i - 1];
        }
        return (size_t)sprintf(out, "%llu", v);
    case PP_FMT_U64BE:
        for (i = 0; i < len && i < 8; i++) {
            v = (v << 8) | value[i];
        }
        return (size_t)sprintf(out, "%llu", v);
    }
    *o = '\0';
    return (size_t)(o - out);
}

size_t pp_addr4_text(char *out, const unsigned char *addr)
{
    char *o = out;
    int k;

    for (k = 0; k < 4; k++) {
        unsigned int v = addr[k];

        if (k > 0) {
            *o++ = '.';
        }
        if (v >= 100) {
            *o++ = (char)('0' + v / 100);
            v %= 100;
            *o++ = (char)('0' + v / 10);
            v %= 10;
        }
        else if (v >= 10) {
            *o++ = (char)('0' + v / 10);
            v %= 10;
        }
        *o++ = (char)('0' + v);
    }
    *o = '\0';
    return (size_t)(o - out);
}

size_t pp_port_text(char *out, uint16_t port)
{
    char digits[5];
    unsigned int v = port;
    size_t n = 0, i;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    out[n] = '\0';
    return n;
}

/* Bit sets of names already exported: the first occurrence wins. */
typedef struct {
    unsigned char top[32];
    unsigned char ssl[32];
} pp_seen_t;

static int first_time(unsigned char *set, unsigned type)
{
    unsigned char bit = (unsigned char)(1u << (type & 7));

    if (set[type >> 3] & bit) {
        return 0;
    }
    set[type >> 3] |= bit;
    return 1;
}

static void export_other(pp_export_fn *fn, void *baton, const char *prefix,
                         const pp_tlv_t *tlv)
{
    char name[48];

    snprintf(name, sizeof(name), "%s0x%02X", prefix, tlv->type);
    fn(baton, name, PP_FMT_HEX, tlv->value, tlv->len);
}

static void export_ssl(pp_export_fn *fn, void *baton, pp_seen_t *seen,
                       const pp_tlv_t *ssl)
{
    pp_tlv_t sub;
    size_t off = 0;
    const char *name;

    while (pp_tlv_next(&sub, ssl->value + 5, ssl->len - 5, &off) == 1) {
        if (!first_time(seen->ssl, sub.type)) {
            continue;
        }
        switch (sub.type) {
        case PP_SUBTLV_SSL_VERSION: name = "PROXY_PROTOCOL_TLV_SSL_VERSION";
                                    break;
        case PP_SUBTLV_SSL_CN:      name = "PROXY_PROTOCOL_TLV_SSL_CN";
                                    break;
        case PP_SUBTLV_SSL_CIPHER:  name = "PROXY_PROTOCOL_TLV_SSL_CIPHER";
                                    break;
        case PP_SUBTLV_SSL_SIG_ALG: name = "PROXY_PROTOCOL_TLV_SSL_SIG_ALG";
                                    break;
        case PP_SUBTLV_SSL_KEY_ALG: name = "PROXY_PROTOCOL_TLV_SSL_KEY_ALG";
                                    break;
        default:
            export_other(fn, baton, "PROXY_PROTOCOL_TLV_SSL_", &sub);
            continue;
        }
        fn(baton, name, PP_FMT_TEXT, sub.value, sub.len);
    }
}

/* ALPN, authority and unique ID: each its own variable, as it came. */
static void export_plain(pp_export_fn *fn, void *baton, const pp_tlv_t *tlv)
{
    static const struct {
        unsigned type;
        const char *name;
        pp_format_t fmt;
    } plain[] = {
        { PP_TLV_ALPN, "PROXY_PROTOCOL_TLV_ALPN", PP_FMT_TEXT },
        { PP_TLV_AUTHORITY, "PROXY_PROTOCOL_TLV_AUTHORITY", PP_FMT_TEXT },
        { PP_TLV_UNIQUE_ID, "PROXY_PROTOCOL_TLV_UNIQUE_ID", PP_FMT_HEX },
    };
    size_t i;

    for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (plain[i].type == tlv->type) {
            fn(baton, plain[i].name, plain[i].fmt, tlv->value, tlv->len);
        }
    }
}

void pp_header_export_tlvs(const pp_header_t *hdr, pp_export_fn *fn,
                           void *baton)
{
    pp_seen_t seen;
    pp_tlv_t tlv;
    size_t off = 0;

    memset(&seen, 0, sizeof(seen));
    while (pp_tlv_next(&tlv, hdr->tlvs, hdr->tlvs_len, &off) == 1) {
        if (!first_time(seen.top, tlv.type)) {
            continue;
        }
        switch (tlv.type) {
        case PP_TLV_CRC32C:
        case PP_TLV_NOOP:
            break;
        case PP_TLV_ALPN:
        case PP_TLV_AUTHORITY:
        case PP_TLV_UNIQUE_ID:
            export_plain(fn, baton, &tlv);
            break;
        case PP_TLV_SSL:
            export_ssl(fn, baton, &seen, &tlv);
            break;
        case PP_TLV_AWS:
            if (tlv.len >= 1 && tlv.value[0] == 0x01) {
                fn(baton, "PROXY_PROTOCOL_TLV_AWS_VPCE_ID", PP_FMT_TEXT,
                   tlv.value + 1, tlv.len - 1);
            }
            else {
                export_other(fn, baton, "PROXY_PROTOCOL_TLV_", &tlv);
            }
            break;
        case PP_TLV_AZURE:
            if (tlv.len == 5 && tlv.value[0] == 0x01) {
                fn(baton, "PROXY_PROTOCOL_TLV_AZURE_LINKID", PP_FMT_U32LE,
                   tlv.value + 1, 4);
            }
            else {
                export_other(fn, baton, "PROXY_PROTOCOL_TLV_", &tlv);
            }
            break;
        case PP_TLV_GCP:
            if (tlv.len == 8) {
                fn(baton, "PROXY_PROTOCOL_TLV_GCP_PSC_ID", PP_FMT_U64BE,
                   tlv.value, 8);
            }
            else {
                export_other(fn, baton, "PROXY_PROTOCOL_TLV_", &tlv);
            }
            break;
        default:
            export_other(fn, baton, "PROXY_PROTOCOL_TLV_", &tlv);
            break;
        }
    }
}
