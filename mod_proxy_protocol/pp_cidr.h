/*
 * pp_cidr.h: IP addresses and CIDR blocks for the trust rules of
 * mod_proxy_protocol.  Pure code: no httpd, no APR.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, as seen on dual-stack
 * listeners) are treated as the IPv4 addresses they carry, both in rules
 * and in the addresses matched against them.
 */
#ifndef PP_CIDR_H
#define PP_CIDR_H

#include <stddef.h>

typedef struct {
    int family;                 /* 4 or 6 */
    unsigned char addr[16];     /* network order, host bits cleared */
    unsigned bits;              /* prefix length */
} pp_cidr_t;

/**
 * Parse "addr" or "addr/bits" (numeric only: never a DNS name).
 * @return NULL, or a static text saying what is wrong.
 */
const char *pp_cidr_parse(pp_cidr_t *cidr, const char *text);

/**
 * Does the address (family 4 or 6, 4 or 16 bytes) fall in the block?
 */
int pp_cidr_match(const pp_cidr_t *cidr, int family,
                  const unsigned char *addr);

/** Does any of n blocks match? */
int pp_cidr_match_any(const pp_cidr_t *cidrs, size_t n, int family,
                      const unsigned char *addr);

/**
 * If family/addr is an IPv4-mapped IPv6 address, rewrite them in place to
 * the IPv4 address (family 4, *addr moved to the last 4 bytes).
 */
void pp_addr_unmap(int *family, const unsigned char **addr);

#endif /* PP_CIDR_H */
