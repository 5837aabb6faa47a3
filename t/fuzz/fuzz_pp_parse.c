/*
 * fuzz_pp_parse.c: libFuzzer harness for the PROXY protocol parser and the
 * CIDR rules.
 *
 * Each input is parsed three ways: whole, one prefix at a time, and the way
 * the connection filter reads (exactly min(*need, what is left) per read).
 * Any disagreement between them, or a *need that points past the end of a
 * header that turns out valid, aborts.  Valid headers then have their TLVs
 * exported and every value formatted.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to run
 * the corpus in `make check` without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pp_cidr.h"
#include "pp_parse.h"

#include "fuzz.h"

#define MAX_V2          PP_V2_MAX_LEN
#define SMALL_MAX_V2    64      /* a low ProxyProtocolMaxHeaderSize */

static void same_header(const pp_header_t *a, const pp_header_t *b)
{
    REQUIRE(a->version == b->version);
    REQUIRE(a->command == b->command);
    REQUIRE(a->family == b->family);
    REQUIRE(a->transport == b->transport);
    REQUIRE(a->has_addresses == b->has_addresses);
    REQUIRE(memcmp(a->src_addr, b->src_addr, sizeof(a->src_addr)) == 0);
    REQUIRE(memcmp(a->dst_addr, b->dst_addr, sizeof(a->dst_addr)) == 0);
    REQUIRE(a->src_port == b->src_port);
    REQUIRE(a->dst_port == b->dst_port);
    REQUIRE(a->length == b->length);
    REQUIRE(a->tlvs == b->tlvs);
    REQUIRE(a->tlvs_len == b->tlvs_len);
}

/* What every PP_OK header must satisfy on its own. */
static void check_ok(const pp_header_t *h, const uint8_t *data, size_t size)
{
    REQUIRE(h->version == 1 || h->version == 2);
    REQUIRE(h->length >= 15 && h->length <= size);
    REQUIRE(h->error == NULL);
    if (h->version == 1) {
        REQUIRE(h->length <= PP_V1_MAX_LEN);
        REQUIRE(data[h->length - 2] == '\r' && data[h->length - 1] == '\n');
        REQUIRE(h->tlvs_len == 0);
    }
    else {
        REQUIRE(h->length >= PP_V2_FIXED_LEN && h->length <= MAX_V2);
    }
    if (h->has_addresses) {
        REQUIRE(h->command == PP_CMD_PROXY);
        REQUIRE(h->family == PP_FAM_INET || h->family == PP_FAM_INET6);
        REQUIRE(h->transport == PP_TRANS_STREAM);
    }
    if (h->tlvs_len) {
        REQUIRE(h->tlvs > data && h->tlvs + h->tlvs_len == data + h->length);
    }
    if (h->version == 1 && h->family == PP_FAM_INET) {
        /* A TCP4 line is accepted only in its one canonical spelling (no
         * leading zeros, single spaces), which is what the address and
         * port writers give back. */
        char src[PP_ADDR4_TEXT_LEN], dst[PP_ADDR4_TEXT_LEN];
        char sport[PP_PORT_TEXT_LEN], dport[PP_PORT_TEXT_LEN];
        char line[PP_V1_MAX_LEN + 1];
        int n;

        pp_addr4_text(src, h->src_addr);
        pp_addr4_text(dst, h->dst_addr);
        pp_port_text(sport, h->src_port);
        pp_port_text(dport, h->dst_port);
        n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %s %s\r\n", src,
                     dst, sport, dport);
        REQUIRE(n > 0 && (size_t)n == h->length);
        REQUIRE(memcmp(line, data, h->length) == 0);
    }
}

static void export_one(void *baton, const char *name, pp_format_t fmt,
                       const unsigned char *value, size_t len)
{
    const pp_header_t *h = baton;
    size_t flen = pp_format_len(fmt, len);
    char *out;
    size_t n, i;

    REQUIRE(strncmp(name, "PROXY_PROTOCOL_TLV_", 19) == 0);
    REQUIRE(len == 0 || (value >= h->tlvs
                         && value + len <= h->tlvs + h->tlvs_len));
    out = malloc(flen);
    REQUIRE(out != NULL);
    n = pp_format_value(out, fmt, value, len);
    REQUIRE(strlen(out) == n);
    REQUIRE(n < flen);
    if (fmt == PP_FMT_TEXT) {
        /* Safe to put in an environment variable or a log line. */
        for (i = 0; i < n; i++) {
            REQUIRE(out[i] >= 0x20 && out[i] < 0x7F);
        }
    }
    free(out);
}

/* Parse the first fed bytes; if more are needed, that *need asks for
 * some, and never past the end of the whole header. */
static pp_result_t parse_prefix(pp_header_t *h, const uint8_t *data,
                                size_t fed, size_t *need,
                                pp_result_t whole_rv,
                                const pp_header_t *whole)
{
    pp_result_t rv = pp_header_parse(h, data, fed, MAX_V2, need);

    if (rv == PP_NEED_MORE) {
        REQUIRE(*need >= 1);
        if (whole_rv == PP_OK) {
            REQUIRE(fed + *need <= whole->length);
        }
    }
    return rv;
}

/* The way the connection filter reads: only what *need allows. */
static void follow_need(const uint8_t *data, size_t size,
                        pp_result_t whole_rv, const pp_header_t *whole,
                        size_t whole_need)
{
    pp_header_t h;
    pp_result_t rv;
    size_t fed = 0, need;

    for (;;) {
        rv = parse_prefix(&h, data, fed, &need, whole_rv, whole);
        if (rv != PP_NEED_MORE) {
            break;
        }
        if (fed == size) {
            /* The same call as the whole parse. */
            REQUIRE(whole_rv == PP_NEED_MORE && need == whole_need);
            return;
        }
        fed += need < size - fed ? need : size - fed;
    }
    if (rv == PP_OK) {
        REQUIRE(whole_rv == PP_OK);
        REQUIRE(h.length == fed);   /* not one byte past the header */
        same_header(&h, whole);
    }
    else {
        REQUIRE(whole_rv == PP_ERROR);
    }
}

/* Every prefix, until the first answer that is not PP_NEED_MORE. */
static void every_prefix(const uint8_t *data, size_t size,
                         pp_result_t whole_rv, const pp_header_t *whole)
{
    pp_header_t h;
    pp_result_t rv = PP_NEED_MORE;
    size_t p, need = 0;

    for (p = 0; p <= size; p++) {
        rv = parse_prefix(&h, data, p, &need, whole_rv, whole);
        if (rv != PP_NEED_MORE) {
            break;
        }
    }
    if (rv == PP_OK) {
        REQUIRE(whole_rv == PP_OK);
        REQUIRE(h.length == p);
        same_header(&h, whole);
    }
    else if (rv == PP_ERROR) {
        REQUIRE(whole_rv == PP_ERROR);
        REQUIRE(h.error != NULL);
    }
    else {
        REQUIRE(whole_rv == PP_NEED_MORE);
    }
}

static void fuzz_cidr(const uint8_t *data, size_t size)
{
    static const unsigned char v4mapped[12] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF
    };
    unsigned char mapped[16];
    pp_cidr_t c;
    char *text = malloc(size + 1);
    const char *err;

    REQUIRE(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    err = pp_cidr_parse(&c, text);
    if (err == NULL) {
        REQUIRE(c.family == 4 || c.family == 6);
        REQUIRE(c.bits <= (c.family == 4 ? 32u : 128u));
        /* Host bits are cleared, so the block contains its own address. */
        REQUIRE(pp_cidr_match(&c, c.family, c.addr) == 1);
        REQUIRE(pp_cidr_match_any(&c, 1, c.family, c.addr) == 1);
        if (c.family == 4) {
            /* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d */
            memcpy(mapped, v4mapped, 12);
            memcpy(mapped + 12, c.addr, 4);
            REQUIRE(pp_cidr_match(&c, 6, mapped) == 1);
        }
        if (size >= 16) {
            pp_cidr_match(&c, 6, data);
            pp_cidr_match(&c, 4, data);
        }
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_header_t whole, small;
    pp_result_t rv, srv;
    size_t need = 0, sneed;

    rv = pp_header_parse(&whole, data, size, MAX_V2, &need);
    REQUIRE(rv == PP_OK || rv == PP_NEED_MORE || rv == PP_ERROR);
    if (rv == PP_OK) {
        check_ok(&whole, data, size);
    }
    else if (rv == PP_NEED_MORE) {
        REQUIRE(need >= 1);
    }
    else {
        REQUIRE(whole.error != NULL);
    }

    follow_need(data, size, rv, &whole, need);
    every_prefix(data, size, rv, &whole);

    /* A lower size limit only ever turns a v2 header into an error. */
    srv = pp_header_parse(&small, data, size, SMALL_MAX_V2, &sneed);
    if (rv == PP_OK && (whole.version == 1 || whole.length <= SMALL_MAX_V2)) {
        REQUIRE(srv == PP_OK);
        same_header(&small, &whole);
    }
    else if (rv == PP_OK || rv == PP_ERROR) {
        REQUIRE(srv == PP_ERROR);
    }

    if (rv == PP_OK) {
        pp_header_export_tlvs(&whole, export_one, &whole);
    }

    fuzz_cidr(data, size);
    return 0;
}
