/*
 * fuzz_seal.c: libFuzzer harness for a proxy's private keys as it receives
 * and stores them: the CMS envelope (key_cms, cs_envelope_open in
 * lib/cs_envelope.c), key.seal (cs_seal_open, lib/cs_seal.c), the bundle
 * verification before a bundle is installed (cs_bundle_verify,
 * lib/cs_x509.c) and dynamic mode's read of a version back from the store
 * (csy_bundle_load, mod_certsync/csy_dyn.c).
 *
 * The keys and certificates are fixed (fuzz_pki.h); valid envelopes and
 * key.seal files are made from them once, at start.  The first byte picks
 * what the rest is (its low three bits; the rest is the "payload"):
 *
 *   0  key_cms: raw bytes, or (payload[0] odd) a valid envelope of the
 *      leaf key with the rest spliced in;
 *   1  key.seal: raw, or spliced into a valid one (EC or RSA key), opened
 *      for the right or another name or serial, with the right or the
 *      other certificate;
 *   2  key.seal that authenticates (sealed with the proxy's sealing key)
 *      around a plaintext from the payload: what open_ec/open_pkcs8 parse;
 *   3  an envelope that decrypts (to the proxy's wrapping certificate)
 *      around a PKCS#8 from the payload, then the bundle verification;
 *   4  the chain PEM of a bundle: raw, or spliced into the valid EC or RSA
 *      chain, verified for one of a few names, keys and times;
 *   5  a version in a store on disk: fullchain.pem, key.seal and key.cms
 *      each valid, absent or spliced, loaded as a worker does.
 *
 * A splice is payload[0..1] an offset (big-endian, modulo the length + 1),
 * payload[2] % 3 what to do there (overwrite, insert, cut and append), the
 * rest the bytes; fewer than 3 bytes leave the valid input as it is.
 *
 * Invariants (abort otherwise): an unchanged valid input opens and gives
 * the key of its certificate; a changed key.seal, or one opened for another
 * name, serial or certificate, never opens; whatever opens and passes the
 * checks its caller makes (cs_bundle_verify, the worker's key match) is a
 * whole key pair whose public key is the certificate's and whose private
 * key belongs to it (EVP_PKEY_pairwise_check); a verified chain is in
 * order, valid at the time given and for the name; results and error texts
 * agree (a key exactly on success).  Leaks are LeakSanitizer's.
 *
 * Built with -fsanitize=fuzzer for fuzzing, or linked with replay.c to
 * run the corpus in `make check` without libFuzzer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_layout.h"
#include "cs_seal.h"
#include "cs_x509.h"
#include "csy_dyn.h"
#include "fuzz_pki.h"

#include "fuzz.h"

#define NAME        "example.com"
#define SERIAL      "1001"
#define RNAME       "rsa.example.com"
/* 2030-01-01, inside every fixed certificate's validity (2000-2099). */
#define NOW         apr_time_from_sec(1893456000)

static apr_pool_t *root;
static fuzz_pki_t pki;
static apr_array_header_t *chain;       /* X509 *: leaf, ca */
static apr_array_header_t *rchain;      /* rleaf, ca */
static const cs_seal_key_t *sk;
static unsigned char *env;              /* envelope of the leaf key */
static apr_size_t env_len;
static unsigned char *seal_ec, *seal_rsa;   /* key.seal, NAME/RNAME */
static apr_size_t seal_ec_len, seal_rsa_len;
static char store[] = "/dev/shm/fuzz-seal-XXXXXX";
static char vdir[sizeof(store) + 64];

static void cleanup(void)
{
    const char *f[] = { CS_LAYOUT_CHAIN, CS_LAYOUT_SEAL, CS_LAYOUT_ENVELOPE };
    char path[sizeof(vdir) + 32];
    unsigned i;

    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", vdir, f[i]);
        unlink(path);
    }
    rmdir(vdir);
    snprintf(path, sizeof(path), "%s/live/" NAME "/current", store);
    unlink(path);
    snprintf(path, sizeof(path), "%s/live/" NAME, store);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/live", store);
    rmdir(path);
    rmdir(store);
    apr_pool_destroy(root);
}

static void init(void)
{
    char path[sizeof(vdir) + 32];
    const char *err;

    if (root) {
        return;
    }
    apr_initialize();
    apr_pool_create(&root, NULL);
    fuzz_pki_load(&pki, root);
    sk = &APR_ARRAY_IDX(pki.seal_keys, 0, cs_seal_key_t);
    REQUIRE(cs_pem_read_certs(&chain, root, pki.chain_pem,
                              strlen(pki.chain_pem), &err) == APR_SUCCESS);
    REQUIRE(cs_pem_read_certs(&rchain, root, pki.rchain_pem,
                              strlen(pki.rchain_pem), &err) == APR_SUCCESS);
    REQUIRE(cs_envelope_seal(&env, &env_len, root, pki.leaf_key,
                             pki.wrap_certs, &err) == APR_SUCCESS);
    REQUIRE(cs_seal(&seal_ec, &seal_ec_len, root, pki.leaf_key, pki.leaf,
                    sk, NAME, SERIAL, &err) == APR_SUCCESS);
    REQUIRE(cs_seal(&seal_rsa, &seal_rsa_len, root, pki.rleaf_key,
                    pki.rleaf, sk, RNAME, SERIAL, &err) == APR_SUCCESS);

    /* STORE/live/NAME/SERIAL, and current -> SERIAL (cs_layout.h). */
    if (access("/dev/shm", W_OK) != 0) {
        memcpy(store, "/tmp/fuzz-seal-XXXXXX",
               sizeof("/tmp/fuzz-seal-XXXXXX"));
    }
    REQUIRE(mkdtemp(store) != NULL);
    snprintf(path, sizeof(path), "%s/live", store);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/live/" NAME, store);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(vdir, sizeof(vdir), "%s/live/" NAME "/" SERIAL, store);
    REQUIRE(mkdir(vdir, 0700) == 0);
    snprintf(path, sizeof(path), "%s/live/" NAME "/current", store);
    REQUIRE(symlink(SERIAL, path) == 0);
    atexit(cleanup);
}

/* A copy of base (blen bytes) with the payload spliced in (see the top);
 * malloc'ed, exactly *olen bytes (at least 1 allocated). */
static unsigned char *splice_in(apr_size_t *olen,
                                const unsigned char *base, apr_size_t blen,
                                const uint8_t *pl, size_t plen)
{
    apr_size_t off, n, len;
    unsigned char *out;
    int op;

    if (plen < 3) {
        out = malloc(blen ? blen : 1);
        REQUIRE(out != NULL);
        memcpy(out, base, blen);
        *olen = blen;
        return out;
    }
    off = (((apr_size_t)pl[0] << 8) | pl[1]) % (blen + 1);
    op = pl[2] % 3;
    pl += 3;
    n = plen - 3;
    if (op == 0) {                          /* overwrite */
        len = off + n > blen ? off + n : blen;
    }
    else if (op == 1) {                     /* insert */
        len = blen + n;
    }
    else {                                  /* cut at off, append */
        len = off + n;
    }
    out = malloc(len ? len : 1);
    REQUIRE(out != NULL);
    memcpy(out, base, off);
    memcpy(out + off, pl, n);
    if (op == 0 && off + n < blen) {
        memcpy(out + off + n, base + off + n, blen - off - n);
    }
    else if (op == 1) {
        memcpy(out + off + n, base + off, blen - off);
    }
    *olen = len;
    return out;
}

static unsigned char *dup_bytes(const uint8_t *d, size_t n)
{
    unsigned char *out = malloc(n ? n : 1);

    REQUIRE(out != NULL);
    memcpy(out, d, n);
    return out;
}

/* key is a whole key pair, and the one cert names: its public key is the
 * certificate's and its private key belongs to that public key.  Checked
 * here without cs_key_belongs: EC by the pairwise check, RSA by a
 * signature (the pairwise check of an RSA key tests its primes, ~100 ms). */
static void require_pair(EVP_PKEY *key, X509 *cert)
{
    static const unsigned char msg[] = "fuzz_seal";
    unsigned char sig[512];
    size_t sig_len = sizeof(sig);
    EVP_PKEY_CTX *ctx;
    EVP_MD_CTX *md;

    REQUIRE(key != NULL);
    REQUIRE(EVP_PKEY_eq(X509_get0_pubkey(cert), key) == 1);
    if (EVP_PKEY_is_a(key, "EC")) {
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        REQUIRE(ctx != NULL);
        REQUIRE(EVP_PKEY_pairwise_check(ctx) == 1);
        EVP_PKEY_CTX_free(ctx);
    }
    else {
        md = EVP_MD_CTX_new();
        REQUIRE(md != NULL);
        REQUIRE(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1);
        REQUIRE(EVP_DigestSign(md, sig, &sig_len, msg, sizeof(msg)) == 1);
        EVP_MD_CTX_free(md);
        md = EVP_MD_CTX_new();
        REQUIRE(md != NULL);
        REQUIRE(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                     X509_get0_pubkey(cert)) == 1);
        REQUIRE(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)) == 1);
        EVP_MD_CTX_free(md);
    }
    ERR_clear_error();
}

/* The same private key (not only the same public key). */
static void require_same_key(EVP_PKEY *a, EVP_PKEY *b)
{
    BIGNUM *x = NULL, *y = NULL;
    const char *param = EVP_PKEY_is_a(a, "EC") ? OSSL_PKEY_PARAM_PRIV_KEY
                                               : OSSL_PKEY_PARAM_RSA_D;

    REQUIRE(EVP_PKEY_eq(a, b) == 1);
    REQUIRE(EVP_PKEY_get_bn_param(a, param, &x) == 1);
    REQUIRE(EVP_PKEY_get_bn_param(b, param, &y) == 1);
    REQUIRE(BN_cmp(x, y) == 0);
    BN_clear_free(x);
    BN_clear_free(y);
}

/* What the callers do with an opened key: the sync daemon verifies the
 * bundle (csy_sync.c, apply_bundle).  Whatever passes is a real pair. */
static void verify_opened(EVP_PKEY *key)
{
    const char *err;

    if (cs_bundle_verify(chain, key, NAME, NOW, &err) == APR_SUCCESS) {
        require_pair(key, pki.leaf);
    }
    else {
        REQUIRE(err != NULL);
    }
    if (cs_bundle_verify(rchain, key, RNAME, NOW, &err) == APR_SUCCESS) {
        require_pair(key, pki.rleaf);
    }
    else {
        REQUIRE(err != NULL);
    }
}

/* 0: key_cms as received. */
static void fuzz_envelope(apr_pool_t *p, const uint8_t *pl, size_t plen)
{
    unsigned char *buf;
    apr_size_t len;
    EVP_PKEY *key = NULL;
    const char *err = NULL;
    apr_status_t rv;
    int spliced = plen > 0 && (pl[0] & 1);

    if (spliced) {
        buf = splice_in(&len, env, env_len, pl + 1, plen - 1);
    }
    else {
        buf = dup_bytes(pl + (plen > 0), plen - (plen > 0));
        len = plen - (plen > 0);
    }
    rv = cs_envelope_open(&key, p, buf, len, pki.wrap, pki.wrap_key, &err);
    REQUIRE((rv == APR_SUCCESS) == (key != NULL));
    REQUIRE((rv == APR_SUCCESS) == (err == NULL));
    if (rv == APR_SUCCESS) {
        /* Only the leaf key was ever sealed to this certificate. */
        require_same_key(key, pki.leaf_key);
        verify_opened(key);
    }
    else {
        REQUIRE(rv == APR_EINVAL || rv == APR_ENOENT || rv == APR_EGENERAL
                || rv == APR_ENOMEM);
    }
    if (spliced && len == env_len && memcmp(buf, env, len) == 0) {
        REQUIRE(rv == APR_SUCCESS);
    }
    free(buf);
}

/* 1: key.seal as read back from the store. */
static void fuzz_seal_file(const uint8_t *pl, size_t plen)
{
    static const char *const names[] = { NULL, "www." NAME, NAME "." };
    static const char *const serials[] = { SERIAL, "1002", "01001" };
    unsigned char *buf;
    const unsigned char *base;
    apr_size_t len, blen;
    unsigned sel = plen > 0 ? pl[0] : 0;
    int rsa = sel & 2, other_cert = (sel >> 2) & 1;
    unsigned nv = ((sel >> 3) & 3) % 3, sv = ((sel >> 5) & 3) % 3;
    const char *name = nv ? names[nv] : (rsa ? RNAME : NAME);
    const char *serial = serials[sv];
    X509 *leaf = (rsa != 0) != (other_cert != 0) ? pki.rleaf : pki.leaf;
    EVP_PKEY *key = NULL, *want = rsa ? pki.rleaf_key : pki.leaf_key;
    const char *err = NULL;
    apr_status_t rv, rv2;
    int same;

    base = rsa ? seal_rsa : seal_ec;
    blen = rsa ? seal_rsa_len : seal_ec_len;
    if (sel & 1) {
        buf = splice_in(&len, base, blen, pl + 1, plen - 1);
    }
    else {
        buf = dup_bytes(pl + (plen > 0), plen - (plen > 0));
        len = plen - (plen > 0);
    }
    rv = cs_seal_open(&key, buf, len, leaf, sk, name, serial, &err);
    REQUIRE((rv == APR_SUCCESS) == (key != NULL));
    REQUIRE((rv == APR_SUCCESS) == (err == NULL));
    REQUIRE(rv == APR_SUCCESS || rv == APR_ENOENT || rv == APR_EINVAL
            || rv == APR_ENOMEM);
    rv2 = cs_seal_open(NULL, buf, len, NULL, sk, name, serial, &err);
    same = len == blen && memcmp(buf, base, len) == 0;
    if (rv == APR_SUCCESS) {
        REQUIRE(rv2 == APR_SUCCESS);
        require_same_key(key, want);
        require_pair(key, leaf);
    }
    if (same && !nv && !sv) {
        /* Unchanged, for its own name and serial: opens exactly with its
         * own certificate. */
        REQUIRE(rv2 == APR_SUCCESS);
        REQUIRE((rv == APR_SUCCESS) == !other_cert);
    }
    else if (!same || nv || sv) {
        /* GCM: nothing else authenticates. */
        REQUIRE(rv2 != APR_SUCCESS && rv != APR_SUCCESS);
    }
    EVP_PKEY_free(key);
    free(buf);
}

/* key.seal's layout (cs_seal.c) around any plaintext, sealed with the
 * proxy's sealing key for NAME or RNAME and SERIAL: what only a holder of
 * the wrapping key can make. */
static unsigned char *seal_plain(apr_size_t *olen, const char *name,
                                 const uint8_t *plain, size_t plen)
{
    static const char label[] = "mod_certsync key.seal v1";
    unsigned char *out = malloc(4 + 12 + plen + 16);
    char ad[sizeof(label) + CSY_NAME_SIZE + CSY_SERIAL_SIZE];
    apr_size_t ad_len = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n;

    REQUIRE(out != NULL && c != NULL);
    memcpy(ad, label, sizeof(label));
    ad_len = sizeof(label);
    memcpy(ad + ad_len, name, strlen(name) + 1);
    ad_len += strlen(name) + 1;
    memcpy(ad + ad_len, SERIAL, strlen(SERIAL));
    ad_len += strlen(SERIAL);
    memcpy(out, "CSK1", 4);
    memset(out + 4, 0x5a, 12);              /* a fixed nonce: a test */
    REQUIRE(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, sk->k, out + 4)
            == 1);
    REQUIRE(EVP_EncryptUpdate(c, NULL, &n, (unsigned char *)ad,
                              (int)ad_len) == 1);
    REQUIRE(EVP_EncryptUpdate(c, out + 16, &n, plain, (int)plen) == 1);
    REQUIRE(EVP_EncryptFinal_ex(c, out + 16 + n, &n) == 1);
    REQUIRE(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16,
                                out + 16 + plen) == 1);
    EVP_CIPHER_CTX_free(c);
    *olen = 4 + 12 + plen + 16;
    return out;
}

/* 2: an authentic key.seal with any plaintext. */
static void fuzz_seal_plain(const uint8_t *pl, size_t plen)
{
    int rsa = plen > 0 && (pl[0] & 1);
    X509 *leaf = rsa ? pki.rleaf : pki.leaf;
    const char *name = rsa ? RNAME : NAME, *err = NULL;
    EVP_PKEY *key = NULL;
    BIGNUM *priv = NULL;
    unsigned char *buf;
    apr_size_t len;
    apr_status_t rv;

    if (plen > 1 + 16384) {
        return;
    }
    buf = seal_plain(&len, name, pl + (plen > 0), plen - (plen > 0));
    rv = cs_seal_open(&key, buf, len, leaf, sk, name, SERIAL, &err);
    REQUIRE((rv == APR_SUCCESS) == (key != NULL));
    REQUIRE((rv == APR_SUCCESS) == (err == NULL));
    if (len >= 4 + 12 + 2 + 16) {
        /* It authenticates: only its content can make it fail. */
        REQUIRE(rv == APR_SUCCESS || rv == APR_EINVAL);
    }
    if (rv == APR_SUCCESS) {
        /* The certificate's public key, and a private key in it.  That
         * the two belong together is checked when sealing (cs_seal), not
         * when opening: GCM vouches for what cs_seal wrote, and only a
         * holder of the wrapping key can seal (see FUZZING.md). */
        REQUIRE(EVP_PKEY_eq(X509_get0_pubkey(leaf), key) == 1);
        REQUIRE(EVP_PKEY_get_bn_param(key, EVP_PKEY_is_a(key, "EC")
                                      ? OSSL_PKEY_PARAM_PRIV_KEY
                                      : OSSL_PKEY_PARAM_RSA_D, &priv) == 1);
        BN_clear_free(priv);
    }
    EVP_PKEY_free(key);
    free(buf);
}

/* 3: an envelope that decrypts, around any PKCS#8. */
static void fuzz_envelope_plain(apr_pool_t *p, const uint8_t *pl,
                                size_t plen)
{
    STACK_OF(X509) *to = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(pl, (int)plen);
    CMS_ContentInfo *cms;
    unsigned char *der = NULL;
    EVP_PKEY *key = NULL;
    const char *err = NULL;
    apr_status_t rv;
    int n;

    REQUIRE(to != NULL && in != NULL && sk_X509_push(to, pki.wrap));
    cms = CMS_encrypt(to, in, EVP_aes_256_gcm(), CMS_BINARY);
    REQUIRE(cms != NULL);
    n = i2d_CMS_ContentInfo(cms, &der);
    REQUIRE(n > 0);
    rv = cs_envelope_open(&key, p, der, (apr_size_t)n, pki.wrap,
                          pki.wrap_key, &err);
    REQUIRE((rv == APR_SUCCESS) == (key != NULL));
    REQUIRE((rv == APR_SUCCESS) == (err == NULL));
    /* It decrypts: only its content can make it fail. */
    REQUIRE(rv == APR_SUCCESS || rv == APR_EGENERAL);
    if (rv == APR_SUCCESS) {
        verify_opened(key);
    }
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(to);
    ERR_clear_error();
}

/* Is the leaf valid for name, by hand: a SAN equal to it, or a wildcard
 * SAN "*.rest" for a name "label.rest". */
static int san_covers(X509 *leaf, const char *name)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name,
                                           NULL, NULL);
    const char *dot = strchr(name, '.');
    int i, found = 0;

    for (i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const char *s;
        int len;

        if (g->type != GEN_DNS) {
            continue;
        }
        s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        len = ASN1_STRING_length(g->d.dNSName);
        if ((size_t)len == strlen(name) && strncasecmp(s, name, len) == 0) {
            found = 1;
        }
        else if (name[0] != '*' && dot && len >= 2 && s[0] == '*'
                 && s[1] == '.' && (size_t)len - 1 == strlen(dot)
                 && strncasecmp(s + 1, dot, len - 1) == 0
                 && dot != name) {
            found = 1;
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/* 4: the chain of a bundle. */
static void fuzz_chain(apr_pool_t *p, const uint8_t *pl, size_t plen)
{
    static const char *const names[] = {
        NAME, "www." NAME, "*." NAME, "xn--bcher-kva.example", RNAME,
        "other.example.org", "a.www." NAME, "EXAMPLE.COM"
    };
    /* 1999, 2030, 2100 */
    static const apr_time_t times[] = {
        APR_INT64_C(915148800) * APR_USEC_PER_SEC, NOW,
        APR_INT64_C(4102444800) * APR_USEC_PER_SEC
    };
    unsigned sel = plen > 0 ? pl[0] : 0;
    unsigned base = sel & 3;        /* raw, EC chain, RSA chain, raw */
    const char *name = names[(sel >> 2) & 7];
    apr_time_t now = times[((sel >> 5) & 3) % 3];
    EVP_PKEY *key = (sel & 0x80) ? pki.rleaf_key : pki.leaf_key;
    const char *pem, *err = NULL;
    apr_array_header_t *certs = NULL;
    unsigned char *buf;
    apr_size_t len;
    apr_status_t rv;
    X509 *leaf;
    time_t t;
    int i, same;

    if (base == 1 || base == 2) {
        pem = base == 1 ? pki.chain_pem : pki.rchain_pem;
        buf = splice_in(&len, (const unsigned char *)pem, strlen(pem), pl + 1,
                     plen - 1);
        same = len == strlen(pem) && memcmp(buf, pem, len) == 0;
    }
    else {
        buf = dup_bytes(pl + (plen > 0), plen - (plen > 0));
        len = plen - (plen > 0);
        same = 0;
    }
    rv = cs_pem_read_certs(&certs, p, (const char *)buf, len, &err);
    if (rv != APR_SUCCESS) {
        REQUIRE(err != NULL && certs == NULL);
        REQUIRE(!same);
        free(buf);
        return;
    }
    REQUIRE(certs != NULL);
    for (i = 0; i < certs->nelts; i++) {
        REQUIRE(APR_ARRAY_IDX(certs, i, X509 *) != NULL);
    }
    rv = cs_bundle_verify(certs, key, name, now, &err);
    REQUIRE((rv == APR_SUCCESS) == (err == NULL));
    if (rv == APR_SUCCESS) {
        leaf = APR_ARRAY_IDX(certs, 0, X509 *);
        require_pair(key, leaf);
        for (i = 0; i + 1 < certs->nelts; i++) {
            X509 *c = APR_ARRAY_IDX(certs, i, X509 *);
            X509 *up = APR_ARRAY_IDX(certs, i + 1, X509 *);
            REQUIRE(X509_check_issued(up, c) == X509_V_OK);
            REQUIRE(X509_verify(c, X509_get0_pubkey(up)) == 1);
        }
        t = (time_t)apr_time_sec(now);
        REQUIRE(X509_cmp_time(X509_get0_notBefore(leaf), &t) < 0);
        REQUIRE(X509_cmp_time(X509_get0_notAfter(leaf), &t) > 0);
        REQUIRE(san_covers(leaf, name));
    }
    if (same && now == NOW
        && (base == 1 ? key == pki.leaf_key && strcmp(name, RNAME) != 0
                        && strcmp(name, "other.example.org") != 0
                        && strcmp(name, "a.www." NAME) != 0
                      : key == pki.rleaf_key && strcmp(name, RNAME) == 0)) {
        REQUIRE(rv == APR_SUCCESS);         /* the valid bundles pass */
    }
    ERR_clear_error();
    free(buf);
}

static void put_file(const char *file, const unsigned char *d,
                     apr_size_t len)
{
    char path[sizeof(vdir) + 32];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", vdir, file);
    if (!d) {
        REQUIRE(unlink(path) == 0 || errno == ENOENT);
        return;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, d, len) == (ssize_t)len);
    REQUIRE(close(fd) == 0);
}

/* 5: a version read back from the store, as a worker reads it. */
static void fuzz_store(const uint8_t *pl, size_t plen)
{
    unsigned sel = plen > 0 ? pl[0] : 0;
    unsigned cv = sel & 3, sv = (sel >> 2) & 3, ev = (sel >> 4) & 3;
    const unsigned char *sp = pl + (plen > 0);
    size_t sn = plen - (plen > 0);
    unsigned char *c = NULL, *s = NULL, *e = NULL;
    apr_size_t clen = 0, slen = 0, elen = 0;
    csy_bundle_t *b = NULL;
    char err[512];
    apr_status_t rv;
    int chain_ok, seal_ok, env_ok;

    /* fullchain.pem: 0/3 valid, 1 spliced, 2 raw */
    if (cv == 1) {
        c = splice_in(&clen, (const unsigned char *)pki.chain_pem,
                   strlen(pki.chain_pem), sp, sn);
    }
    else if (cv == 2) {
        c = dup_bytes(sp, sn);
        clen = sn;
    }
    else {
        c = dup_bytes((const uint8_t *)pki.chain_pem, strlen(pki.chain_pem));
        clen = strlen(pki.chain_pem);
    }
    /* key.seal: 0 valid, 1 spliced, 2/3 absent */
    if (sv == 0) {
        s = dup_bytes(seal_ec, seal_ec_len);
        slen = seal_ec_len;
    }
    else if (sv == 1) {
        s = splice_in(&slen, seal_ec, seal_ec_len, sp, sn);
    }
    /* key.cms: 0 valid, 1 spliced, 2/3 absent */
    if (ev == 0) {
        e = dup_bytes(env, env_len);
        elen = env_len;
    }
    else if (ev == 1) {
        e = splice_in(&elen, env, env_len, sp, sn);
    }
    put_file(CS_LAYOUT_CHAIN, c, clen);
    put_file(CS_LAYOUT_SEAL, s, slen);
    put_file(CS_LAYOUT_ENVELOPE, e, elen);
    chain_ok = clen == strlen(pki.chain_pem)
               && memcmp(c, pki.chain_pem, clen) == 0;
    seal_ok = s && slen == seal_ec_len && memcmp(s, seal_ec, slen) == 0;
    env_ok = e && elen == env_len && memcmp(e, env, elen) == 0;

    err[0] = '\0';
    rv = csy_bundle_load(&b, store, NAME, pki.wrap_certs, pki.wrap_keys,
                         err, sizeof(err));
    REQUIRE((rv == APR_SUCCESS) == (b != NULL));
    if (rv == APR_SUCCESS) {
        require_pair(b->key, b->leaf);
        /* The only key in this store is the leaf key. */
        require_same_key(b->key, pki.leaf_key);
        REQUIRE(strcmp(b->serial, SERIAL) == 0);
        REQUIRE(strcmp(b->name, NAME) == 0);
        REQUIRE(b->chain != NULL);
        if (seal_ok) {
            REQUIRE(!b->from_envelope);
        }
        csy_bundle_release(b);
    }
    else {
        REQUIRE(err[0] != '\0');
    }
    if (chain_ok && (seal_ok || env_ok)) {
        REQUIRE(rv == APR_SUCCESS);
    }
    free(c);
    free(s);
    free(e);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;

    if (size < 1) {
        return 0;
    }
    init();
    apr_pool_create(&p, root);
    switch (data[0] & 7) {
    case 0:
        fuzz_envelope(p, data + 1, size - 1);
        break;
    case 1:
        fuzz_seal_file(data + 1, size - 1);
        break;
    case 2:
        fuzz_seal_plain(data + 1, size - 1);
        break;
    case 3:
        fuzz_envelope_plain(p, data + 1, size - 1);
        break;
    case 4:
    case 6:
        fuzz_chain(p, data + 1, size - 1);
        break;
    default:
        fuzz_store(data + 1, size - 1);
        break;
    }
    apr_pool_destroy(p);
    return 0;
}
