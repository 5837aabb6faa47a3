/*
 * cs_envelope.c: the private-key envelope (CMS AuthEnvelopedData, see
 * cs_envelope.h): sealing to the wrapping certificates, opening with one of
 * them, and the PKCS#8 EC fast path that turns the opened key into an
 * EVP_PKEY without OpenSSL 3.0's decoders.
 *
 * Pure code: APR and OpenSSL 3.0 only.  Every OpenSSL object handed out is
 * freed by a cleanup on the caller's pool; every buffer that held a
 * plaintext private key is cleansed before it is released.
 */
#include <limits.h>
#include <string.h>

#include <apr_strings.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_crypto_private.h"
#include "cs_envelope.h"


/*
 * Whether key holds its private half.  The PKCS#8 encoder refuses a
 * public key too, but names it "malloc failure": ask first, for a clear
 * message.
 */
static int has_private(EVP_PKEY *key)
{
    BIGNUM *bn = NULL;
    int ok;

    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_D, &bn);
        break;
    case EVP_PKEY_EC:
        ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &bn);
        break;
    default:
        /* other types: the PKCS#8 encoder decides */
        return 1;
    }
    BN_clear_free(bn);
    ERR_clear_error();
    return ok && bn != NULL;
}

/* The recipients' check: RSA-OAEP key transport needs an RSA key; less
 * than 2048 bits would be the weakest link of the envelope. */
static apr_status_t check_recipients(const apr_array_header_t *recipients,
                                     const char **err)
{
    X509 *cert;
    EVP_PKEY *pub;
    int i;

    if (recipients == NULL || recipients->nelts == 0) {
        *err = "envelope: no wrapping certificate";
        return APR_EINVAL;
    }
    for (i = 0; i < recipients->nelts; i++) {
        cert = APR_ARRAY_IDX(recipients, i, X509 *);
        pub = cert ? X509_get0_pubkey(cert) : NULL;
        if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA
            || EVP_PKEY_get_bits(pub) < 2048) {
            ERR_clear_error();
            *err = "envelope: a wrapping certificate does not hold an RSA "
                   "key of at least 2048 bits";
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

/* The AuthEnvelopedData of plain (checked recipients). */
static apr_status_t seal_bytes(unsigned char **der, apr_size_t *der_len,
                               apr_pool_t *p, const unsigned char *plain,
                               int plain_len,
                               const apr_array_header_t *recipients,
                               const char **err)
{
    unsigned char *q;
    int len, i;
    BIO *in = NULL;
    CMS_ContentInfo *cms = NULL;
    CMS_RecipientInfo *ri;
    EVP_PKEY_CTX *pctx;
    X509 *cert;
    apr_status_t rv = APR_EGENERAL;

    /* not detached: the encrypted content travels inside the CMS */
    if ((in = BIO_new_mem_buf(plain, plain_len)) == NULL
        || (cms = CMS_AuthEnvelopedData_create(EVP_aes_256_gcm())) == NULL
        || !CMS_set_detached(cms, 0)) {
        *err = cs_ssl_error(p, "envelope: cannot create AuthEnvelopedData");
        goto leave;
    }
    for (i = 0; i < recipients->nelts; i++) {
        cert = APR_ARRAY_IDX(recipients, i, X509 *);
        /* CMS_KEY_PARAM leaves the key transport context to us, so the
         * padding is OAEP instead of the PKCS#1 v1.5 default. */
        ri = CMS_add1_recipient_cert(cms, cert, CMS_KEY_PARAM);
        pctx = ri ? CMS_RecipientInfo_get0_pkey_ctx(ri) : NULL;
        if (pctx == NULL
            || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0) {
            *err = cs_ssl_error(p, "envelope: cannot add a recipient");
            goto leave;
        }
    }
    if (CMS_final(cms, in, NULL, CMS_BINARY) != 1) {
        *err = cs_ssl_error(p, "envelope: encryption failed");
        goto leave;
    }
    if ((len = i2d_CMS_ContentInfo(cms, NULL)) <= 0) {
        *err = cs_ssl_error(p, "envelope: cannot encode the CMS");
        goto leave;
    }
    *der = q = apr_palloc(p, (apr_size_t)len);
    if (i2d_CMS_ContentInfo(cms, &q) != len) {
        *der = NULL;
        *err = cs_ssl_error(p, "envelope: cannot encode the CMS");
        goto leave;
    }
    *der_len = (apr_size_t)len;
    rv = APR_SUCCESS;

leave:
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    return rv;
}

apr_status_t cs_envelope_seal(unsigned char **der, apr_size_t *der_len,
                              apr_pool_t *p, EVP_PKEY *key,
                              const apr_array_header_t *recipients,
                              const char **err)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    unsigned char *plain = NULL;
    int plain_len = 0;
    apr_status_t rv;

    *der = NULL;
    *der_len = 0;
    *err = NULL;
    if (key == NULL) {
        *err = "envelope: no key to seal";
        return APR_EINVAL;
    }
    if (!has_private(key)) {
        *err = "envelope: the key has no private half";
        return APR_EINVAL;
    }
    if ((rv = check_recipients(recipients, err)) != APR_SUCCESS) {
        return rv;
    }
    if ((p8 = EVP_PKEY2PKCS8(key)) == NULL
        || (plain_len = i2d_PKCS8_PRIV_KEY_INFO(p8, &plain)) <= 0) {
        plain_len = 0;
        *err = cs_ssl_error(p, "envelope: cannot encode the private key "
                            "as PKCS#8");
        rv = APR_EGENERAL;
    }
    else {
        rv = seal_bytes(der, der_len, p, plain, plain_len, recipients, err);
    }
    OPENSSL_clear_free(plain, (size_t)plain_len);
    PKCS8_PRIV_KEY_INFO_free(p8);   /* cleanses the key octets */
    return rv;
}

apr_status_t cs_envelope_seal_data(unsigned char **der, apr_size_t *der_len,
                                   apr_pool_t *p, const unsigned char *data,
                                   apr_size_t len,
                                   const apr_array_header_t *recipients,
                                   const char **err)
{
    apr_status_t rv;

    *der = NULL;
    *der_len = 0;
    *err = NULL;
    if (data == NULL || len == 0 || len > 65536) {
        *err = "envelope: no data, or too much, to seal";
        return APR_EINVAL;
    }
    if ((rv = check_recipients(recipients, err)) != APR_SUCCESS) {
        return rv;
    }
    return seal_bytes(der, der_len, p, data, (int)len, recipients, err);
}

/*
 * Move *pp past the next DER element of the *plen bytes left, returning
 * its tag, class and contents.  Definite lengths only: the input is
 * OpenSSL's own re-encoding, always DER.
 */
static int der_next(const unsigned char **pp, long *plen, int *tag,
                    int *xclass, const unsigned char **body, long *body_len)
{
    const unsigned char *q = *pp;
    long len;
    int r;

    if (*plen <= 0) {
        return 0;
    }
    r = ASN1_get_object(&q, &len, tag, xclass, *plen);
    if ((r & 0x80) || (r & 0x01)) {
        return 0;
    }
    *body = q;
    *body_len = len;
    *plen -= (long)(q - *pp) + len;
    *pp = q + len;
    return 1;
}

/* The next element has this tag and class: step into its contents. */
static int der_enter(const unsigned char **pp, long *plen, int want_tag,
                     int want_class)
{
    const unsigned char *body;
    long body_len;
    int tag, xclass;

    if (!der_next(pp, plen, &tag, &xclass, &body, &body_len)
        || tag != want_tag || xclass != want_class) {
        return 0;
    }
    *pp = body;
    *plen = body_len;
    return 1;
}

/*
 * The NID of the content-encryption algorithm of an AuthEnvelopedData.
 * OpenSSL 3.0 has no accessor for it, so walk the DER (RFC 5083):
 *   ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
 *   AuthEnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL,
 *       recipientInfos SET, authEncryptedContentInfo SEQUENCE {
 *           contentType, contentEncryptionAlgorithm, ... }, ... }
 */
static int auth_enveloped_cipher(CMS_ContentInfo *cms)
{
    unsigned char *der = NULL;
    const unsigned char *q, *body, *alg_der;
    long left, body_len;
    int der_len, tag, xclass, nid = NID_undef;
    X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *obj;

    if ((der_len = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
        return NID_undef;
    }
    q = der;
    left = der_len;
    /* ContentInfo: contentType, [0] AuthEnvelopedData: version, ... */
    if (!der_enter(&q, &left, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL)
        || !der_next(&q, &left, &tag, &xclass, &body, &body_len)
        || tag != V_ASN1_OBJECT
        || !der_enter(&q, &left, 0, V_ASN1_CONTEXT_SPECIFIC)
        || !der_enter(&q, &left, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL)
        || !der_next(&q, &left, &tag, &xclass, &body, &body_len)
        || tag != V_ASN1_INTEGER
        || !der_next(&q, &left, &tag, &xclass, &body, &body_len)) {
        goto leave;
    }
    if (tag == 0 && xclass == V_ASN1_CONTEXT_SPECIFIC) {
        /* originatorInfo: skip to recipientInfos */
        if (!der_next(&q, &left, &tag, &xclass, &body, &body_len)) {
            goto leave;
        }
    }
    if (tag != V_ASN1_SET
        || !der_next(&q, &left, &tag, &xclass, &body, &body_len)
        || tag != V_ASN1_SEQUENCE) {
        goto leave;
    }
    /* authEncryptedContentInfo */
    q = body;
    left = body_len;
    if (!der_next(&q, &left, &tag, &xclass, &body, &body_len)
        || tag != V_ASN1_OBJECT) {
        goto leave;
    }
    alg_der = q;
    if (!der_next(&q, &left, &tag, &xclass, &body, &body_len)
        || tag != V_ASN1_SEQUENCE
        || (alg = d2i_X509_ALGOR(NULL, &alg_der, (long)(q - alg_der)))
           == NULL) {
        goto leave;
    }
    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    nid = OBJ_obj2nid(obj);

leave:
    X509_ALGOR_free(alg);
    OPENSSL_free(der);
    ERR_clear_error();
    return nid;
}

/* Is cert one of the key transport recipients? (Their identifiers are
 * public, so asking tells an attacker nothing.) */
static int has_recipient(CMS_ContentInfo *cms, X509 *cert)
{
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
    CMS_RecipientInfo *ri;
    int i;

    for (i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
        ri = sk_CMS_RecipientInfo_value(ris, i);
        if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS
            && CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0) {
            return 1;
        }
    }
    return 0;
}

int cs_envelope_has_recipient(const unsigned char *der, apr_size_t der_len,
                              X509 *cert)
{
    const unsigned char *q = der;
    CMS_ContentInfo *cms;
    int rc;

    if (der == NULL || der_len == 0 || der_len > LONG_MAX) {
        return -1;
    }
    cms = d2i_CMS_ContentInfo(NULL, &q, (long)der_len);
    if (cms == NULL || q != der + der_len) {
        CMS_ContentInfo_free(cms);
        ERR_clear_error();
        return -1;
    }
    rc = has_recipient(cms, cert);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return rc;
}

/* Free a secure-memory BIO, its content cleansed first. */
static void bio_cleanse_free(BIO *out)
{
    char *plain = NULL;
    long plain_len;

    if (out != NULL) {
        plain_len = BIO_get_mem_data(out, &plain);
        if (plain_len > 0) {
            OPENSSL_cleanse(plain, (size_t)plain_len);
        }
        BIO_free(out);
    }
}

/* Decrypt an envelope into *out (a secure-memory BIO the caller cleanses
 * and frees; NULL on failure). */
static apr_status_t open_bytes(BIO **out, apr_pool_t *p,
                               const unsigned char *der, apr_size_t der_len,
                               X509 *wrap_cert, EVP_PKEY *wrap_key,
                               const char **err)
{
    CMS_ContentInfo *cms = NULL;
    const unsigned char *q = der;
    apr_status_t rv = APR_EINVAL;

    *out = NULL;
    *err = NULL;
    if (der == NULL || der_len == 0 || der_len > LONG_MAX) {
        *err = "envelope: empty or oversized input";
        return APR_EINVAL;
    }
    if (wrap_key == NULL) {
        *err = "envelope: no wrapping key";
        return APR_EINVAL;
    }
    cms = d2i_CMS_ContentInfo(NULL, &q, (long)der_len);
    if (cms == NULL || q != der + der_len) {
        *err = cs_ssl_error(p, "envelope: not a CMS structure");
        goto leave;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms))
        != NID_id_smime_ct_authEnvelopedData) {
        *err = "envelope: not a CMS AuthEnvelopedData";
        goto leave;
    }
    if (auth_enveloped_cipher(cms) != NID_aes_256_gcm) {
        *err = "envelope: the content cipher is not AES-256-GCM";
        goto leave;
    }

    if (wrap_cert != NULL && !has_recipient(cms, wrap_cert)) {
        *err = "envelope: not sealed to this wrapping certificate";
        rv = APR_ENOENT;
        goto leave;
    }

    /* A secure-memory BIO: its buffer is cleansed when freed. */
    if ((*out = BIO_new(BIO_s_secmem())) == NULL) {
        *err = cs_ssl_error(p, "envelope: out of memory");
        rv = APR_ENOMEM;
        goto leave;
    }
    /* Fails with a wrong key and when the GCM tag does not authenticate
     * the content.  OpenSSL does not say which, on purpose (a wrong key
     * decrypts to a random content key, against Bleichenbacher-style
     * oracles), so neither do we. */
    if (CMS_decrypt(cms, wrap_key, wrap_cert, NULL, *out, CMS_BINARY) != 1) {
        ERR_clear_error();
        *err = "envelope: cannot decrypt (wrong key or damaged envelope)";
        rv = APR_EGENERAL;
        goto leave;
    }
    rv = APR_SUCCESS;

leave:
    if (rv != APR_SUCCESS) {
        bio_cleanse_free(*out);
        *out = NULL;
    }
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return rv;
}

/* One DER element at *pp (before end): its tag, class, whether it is
 * constructed, its contents; *pp moves past it.  0 if malformed (an
 * indefinite length too: DER has none).  der_next() without a limit
 * pointer, and saying whether the element is constructed. */
static int der_elem(const unsigned char **pp, const unsigned char *end,
                    int *tag, int *xclass, int *constructed,
                    const unsigned char **body, long *len)
{
    const unsigned char *q = *pp;
    int r;

    if (q >= end) {
        return 0;
    }
    r = ASN1_get_object(&q, len, tag, xclass, (long)(end - q));
    if ((r & 0x80) || r == 0x21 || *len < 0 || *len > end - q) {
        return 0;
    }
    *constructed = (r & V_ASN1_CONSTRUCTED) != 0;
    *body = q;
    *pp = q + *len;
    return 1;
}

/*
 * An EC key of a PKCS#8 PrivateKeyInfo built from data (EVP_PKEY_fromdata)
 * when it has a named curve and its public point (RFC 5915's publicKey,
 * which OpenSSL always writes): EVP_PKCS82PKEY sets up an OpenSSL 3.0
 * decoder context for every key, which cost a cold sync more CPU per
 * bundle than the RSA operation that opened the envelope (docs/
 * benchmarks.md).  NULL for anything else (the caller then decodes it
 * the general way, which also says what is wrong with it).  Whether the
 * scalar belongs to the point is not checked here, as the decoder does
 * not either (cs_key_belongs).
 */
static EVP_PKEY *pkcs8_ec_from_data(const PKCS8_PRIV_KEY_INFO *p8)
{
    const ASN1_OBJECT *alg_obj;
    const X509_ALGOR *alg;
    const void *pval;
    const unsigned char *der, *q, *end, *body, *scalar = NULL;
    const unsigned char *point = NULL, *pq;
    const char *group;
    unsigned char native[72];
    long len, slen = 0, plen = 0;
    int der_len, ptype, tag, xclass, cons, nid, i, params_seen = 0;
    static const int one = 1;
    const int little = *(const char *)&one;
    OSSL_PARAM params[4];
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *key = NULL;
    ASN1_OBJECT *inner;

    if (!PKCS8_pkey_get0(&alg_obj, &der, &der_len, &alg, p8)
        || OBJ_obj2nid(alg_obj) != NID_X9_62_id_ecPublicKey) {
        return NULL;
    }
    X509_ALGOR_get0(NULL, &ptype, &pval, alg);
    if (ptype != V_ASN1_OBJECT
        || (nid = OBJ_obj2nid(pval)) == NID_undef
        || (group = OBJ_nid2sn(nid)) == NULL) {
        return NULL;
    }
    /* ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET
     * STRING, parameters [0] ECParameters OPTIONAL, publicKey [1] BIT
     * STRING OPTIONAL } */
    q = der;
    end = der + der_len;
    if (!der_elem(&q, end, &tag, &xclass, &cons, &body, &len)
        || tag != V_ASN1_SEQUENCE || xclass != V_ASN1_UNIVERSAL || !cons
        || q != end) {
        return NULL;
    }
    q = body;
    end = body + len;
    if (!der_elem(&q, end, &tag, &xclass, &cons, &body, &len)
        || tag != V_ASN1_INTEGER || xclass != V_ASN1_UNIVERSAL || cons
        || len != 1 || body[0] != 1
        || !der_elem(&q, end, &tag, &xclass, &cons, &scalar, &slen)
        || tag != V_ASN1_OCTET_STRING || xclass != V_ASN1_UNIVERSAL || cons
        || slen < 1 || slen > (long)sizeof(native)) {
        return NULL;
    }
    while (q < end) {
        if (!der_elem(&q, end, &tag, &xclass, &cons, &body, &len)
            || xclass != V_ASN1_CONTEXT_SPECIFIC || !cons) {
            return NULL;
        }
        pq = body;
        if (tag == 0 && !point && !params_seen++) {
            /* The curve again: only the same one. */
            inner = d2i_ASN1_OBJECT(NULL, &pq, len);
            i = inner != NULL && pq == body + len && OBJ_cmp(inner, pval) == 0;
            ASN1_OBJECT_free(inner);
            if (!i) {
                ERR_clear_error();
                return NULL;
            }
        }
        else if (tag == 1 && !point) {
            if (!der_elem(&pq, body + len, &tag, &xclass, &cons, &point,
                          &plen)
                || tag != V_ASN1_BIT_STRING || xclass != V_ASN1_UNIVERSAL
                || cons || pq != body + len || plen < 2 || point[0] != 0) {
                return NULL;
            }
            point++;            /* no unused bits */
            plen--;
        }
        else {
            return NULL;
        }
    }
    if (!point) {
        return NULL;            /* the decoder computes it */
    }
    /* OSSL_PARAM integers are unsigned in the host's byte order. */
    for (i = 0; i < slen; i++) {
        native[i] = little ? scalar[slen - 1 - i] : scalar[i];
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *)point,
                                                  (size_t)plen);
    params[2] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, native,
                                        (size_t)slen);
    params[3] = OSSL_PARAM_construct_end();
    if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1) {
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_cleanse(native, sizeof(native));
    ERR_clear_error();
    return key;
}

/* PEM of PKCS#8 DER ("PRIVATE KEY", PEM_STRING_PKCS8INF), NUL-terminated,
 * from p; NULL if OpenSSL cannot write it.  PEM_write_bio only encodes
 * the bytes (no key encoder); its buffer is cleansed. */
static char *pkcs8_pem(apr_size_t *pem_len, apr_pool_t *p,
                       const unsigned char *der, apr_size_t len)
{
    BIO *b = BIO_new(BIO_s_secmem());
    char *data = NULL, *pem = NULL;
    long n;

    if (b && PEM_write_bio(b, PEM_STRING_PKCS8INF, "", der, (long)len) > 0
        && (n = BIO_get_mem_data(b, &data)) > 0) {
        pem = apr_pstrmemdup(p, data, (apr_size_t)n);
        *pem_len = (apr_size_t)n;
    }
    bio_cleanse_free(b);
    return pem;
}

apr_status_t cs_envelope_open_pem(EVP_PKEY **key, char **pem,
                                  apr_size_t *pem_len, apr_pool_t *p,
                                  const unsigned char *der,
                                  apr_size_t der_len, X509 *wrap_cert,
                                  EVP_PKEY *wrap_key, const char **err)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pk = NULL;
    BIO *out = NULL;
    const unsigned char *q;
    char *plain = NULL;
    long plain_len = 0;
    apr_status_t rv;

    *key = NULL;
    if (pem) {
        *pem = NULL;
        *pem_len = 0;
    }
    if ((rv = open_bytes(&out, p, der, der_len, wrap_cert, wrap_key, err))
        != APR_SUCCESS) {
        return rv;
    }
    plain_len = BIO_get_mem_data(out, &plain);
    q = (const unsigned char *)plain;
    if (plain_len <= 0
        || (p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &q, plain_len)) == NULL
        || q != (const unsigned char *)plain + plain_len
        || ((pk = pkcs8_ec_from_data(p8)) == NULL
            && (pk = EVP_PKCS82PKEY(p8)) == NULL)) {
        *err = cs_ssl_error(p, "envelope: the content is not a PKCS#8 "
                            "private key");
        rv = APR_EGENERAL;
    }
    else {
        cs_pkey_own(p, pk);
        *key = pk;
        if (pem) {
            /* The bytes just parsed, not the key encoded again (an
             * OpenSSL 3.0 encoder context a key). */
            *pem = pkcs8_pem(pem_len, p, (const unsigned char *)plain,
                             (apr_size_t)plain_len);
            if (!*pem) {
                *key = NULL;
                *pem_len = 0;
                *err = cs_ssl_error(p, "envelope: cannot write the key "
                                    "as PEM");
                rv = APR_ENOMEM;
            }
        }
    }
    bio_cleanse_free(out);
    PKCS8_PRIV_KEY_INFO_free(p8);
    ERR_clear_error();
    return rv;
}

apr_status_t cs_envelope_open(EVP_PKEY **key, apr_pool_t *p,
                              const unsigned char *der, apr_size_t der_len,
                              X509 *wrap_cert, EVP_PKEY *wrap_key,
                              const char **err)
{
    return cs_envelope_open_pem(key, NULL, NULL, p, der, der_len, wrap_cert,
                                wrap_key, err);
}

apr_status_t cs_envelope_open_data(unsigned char *data, apr_size_t size,
                                   apr_size_t *len, apr_pool_t *p,
                                   const unsigned char *der,
                                   apr_size_t der_len, X509 *wrap_cert,
                                   EVP_PKEY *wrap_key, const char **err)
{
    BIO *out = NULL;
    char *plain = NULL;
    long plain_len;
    apr_status_t rv;

    *len = 0;
    if ((rv = open_bytes(&out, p, der, der_len, wrap_cert, wrap_key, err))
        != APR_SUCCESS) {
        return rv;
    }
    plain_len = BIO_get_mem_data(out, &plain);
    if (plain_len <= 0 || (apr_size_t)plain_len > size) {
        *err = "envelope: the content does not have the expected size";
        rv = APR_EGENERAL;
    }
    else {
        memcpy(data, plain, (size_t)plain_len);
        *len = (apr_size_t)plain_len;
    }
    bio_cleanse_free(out);
    return rv;
}
