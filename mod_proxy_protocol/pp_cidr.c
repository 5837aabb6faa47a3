/*
 * pp_cidr.c: CIDR blocks and address matching.  See pp_cidr.h.
 */
#include <arpa/inet.h>
#include <string.h>

#include "pp_cidr.h"

static const unsigned char v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF
};

void pp_addr_unmap(int *family, const unsigned char **addr)
{
    if (*family == 6 && memcmp(*addr, v4mapped, sizeof(v4mapped)) == 0) {
        *family = 4;
        *addr += 12;
    }
}

static void clear_host_bits(unsigned char *addr, size_t len, unsigned bits)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (bits >= 8) {
            bits -= 8;
        }
        else {
            addr[i] &= (unsigned char)(0xFF00u >> bits);
            bits = 0;
        }
    }
}

const char *pp_cidr_parse(pp_cidr_t *cidr, const char *text)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    unsigned long bits = 0;
    const char *p;
    unsigned max;

    memset(cidr, 0, sizeof(*cidr));
    if (hlen == 0 || hlen >= sizeof(host)) {
        return "not an IP address";
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, cidr->addr) == 1) {
        cidr->family = 4;
    }
    else if (inet_pton(AF_INET6, host, cidr->addr) == 1) {
        cidr->family = 6;
    }
    else {
        return "not a numeric IPv4 or IPv6 address";
    }
    max = cidr->family == 4 ? 32 : 128;
    if (slash) {
        p = slash + 1;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0')) {
            return "prefix length is not a decimal number";
        }
        for (; *p; p++) {
            if (*p < '0' || *p > '9') {
                return "prefix length is not a decimal number";
            }
            bits = bits * 10 + (unsigned long)(*p - '0');
            if (bits > max) {
                return "prefix length too large for the address family";
            }
        }
    }
    else {
        bits = max;
    }
    cidr->bits = (unsigned)bits;
    if (cidr->family == 6 && cidr->bits >= 96
        && memcmp(cidr->addr, v4mapped, sizeof(v4mapped)) == 0) {
        memmove(cidr->addr, cidr->addr + 12, 4);
        memset(cidr->addr + 4, 0, 12);
        cidr->family = 4;
        cidr->bits -= 96;
    }
    clear_host_bits(cidr->addr, cidr->family == 4 ? 4 : 16, cidr->bits);
    return NULL;
}

int pp_cidr_match(const pp_cidr_t *cidr, int family,
                  const unsigned char *addr)
{
    unsigned char masked[16];
    size_t len;

    pp_addr_unmap(&family, &addr);
    if (family != cidr->family) {
        return 0;
    }
    len = family == 4 ? 4 : 16;
    memcpy(masked, addr, len);
    clear_host_bits(masked, len, cidr->bits);
    return memcmp(masked, cidr->addr, len) == 0;
}

int pp_cidr_match_any(const pp_cidr_t *cidrs, size_t n, int family,
                      const unsigned char *addr)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (pp_cidr_match(&cidrs[i], family, addr)) {
            return 1;
        }
    }
    return 0;
}
