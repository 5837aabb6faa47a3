/*
 * cs_crypto.c: key pairs, PEM/DER/base64 helpers, the key-pair check and
 * fingerprints.  The private-key envelope is cs_envelope.c.
 *
 * Pure code: APR and OpenSSL 3.0 only.  Every OpenSSL object handed out is
 * freed by a cleanup on the caller's pool; every buffer that held a
 * plaintext private key is cleansed before it is released.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <apr_cstr.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_crypto_private.h"
#include "cs_file.h"

/* Files we read are certificates and keys: anything larger is a mistake. */
#define CS_FILE_MAX     (1024 * 1024)

/* ------------------------------------------------------------------ */
/* pool cleanups and errors                                            */
/* ------------------------------------------------------------------ */

static apr_status_t pkey_cleanup(void *data)
{
    EVP_PKEY_free(data);
    return APR_SUCCESS;
}

static apr_status_t x509_cleanup(void *data)
{
    X509_free(data);
    return APR_SUCCESS;
}

void cs_pkey_own(apr_pool_t *p, EVP_PKEY *key)
{
    apr_pool_cleanup_register(p, key, pkey_cleanup,
                              apr_pool_cleanup_null);
}

static void x509_own(apr_pool_t *p, X509 *cert)
{
    apr_pool_cleanup_register(p, cert, x509_cleanup,
                              apr_pool_cleanup_null);
}

const char *cs_ssl_error(apr_pool_t *p, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    if (reason == NULL) {
        return what;
    }
    return apr_psprintf(p, "%s (%s)", what, reason);
}

/* ------------------------------------------------------------------ */
/* key types and generation                                            */
/* ------------------------------------------------------------------ */

int cs_key_type_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    if (!apr_cstr_casecmp(name, "ec-p256")) {
        return CS_KEY_EC_P256;
    }
    if (!apr_cstr_casecmp(name, "rsa-2048")) {
        return CS_KEY_RSA_2048;
    }
    return -1;
}

const char *cs_key_type_name(cs_key_type_t type)
{
    switch (type) {
    case CS_KEY_EC_P256:
        return "ec-p256";
    case CS_KEY_RSA_2048:
        return "rsa-2048";
    }
    return NULL;
}

int cs_key_type_of(EVP_PKEY *key)
{
    char group[64];
    size_t glen = 0;

    if (key == NULL) {
        return -1;
    }
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        return EVP_PKEY_get_bits(key) == 2048 ? CS_KEY_RSA_2048 : -1;
    case EVP_PKEY_EC:
        if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &glen)) {
            ERR_clear_error();
            return -1;
        }
        return (OBJ_txt2nid(group) == NID_X9_62_prime256v1
                || !strcmp(group, "P-256")) ? CS_KEY_EC_P256 : -1;
    }
    return -1;
}

const char *cs_key_describe(apr_pool_t *p, EVP_PKEY *key)
{
    char group[64];
    size_t glen = 0;
    int nid;

    if (key == NULL) {
        return NULL;
    }
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(key) < 2048) {
            return NULL;
        }
        return apr_psprintf(p, "rsa-%d", EVP_PKEY_get_bits(key));
    case EVP_PKEY_EC:
        if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &glen)) {
            ERR_clear_error();
            return NULL;
        }
        nid = OBJ_txt2nid(group);
        if (nid == NID_X9_62_prime256v1) {
            return "ec-p256";
        }
        if (nid == NID_secp384r1) {
            return "ec-p384";
        }
        return NULL;
    }
    return NULL;
}

apr_status_t cs_key_generate(EVP_PKEY **pkey, apr_pool_t *p,
                             cs_key_type_t type)
{
    EVP_PKEY *key = NULL;

    *pkey = NULL;
    switch (type) {
    case CS_KEY_EC_P256:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case CS_KEY_RSA_2048:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        break;
    default:
        return APR_EINVAL;
    }
    if (key == NULL) {
        ERR_clear_error();
        return APR_EGENERAL;
    }
    cs_pkey_own(p, key);
    *pkey = key;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* PEM and files                                                       */
/* ------------------------------------------------------------------ */

/* Never prompt on a terminal for a pass phrase: encrypted keys are
 * refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* A library context with the null provider alone: a certificate read in
 * it keeps its public key undecoded (cs_pem_read_certs_bare).  One for
 * the process, never freed: what was read in it may live as long. */
static OSSL_LIB_CTX *bare_ctx;
static pthread_once_t bare_once = PTHREAD_ONCE_INIT;

static void bare_make(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();

    /* Without a provider loaded, a fetch would load the default one. */
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "null") == NULL) {
        OSSL_LIB_CTX_free(ctx);
        ctx = NULL;
    }
    bare_ctx = ctx;
}

/* The next certificate of bio, read in the bare context if bare. */
static X509 *read_cert(BIO *bio, int bare)
{
    X509 *x = NULL, *got;

    if (bare) {
        pthread_once(&bare_once, bare_make);
        /* d2i fills this object, whose public key carries the context. */
        if (bare_ctx == NULL || (x = X509_new_ex(bare_ctx, NULL)) == NULL) {
            ERR_raise(ERR_LIB_X509, ERR_R_MALLOC_FAILURE);
            return NULL;
        }
    }
    got = PEM_read_bio_X509(bio, bare ? &x : NULL, NULL, NULL);
    if (got == NULL) {
        X509_free(x);   /* no block read; a failed d2i freed it: NULL */
    }
    return got;
}

static apr_status_t read_certs(apr_array_header_t **certs, apr_pool_t *p,
                               const char *pem, apr_size_t len, int bare,
                               const char **err)
{
    apr_array_header_t *a;
    BIO *bio;
    X509 *x;
    unsigned long e;

    *certs = NULL;
    *err = NULL;
    if (pem == NULL || len > INT_MAX) {
        *err = "PEM: no input or input too large";
        return APR_EINVAL;
    }
    /* the end of the loop below is told by the error queue */
    ERR_clear_error();
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        *err = cs_ssl_error(p, "PEM: out of memory");
        return APR_ENOMEM;
    }
    a = apr_array_make(p, 3, sizeof(X509 *));
    while ((x = read_cert(bio, bare)) != NULL) {
        x509_own(p, x);
        APR_ARRAY_PUSH(a, X509 *) = x;
    }
    BIO_free(bio);
    /* The loop ends at the first block that is not a certificate; only
     * "no more PEM" is a clean end. */
    e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM
                    && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        *err = cs_ssl_error(p, "PEM: a certificate cannot be parsed");
        return APR_EINVAL;
    }
    ERR_clear_error();
    if (a->nelts == 0) {
        *err = "PEM: no certificate found";
        return APR_ENOENT;
    }
    *certs = a;
    return APR_SUCCESS;
}

apr_status_t cs_pem_read_certs(apr_array_header_t **certs, apr_pool_t *p,
                               const char *pem, apr_size_t len,
                               const char **err)
{
    return read_certs(certs, p, pem, len, 0, err);
}

apr_status_t cs_pem_read_certs_bare(apr_array_header_t **certs,
                                    apr_pool_t *p, const char *pem,
                                    apr_size_t len, const char **err)
{
    return read_certs(certs, p, pem, len, 1, err);
}

apr_status_t cs_pem_read_key(EVP_PKEY **key, apr_pool_t *p, const char *pem,
                             apr_size_t len, const char **err)
{
    BIO *bio;
    EVP_PKEY *pk;

    *key = NULL;
    *err = NULL;
    if (pem == NULL || len > INT_MAX) {
        *err = "PEM: no input or input too large";
        return APR_EINVAL;
    }
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        *err = cs_ssl_error(p, "PEM: out of memory");
        return APR_ENOMEM;
    }
    pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (pk == NULL) {
        *err = cs_ssl_error(p, "PEM: no unencrypted private key found");
        return APR_EINVAL;
    }
    ERR_clear_error();
    cs_pkey_own(p, pk);
    *key = pk;
    return APR_SUCCESS;
}

/* The whole of a small file, NUL-terminated, from p (cs_file_read), with
 * the words for *err. */
static apr_status_t file_read(char **data, apr_size_t *len, apr_pool_t *p,
                              const char *path, const char **err)
{
    apr_status_t rv = cs_file_read(data, len, p, path, CS_FILE_MAX);
    char ebuf[128];

    if (rv == APR_FROM_OS_ERROR(EFBIG)) {
        *err = apr_psprintf(p, "%s: too large for a certificate or key",
                            path);
    }
    else if (rv == APR_EINVAL) {
        *err = apr_psprintf(p, "%s: not a regular file", path);
    }
    else if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "cannot read %s: %s", path,
                            apr_strerror(rv, ebuf, sizeof(ebuf)));
    }
    return rv;
}

/* The PEM file at path as certificates (certs) or as a key (key, and the
 * text read is cleansed): the other is NULL. */
static apr_status_t file_read_pem(apr_array_header_t **certs, EVP_PKEY **key,
                                  apr_pool_t *p, const char *path,
                                  const char **err)
{
    char *pem;
    apr_size_t len;
    apr_status_t rv;

    *err = NULL;
    if ((rv = file_read(&pem, &len, p, path, err)) != APR_SUCCESS) {
        return rv;
    }
    if (certs) {
        rv = cs_pem_read_certs(certs, p, pem, len, err);
    }
    else {
        rv = cs_pem_read_key(key, p, pem, len, err);
        OPENSSL_cleanse(pem, len);
    }
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(p, "%s: %s", path, *err);
    }
    return rv;
}

apr_status_t cs_file_read_certs(apr_array_header_t **certs, apr_pool_t *p,
                                const char *path, const char **err)
{
    *certs = NULL;
    return file_read_pem(certs, NULL, p, path, err);
}

apr_status_t cs_file_read_key(EVP_PKEY **key, apr_pool_t *p,
                              const char *path, const char **err)
{
    *key = NULL;
    return file_read_pem(NULL, key, p, path, err);
}

const char *cs_pem_write_certs(apr_pool_t *p,
                               const apr_array_header_t *certs)
{
    BIO *bio;
    char *data;
    const char *pem = NULL;
    long len;
    int i;

    if (certs == NULL || (bio = BIO_new(BIO_s_mem())) == NULL) {
        return NULL;
    }
    for (i = 0; i < certs->nelts; i++) {
        if (!PEM_write_bio_X509(bio, APR_ARRAY_IDX(certs, i, X509 *))) {
            goto leave;
        }
    }
    len = BIO_get_mem_data(bio, &data);
    pem = len > 0 ? apr_pstrmemdup(p, data, (apr_size_t)len) : "";

leave:
    BIO_free(bio);
    ERR_clear_error();
    return pem;
}

char *cs_pem_write_key(apr_pool_t *p, EVP_PKEY *key, apr_size_t *len)
{
    BIO *bio;
    char *data, *pem = NULL;
    long n;

    if (len != NULL) {
        *len = 0;
    }
    if (key == NULL || (bio = BIO_new(BIO_s_secmem())) == NULL) {
        return NULL;
    }
    if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
        && (n = BIO_get_mem_data(bio, &data)) > 0) {
        pem = apr_pstrmemdup(p, data, (apr_size_t)n);
        OPENSSL_cleanse(data, (size_t)n);
        if (len != NULL) {
            *len = (apr_size_t)n;
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return pem;
}

/* ------------------------------------------------------------------ */
/* base64 and fingerprints                                             */
/* ------------------------------------------------------------------ */

const char *cs_base64_encode(apr_pool_t *p, const unsigned char *data,
                             apr_size_t len)
{
    unsigned char *out;

    if (len > (apr_size_t)INT_MAX / 4 * 3) {
        return NULL;
    }
    out = apr_palloc(p, (len + 2) / 3 * 4 + 1);
    /* EVP_EncodeBlock writes no newlines and NUL-terminates. */
    EVP_EncodeBlock(out, data, (int)len);
    return (const char *)out;
}

static int is_b64(int c)
{
    return apr_isalnum(c) || c == '+' || c == '/';
}

apr_status_t cs_base64_decode(unsigned char **data, apr_size_t *len,
                              apr_pool_t *p, const char *text)
{
    apr_size_t n, i, pad = 0;
    unsigned char *out;
    int r;

    *data = NULL;
    *len = 0;
    if (text == NULL) {
        return APR_EINVAL;
    }
    n = strlen(text);
    if (n % 4 != 0 || n > INT_MAX) {
        return APR_EINVAL;
    }
    if (n > 0 && text[n - 1] == '=') {
        pad = text[n - 2] == '=' ? 2 : 1;
    }
    /* EVP_DecodeBlock skips blanks and accepts stray '=': be strict. */
    for (i = 0; i < n - pad; i++) {
        if (!is_b64((unsigned char)text[i])) {
            return APR_EINVAL;
        }
    }
    out = apr_palloc(p, n / 4 * 3 + 1);
    if (n > 0) {
        r = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
        if (r < 0 || (apr_size_t)r < pad) {
            return APR_EINVAL;
        }
        *len = (apr_size_t)r - pad;
    }
    out[*len] = 0;
    *data = out;
    return APR_SUCCESS;
}

int cs_ec_key_whole(EVP_PKEY *key)
{
    EVP_PKEY_CTX *pctx;
    int ok;

    if (key == NULL || !EVP_PKEY_is_a(key, "EC")) {
        return 0;
    }
    /* The scalar times the generator is the point: one multiplication,
     * cheaper than a signature and its check. */
    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    ok = pctx != NULL && EVP_PKEY_pairwise_check(pctx) == 1;
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return ok;
}

int cs_key_belongs(EVP_PKEY *key, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "cs_key_belongs";
    unsigned char sig[1024], *big = NULL;     /* 1024: RSA-8192 */
    size_t sig_len = 0;
    EVP_MD_CTX *md = NULL;
    int ok = 0;

    if (key == NULL || pub == NULL || EVP_PKEY_eq(pub, key) != 1) {
        ERR_clear_error();
        return 0;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        return cs_ec_key_whole(key);
    }
    if ((md = EVP_MD_CTX_new()) != NULL
        && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(md, NULL, &sig_len, msg, sizeof(msg)) == 1) {
        if (sig_len > sizeof(sig)) {
            big = OPENSSL_malloc(sig_len);
        }
        ok = (sig_len <= sizeof(sig) || big != NULL)
             && EVP_DigestSign(md, big ? big : sig, &sig_len, msg,
                               sizeof(msg)) == 1;
    }
    EVP_MD_CTX_free(md);
    md = NULL;
    ok = ok && (md = EVP_MD_CTX_new()) != NULL
         && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1
         && EVP_DigestVerify(md, big ? big : sig, sig_len, msg,
                             sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(big);
    ERR_clear_error();
    return ok;
}

const char *cs_cert_fingerprint(apr_pool_t *p, X509 *cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    char *hex;
    static const char digits[] = "0123456789abcdef";

    if (cert == NULL || !X509_digest(cert, EVP_sha256(), md, &n)) {
        ERR_clear_error();
        return NULL;
    }
    hex = apr_palloc(p, (apr_size_t)n * 2 + 1);
    for (i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[2 * n] = '\0';
    return hex;
}
