#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_pp_parse into t/fuzz/corpus/pp_parse/.

Valid and invalid PROXY v1 and v2 headers (TLVs, CRC32C, SSL, cloud TLVs),
headers followed by a TLS ClientHello, headers cut short, and a few CIDR
strings.  Files named seed_* are rewritten; others (found by fuzzing and
merged in with -merge=1) are left alone.

    python3 t/fuzz/make_corpus.py [corpus-dir]
"""
import ipaddress
import os
import struct
import sys

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00,
                      0xa1, 0x03, 0x03])


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(t, value):
    return bytes([t]) + struct.pack(">H", len(value)) + value


def inet(src="192.0.2.1", dst="198.51.100.2", sport=56324, dport=443):
    return (ipaddress.IPv4Address(src).packed
            + ipaddress.IPv4Address(dst).packed + struct.pack(">HH", sport,
                                                               dport))


def inet6(src="2001:db8::1", dst="2001:db8::2", sport=443, dport=443):
    return (ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + struct.pack(">HH", sport,
                                                               dport))


def unix(src=b"/run/client.sock", dst=b"/run/server.sock"):
    return src.ljust(108, b"\0") + dst.ljust(108, b"\0")


def v2(vercmd, fam, body, crc=False):
    """A v2 header; with crc, a correct CRC32C TLV is appended."""
    if crc:
        body += tlv(0x03, b"\0\0\0\0")
    hdr = SIG + bytes([vercmd, fam]) + struct.pack(">H", len(body)) + body
    if crc:
        hdr = hdr[:-4] + struct.pack(">I", crc32c(hdr))
    return hdr


SSL = (b"\x07\x00\x00\x00\x00"
       + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"example.com")
       + tlv(0x23, b"TLS_AES_128_GCM_SHA256") + tlv(0x24, b"RSA-SHA256")
       + tlv(0x25, b"RSA2048"))

SEEDS = {
    # v1, valid
    "v1_tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1_tcp4_min": b"PROXY TCP4 1.1.1.1 1.1.1.1 0 0\r\n",
    "v1_tcp4_max": b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535"
                   b"\r\n",
    "v1_tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 80 443\r\n",
    "v1_tcp6_min": b"PROXY TCP6 :: :: 0 0\r\n",
    "v1_tcp6_107": b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                   b" fff:ffff:ffff:ffff:ffff:ffff:1.2.3.4 65535 65535\r\n",
    "v1_unknown": b"PROXY UNKNOWN\r\n",
    "v1_unknown_long": b"PROXY UNKNOWN ::1 ::1 80 443\r\n",
    "v1_unknown_107": b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",
    "v1_tcp4_then_tls": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
                        + CLIENT_HELLO,
    "v1_tcp4_then_http": b"PROXY TCP4 192.0.2.1 198.51.100.2 1 80\r\n"
                         b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    # v1, cut short (split points)
    "v1_split_keyword": b"PROXY TC",
    "v1_split_address": b"PROXY TCP4 192.0.2.1 19",
    "v1_split_before_lf": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r",
    # v1, invalid
    "v1_108": b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",
    "v1_no_crlf": b"PROXY UNKNOWN " + b"x" * 110,
    "v1_double_space": b"PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1_bare_lf": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",
    "v1_bare_cr": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX",
    "v1_octal": b"PROXY TCP4 010.1.1.1 198.51.100.2 56324 443\r\n",
    "v1_integer": b"PROXY TCP4 16777217 198.51.100.2 56324 443\r\n",
    "v1_port_080": b"PROXY TCP4 192.0.2.1 198.51.100.2 080 443\r\n",
    "v1_port_65536": b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
    "v1_zone": b"PROXY TCP6 fe80::1%eth0 2001:db8::2 80 443\r\n",
    "v1_family_mismatch": b"PROXY TCP4 ::1 198.51.100.2 80 443\r\n",
    "v1_lowercase": b"proxy TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1_tcp5": b"PROXY TCP5 192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1_trailing": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 x\r\n",
    # v2, valid
    "v2_tcp4": v2(0x21, 0x11, inet()),
    "v2_tcp6": v2(0x21, 0x21, inet6()),
    "v2_udp4": v2(0x21, 0x12, inet(sport=53, dport=53)),
    "v2_udp6": v2(0x21, 0x22, inet6(sport=53, dport=53)),
    "v2_unix": v2(0x21, 0x31, unix() + tlv(0x01, b"h2")),
    "v2_unix_dgram": v2(0x21, 0x32, unix()),
    "v2_unspec": v2(0x21, 0x00, b"ignored"),
    "v2_local": v2(0x20, 0x00, b""),
    "v2_local_garbage": v2(0x20, 0xFF, b"\x01\xff\xff garbage"),
    "v2_tcp4_then_tls": v2(0x21, 0x11, inet()) + CLIENT_HELLO,
    "v2_tlvs": v2(0x21, 0x11, inet() + tlv(0x01, b"h2")
                  + tlv(0x02, b"www.example.com") + tlv(0x04, b"\0\0\0")
                  + tlv(0x05, bytes(range(16)))),
    "v2_crc": v2(0x21, 0x21, inet6() + tlv(0x02, b"example.com"), crc=True),
    "v2_ssl": v2(0x21, 0x11, inet() + tlv(0x20, SSL), crc=True),
    "v2_unique_id_128": v2(0x21, 0x11, inet() + tlv(0x05, b"\xab" * 128)),
    "v2_aws": v2(0x21, 0x11,
                 inet() + tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9")),
    "v2_azure": v2(0x21, 0x11, inet() + tlv(0xEE, b"\x01\x01\x02\x03\x04")),
    "v2_gcp": v2(0x21, 0x11, inet() + tlv(0xE0, bytes(range(8)))),
    "v2_other_types": v2(0x21, 0x11, inet() + tlv(0x42, b"\x01\xab")
                         + tlv(0x30, b"ns1") + tlv(0xF0, b"")),
    "v2_escapes": v2(0x21, 0x11, inet()
                     + tlv(0x02, b"a\\b\x01\x7f\x80\xff\n")),
    "v2_duplicates": v2(0x21, 0x11, inet() + tlv(0x02, b"first")
                        + tlv(0x02, b"second")
                        + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"one"))
                        + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"two"))),
    # v2, cut short (split points)
    "v2_split_sig": SIG[:8],
    "v2_split_fixed": v2(0x21, 0x11, inet())[:16],
    "v2_split_tlv": v2(0x21, 0x11, inet() + tlv(0x02, b"example.com"))[:33],
    # v2, invalid
    "v2_version1": v2(0x11, 0x11, inet()),
    "v2_version3": v2(0x31, 0x11, inet()),
    "v2_command2": v2(0x22, 0x11, inet()),
    "v2_family13": v2(0x21, 0x13, inet()),
    "v2_family41": v2(0x21, 0x41, inet()),
    "v2_len_short": v2(0x21, 0x21, inet6()[:35]),
    "v2_tlv_overrun": v2(0x21, 0x11, inet() + b"\x02\x00\x0aabcde"),
    "v2_tlv_truncated": v2(0x21, 0x11, inet() + b"\x04\x00"),
    "v2_crc_bad": v2(0x21, 0x11, inet() + tlv(0x03, b"\x12\x34\x56\x78")),
    "v2_crc_len3": v2(0x21, 0x11, inet() + tlv(0x03, b"\0\0\0")),
    "v2_unique_id_129": v2(0x21, 0x11, inet() + tlv(0x05, b"\xab" * 129)),
    "v2_ssl_short": v2(0x21, 0x11, inet() + tlv(0x20, b"\x01\0\0\0")),
    "v2_ssl_sub_overrun": v2(0x21, 0x11, inet()
                             + tlv(0x20, b"\x01\0\0\0\0\x21\x00\x07TLSv1")),
    # CIDR strings, for pp_cidr_parse
    "cidr_v4": b"10.0.0.0/8",
    "cidr_v6": b"2001:db8::/32",
    "cidr_mapped": b"::ffff:10.0.0.0/104",
    "cidr_bad_prefix": b"10.0.0.0/08",
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus",
                                                             "pp_parse")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith("seed_"):
            os.unlink(os.path.join(out, name))
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
