/*
 * pp_parse.h: a strict, incremental parser for the HAProxy PROXY protocol,
 * versions 1 (text) and 2 (binary), as specified in haproxy's
 * doc/proxy-protocol.txt.
 *
 * Pure code: no httpd and no APR types, so unit tests and fuzzers link it
 * directly.  The parser never allocates and never reads outside the buffer
 * it is given.
 *
 * Incremental use: call pp_header_parse() with every byte received so far.
 * While it answers PP_NEED_MORE, *need is a number of further bytes that is
 * guaranteed not to exceed what remains of the header, so a caller that
 * reads exactly *need more bytes never consumes a byte that follows the
 * header (a TLS ClientHello or an HTTP/2 preface sent in the same segment).
 */
#ifndef PP_PARSE_H
#define PP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Size limits from the specification. */
#define PP_V1_MAX_LEN       107     /* whole v1 line, CRLF included */
#define PP_V2_FIXED_LEN     16      /* signature + ver/cmd + fam + len */
#define PP_V2_MAX_LEN       (PP_V2_FIXED_LEN + 65535)
#define PP_UNIQUE_ID_MAX    128

/* v2 TLV types. */
#define PP_TLV_ALPN             0x01
#define PP_TLV_AUTHORITY        0x02
#define PP_TLV_CRC32C           0x03
#define PP_TLV_NOOP             0x04
#define PP_TLV_UNIQUE_ID        0x05
#define PP_TLV_SSL              0x20
#define PP_SUBTLV_SSL_VERSION   0x21
#define PP_SUBTLV_SSL_CN        0x22
#define PP_SUBTLV_SSL_CIPHER    0x23
#define PP_SUBTLV_SSL_SIG_ALG   0x24
#define PP_SUBTLV_SSL_KEY_ALG   0x25
#define PP_TLV_NETNS            0x30
#define PP_TLV_GCP              0xE0    /* Private Service Connect id */
#define PP_TLV_AWS              0xEA    /* subtype 0x01: VPC endpoint id */
#define PP_TLV_AZURE            0xEE    /* subtype 0x01: private link id */

typedef enum {
    PP_OK = 0,          /* a complete, valid header: see pp_header_t */
    PP_NEED_MORE,       /* a valid prefix: read *need more bytes */
    PP_ERROR            /* invalid: hdr->error says why */
} pp_result_t;

typedef enum {
    PP_CMD_LOCAL = 0,   /* v2 LOCAL: use the real connection endpoints */
    PP_CMD_PROXY = 1
} pp_command_t;

typedef enum {
    PP_FAM_UNSPEC = 0,  /* v1 UNKNOWN, v2 AF_UNSPEC */
    PP_FAM_INET   = 1,
    PP_FAM_INET6  = 2,
    PP_FAM_UNIX   = 3
} pp_family_t;

typedef enum {
    PP_TRANS_UNSPEC = 0,
    PP_TRANS_STREAM = 1,
    PP_TRANS_DGRAM  = 2
} pp_transport_t;

typedef struct {
    int version;                /* 1 or 2 */
    pp_command_t command;
    pp_family_t family;
    pp_transport_t transport;
    /* Non-zero when src/dst hold a TCP source and destination to use as the
     * client's address: PROXY over INET or INET6 with STREAM transport.
     * Zero means "keep the real peer" (LOCAL, UNKNOWN, UNIX, DGRAM). */
    int has_addresses;
    unsigned char src_addr[16]; /* network order; 4 bytes used for INET */
    unsigned char dst_addr[16];
    uint16_t src_port;
    uint16_t dst_port;
    size_t length;              /* whole header, in bytes */
    const unsigned char *tlvs;  /* v2 TLV area inside the caller's buffer */
    size_t tlvs_len;
    const char *error;          /* static text, set on PP_ERROR */
} pp_header_t;

/**
 * Parse a PROXY header at the start of buf.
 * @param hdr      filled on PP_OK; hdr->error set on PP_ERROR
 * @param buf      the bytes received so far
 * @param len      how many
 * @param max_v2   the largest v2 header accepted (PP_V2_FIXED_LEN..PP_V2_MAX_LEN)
 * @param need     on PP_NEED_MORE, how many more bytes may safely be read
 *                 (at least 1, never past the end of the header)
 * On PP_OK, hdr->length may be less than len: the rest is not the header's.
 * TLVs are checked (bounds, CRC32C, UNIQUE_ID size, SSL sub-TLVs) before
 * PP_OK is returned.
 */
pp_result_t pp_header_parse(pp_header_t *hdr, const unsigned char *buf,
                            size_t len, size_t max_v2, size_t *need);

/** One TLV inside a header. value points into the parsed buffer. */
typedef struct {
    unsigned type;
    size_t len;
    const unsigned char *value;
} pp_tlv_t;

/**
 * Walk a TLV area.  *off starts at 0.
 * @return 1 with *tlv filled, 0 at the end, -1 if a TLV overruns the area.
 */
int pp_tlv_next(pp_tlv_t *tlv, const unsigned char *area, size_t len,
                size_t *off);

/** CRC32C (Castagnoli), as the CRC32C TLV uses it. */
uint32_t pp_crc32c(uint32_t crc, const unsigned char *buf, size_t len);

/** How an exported TLV value is rendered as text. */
typedef enum {
    PP_FMT_TEXT,        /* printable ASCII kept, other bytes as \xHH */
    PP_FMT_HEX,         /* lower-case hex of every byte */
    PP_FMT_U32LE,       /* 4 bytes, little-endian, in decimal */
    PP_FMT_U64BE        /* 8 bytes, big-endian, in decimal */
} pp_format_t;

/**
 * Called once per exported variable.  name and value are valid only during
 * the call; value has len bytes, to be rendered with pp_format_value().
 */
typedef void pp_export_fn(void *baton, const char *name, pp_format_t fmt,
                          const unsigned char *value, size_t len);

/**
 * Export a parsed v2 header's TLVs as the PROXY_PROTOCOL_TLV_* variables
 * (the names of ARCHITECTURE.md section 2): ALPN, AUTHORITY, UNIQUE_ID,
 * the SSL sub-TLVs, the AWS, Azure and GCP TLVs; any other type as
 * PROXY_PROTOCOL_TLV_0xNN in hex (NN upper-case hex).  CRC32C and NOOP are
 * not exported.  The first TLV of each type wins (and of each SSL
 * sub-TLV type).
 */
void pp_header_export_tlvs(const pp_header_t *hdr, pp_export_fn *fn,
                           void *baton);

/** Bytes needed to render len value bytes as fmt, the NUL included. */
size_t pp_format_len(pp_format_t fmt, size_t len);

/** Render a value as fmt into out (pp_format_len() bytes); returns strlen. */
size_t pp_format_value(char *out, pp_format_t fmt, const unsigned char *value,
                       size_t len);

/** Bytes for the text of an IPv4 address ("255.255.255.255"), NUL included. */
#define PP_ADDR4_TEXT_LEN 16
/** Bytes for the text of a port ("65535"), NUL included. */
#define PP_PORT_TEXT_LEN 6

/**
 * The dotted-quad text of a 4-byte address in network order, as
 * inet_ntop() writes it, into out (PP_ADDR4_TEXT_LEN bytes); returns strlen.
 */
size_t pp_addr4_text(char *out, const unsigned char *addr);

/** A port in decimal into out (PP_PORT_TEXT_LEN bytes); returns strlen. */
size_t pp_port_text(char *out, uint16_t port);

#endif /* PP_PARSE_H */
