/*
 * cs_x509.c: the local CA issuer and the checks of a certificate bundle.
 *
 * Pure code: APR and OpenSSL 3.0 only.  Certificates handed out are freed
 * by a cleanup on the caller's pool.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include <apr_cstr.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_crypto.h"
#include "cs_x509.h"

/* ub-common-name (RFC 5280): a longer name cannot be the subject CN. */
#define CS_CN_MAX       64

static apr_status_t x509_cleanup(void *data)
{
    X509_free(data);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* certificate facts                                                   */
/* ------------------------------------------------------------------ */

/* Seconds since the epoch of an ASN.1 time; 0 if it cannot be read. */
static apr_time_t asn1_time_to_apr(const ASN1_TIME *t)
{
    ASN1_TIME *epoch;
    int days = 0, secs = 0, ok;

    if (t == NULL || (epoch = ASN1_TIME_set(NULL, 0)) == NULL) {
        ERR_clear_error();
        return 0;
    }
    ok = ASN1_TIME_diff(&days, &secs, epoch, t);
    ASN1_TIME_free(epoch);
    if (!ok) {
        ERR_clear_error();
        return 0;
    }
    return apr_time_from_sec((apr_time_t)days * 86400 + secs);
}

void cs_cert_info(cs_cert_info_t *info, apr_pool_t *p, X509 *cert)
{
    BIGNUM *bn;
    char *hex, *s, *d;

    memset(info, 0, sizeof(*info));
    info->serial = "";
    if (cert == NULL) {
        return;
    }
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        /* BN_bn2hex prints whole bytes in upper case ("0ABC", "-01"). */
        s = hex + (*hex == '-');
        while (s[0] == '0' && s[1] != '\0') {
            s++;
        }
        info->serial = d = apr_pstrcat(p, *hex == '-' ? "-" : "", s, NULL);
        for (; *d; d++) {
            *d = (char)apr_tolower(*d);
        }
    }
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
    info->not_before = asn1_time_to_apr(X509_get0_notBefore(cert));
    info->not_after = asn1_time_to_apr(X509_get0_notAfter(cert));
}

/* ------------------------------------------------------------------ */
/* the local CA                                                        */
/* ------------------------------------------------------------------ */

apr_status_t cs_ca_load(cs_ca_t **ca, apr_pool_t *p, const char *cert_file,
                        const char *key_file, const char **err)
{
    apr_array_header_t *certs;
    EVP_PKEY *key;
    X509 *cert;
    cs_ca_t *c;
    apr_status_t rv;

    *ca = NULL;
    *err = NULL;
    if ((rv = cs_file_read_certs(&certs, p, cert_file, err))
        != APR_SUCCESS) {
        return rv;
    }
    if ((rv = cs_file_read_key(&key, p, key_file, err)) != APR_SUCCESS) {
        return rv;
    }
    cert = APR_ARRAY_IDX(certs, 0, X509 *);
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        *err = apr_psprintf(p, "CA key %s does not match the certificate "
                            "in %s", key_file, cert_file);
        return APR_EINVAL;
    }
    if (X509_check_ca(cert) == 0) {
        *err = apr_psprintf(p, "the certificate in %s is not a CA",
                            cert_file);
        return APR_EINVAL;
    }
    c = apr_pcalloc(p, sizeof(*c));
    c->cert = cert;
    c->key = key;
    *ca = c;
    return APR_SUCCESS;
}

/* The name goes into the certificate verbatim: LDH labels only, with an
 * optional leading "*." label. */
static int issue_name_ok(const char *name)
{
    const char *s = name;

    if (name == NULL || *name == '\0' || strlen(name) > 253) {
        return 0;
    }
    if (s[0] == '*' && s[1] == '.') {
        s += 2;
    }
    if (*s == '\0' || *s == '.') {
        return 0;
    }
    for (; *s; s++) {
        if (!apr_isalnum(*s) && *s != '-' && *s != '.') {
            return 0;
        }
    }
    return 1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        return 0;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* The SAN is built as an object, not from config text, so no character
 * of the name can be read as syntax. */
static int add_san(X509 *x, const char *name, int critical)
{
    GENERAL_NAMES *gens = NULL;
    GENERAL_NAME *gen = NULL;
    ASN1_IA5STRING *ia5 = NULL;
    int ok = 0;

    if ((gens = sk_GENERAL_NAME_new_null()) == NULL
        || (gen = GENERAL_NAME_new()) == NULL
        || (ia5 = ASN1_IA5STRING_new()) == NULL
        || !ASN1_STRING_set(ia5, name, (int)strlen(name))) {
        goto leave;
    }
    GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
    ia5 = NULL;
    if (!sk_GENERAL_NAME_push(gens, gen)) {
        goto leave;
    }
    gen = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical,
                           X509V3_ADD_DEFAULT) == 1;

leave:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return ok;
}

/* A random positive serial of 128 bits (CA/B Forum: at least 64). */
static int set_serial(X509 *x)
{
    unsigned char bytes[16];
    BIGNUM *bn = NULL;
    int ok = 0;

    do {
        BN_free(bn);
        if (RAND_bytes(bytes, sizeof(bytes)) != 1
            || (bn = BN_bin2bn(bytes, sizeof(bytes), NULL)) == NULL) {
            return 0;
        }
    } while (BN_is_zero(bn));
    ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

apr_status_t cs_ca_issue(apr_array_header_t **chain, apr_pool_t *p,
                         const cs_ca_t *ca, EVP_PKEY *key, const char *name,
                         apr_interval_time_t lifetime, const char **err)
{
    X509 *x = NULL, *ca_cert;
    X509_NAME *subject;
    X509V3_CTX ctx;
    apr_array_header_t *a;
    time_t now;
    int with_cn;

    *chain = NULL;
    *err = NULL;
    if (ca == NULL || ca->cert == NULL || ca->key == NULL || key == NULL) {
        *err = "issue: no CA or no key";
        return APR_EINVAL;
    }
    if (!issue_name_ok(name)) {
        *err = "issue: not a DNS name";
        return APR_EINVAL;
    }
    if (lifetime < apr_time_from_sec(60)) {
        *err = "issue: lifetime shorter than a minute";
        return APR_EINVAL;
    }

    now = time(NULL);
    /* RFC 5280: with an empty subject the SAN must be critical. */
    with_cn = strlen(name) <= CS_CN_MAX;
    if ((x = X509_new()) == NULL
        || !X509_set_version(x, X509_VERSION_3)
        || !set_serial(x)
        || !X509_set_issuer_name(x, X509_get_subject_name(ca->cert))
        || (subject = X509_get_subject_name(x)) == NULL
        || (with_cn
            && !X509_NAME_add_entry_by_NID(subject, NID_commonName,
                                           MBSTRING_UTF8,
                                           (const unsigned char *)name,
                                           -1, -1, 0))
        || !ASN1_TIME_set(X509_getm_notBefore(x), now - 60)
        || !ASN1_TIME_set(X509_getm_notAfter(x),
                          now + (time_t)apr_time_sec(lifetime))
        || !X509_set_pubkey(x, key)) {
        goto failed;
    }
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE")
        || !add_ext(x, &ctx, NID_key_usage,
                    EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA
                    ? "critical,digitalSignature,keyEncipherment"
                    : "critical,digitalSignature")
        || !add_ext(x, &ctx, NID_ext_key_usage, "serverAuth")
        || !add_ext(x, &ctx, NID_subject_key_identifier, "hash")
        /* the issuer and serial only if the CA has no key identifier */
        || !add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer")
        || !add_san(x, name, !with_cn)
        || X509_sign(x, ca->key, EVP_sha256()) <= 0) {
        goto failed;
    }

    if ((ca_cert = X509_dup(ca->cert)) == NULL) {
        goto failed;
    }
    apr_pool_cleanup_register(p, x, x509_cleanup, apr_pool_cleanup_null);
    apr_pool_cleanup_register(p, ca_cert, x509_cleanup,
                              apr_pool_cleanup_null);
    a = apr_array_make(p, 2, sizeof(X509 *));
    APR_ARRAY_PUSH(a, X509 *) = x;
    APR_ARRAY_PUSH(a, X509 *) = ca_cert;
    *chain = a;
    return APR_SUCCESS;

failed:
    {
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        *err = reason ? apr_psprintf(p, "issue: cannot make the "
                                     "certificate (%s)", reason)
                      : "issue: cannot make the certificate";
    }
    ERR_clear_error();
    X509_free(x);
    return APR_EGENERAL;
}

/* ------------------------------------------------------------------ */
/* bundle checks                                                       */
/* ------------------------------------------------------------------ */

/* Does a DNS entry of the leaf's SAN equal name (a wildcard itself)? */
static int san_has(X509 *leaf, const char *name)
{
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gen;
    const ASN1_IA5STRING *dns;
    size_t len = strlen(name);
    int i, found = 0;

    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type != GEN_DNS) {
            continue;
        }
        dns = gen->d.dNSName;
        if ((size_t)ASN1_STRING_length(dns) == len
            && !apr_cstr_casecmpn((const char *)ASN1_STRING_get0_data(dns),
                                  name, len)) {
            found = 1;
            break;
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/*
 * The signature of a leaf read bare (cs_pem_read_certs_bare) by its
 * issuer's key: what X509_verify() does, over the leaf's to-be-signed
 * bytes as they were read, with the algorithms fetched from the default
 * context (the leaf's has none).  ECDSA, or RSA PKCS#1 v1.5, with a
 * digest; any other algorithm does not verify here.
 */
static int bare_signature_ok(X509 *leaf, EVP_PKEY *issuer_key)
{
    const ASN1_BIT_STRING *sig;
    const X509_ALGOR *alg;
    const ASN1_OBJECT *obj;
    const unsigned char *q, *tbs;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    long len;
    int der_len, tag, cls, mdnid, pknid, ok = 0;

    X509_get0_signature(&sig, &alg, leaf);
    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    if (sig == NULL || X509_ALGOR_cmp(alg, X509_get0_tbs_sigalg(leaf)) != 0
        || !OBJ_find_sigid_algs(OBJ_obj2nid(obj), &mdnid, &pknid)
        || mdnid == NID_undef
        || (pknid != EVP_PKEY_EC && pknid != EVP_PKEY_RSA)
        || EVP_PKEY_get_base_id(issuer_key) != pknid
        || (sig->flags & 0x07) != 0     /* unused bits: not a signature */
        || (der_len = i2d_X509(leaf, &der)) <= 0) {
        return 0;
    }
    /* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, ... }: the
     * first element, header and all (i2d writes it as it was read). */
    q = der;
    if (ASN1_get_object(&q, &len, &tag, &cls, der_len) == V_ASN1_CONSTRUCTED
        && tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL
        && (tbs = q,
            ASN1_get_object(&q, &len, &tag, &cls, der_len - (q - der))
            == V_ASN1_CONSTRUCTED)
        && tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL
        && len <= der_len - (q - der)
        && (md = EVP_MD_CTX_new()) != NULL
        && EVP_DigestVerifyInit_ex(md, NULL, OBJ_nid2sn(mdnid), NULL, NULL,
                                   issuer_key, NULL) == 1) {
        ok = EVP_DigestVerify(md, ASN1_STRING_get0_data(sig),
                              (size_t)ASN1_STRING_length(sig), tbs,
                              (size_t)(q - tbs) + (size_t)len) == 1;
    }
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok;
}

/*
 * X509_check_issued(issuer, leaf) for a leaf read bare, which that call
 * refuses: OpenSSL cannot fetch SHA-1 in the leaf's context to
 * fingerprint it (EXFLAG_NO_FINGERPRINT), and takes that as a failure to
 * read the leaf's extensions.  The same tests: the extensions of both
 * read (none twice, each decodes: no EXFLAG_INVALID), the issuer's
 * subject is the leaf's issuer, the leaf's authority key identifier (if
 * any, once) names the issuer, and the issuer may sign certificates.  The
 * signature algorithm against the issuer's key: bare_signature_ok.
 */
static int bare_issued_ok(X509 *issuer, X509 *leaf)
{
    AUTHORITY_KEYID *akid;
    int crit = 0, ok;

    if (((X509_get_extension_flags(leaf) | X509_get_extension_flags(issuer))
         & EXFLAG_INVALID)
        || X509_NAME_cmp(X509_get_subject_name(issuer),
                         X509_get_issuer_name(leaf)) != 0
        || ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE)
            && !(X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN))) {
        return 0;
    }
    akid = X509_get_ext_d2i(leaf, NID_authority_key_identifier, &crit, NULL);
    ok = akid ? X509_check_akid(issuer, akid) == X509_V_OK : crit == -1;
    AUTHORITY_KEYID_free(akid);
    return ok;
}

/*
 * Whether key is the pair of a leaf read bare, whose public key is only
 * bytes: an EC key on the curve the leaf names, whose public point
 * encodes to exactly the leaf's bytes (EVP_PKEY_eq would also take the
 * point compressed) and whose private scalar gives that point.
 */
static int bare_key_matches(X509 *leaf, EVP_PKEY *key)
{
    unsigned char point[256];
    char group[64];
    const unsigned char *bits;
    const ASN1_OBJECT *obj;
    const void *param;
    X509_ALGOR *alg;
    size_t plen = 0, glen = 0;
    int bits_len, ptype, gnid;

    if (key == NULL || !EVP_PKEY_is_a(key, "EC")
        || !X509_PUBKEY_get0_param(NULL, &bits, &bits_len, &alg,
                                   X509_get_X509_PUBKEY(leaf))) {
        return 0;
    }
    X509_ALGOR_get0(&obj, &ptype, &param, alg);
    if (OBJ_obj2nid(obj) != NID_X9_62_id_ecPublicKey
        || ptype != V_ASN1_OBJECT
        || !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), &glen)
        || !EVP_PKEY_get_octet_string_param(
               key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof(point),
               &plen)) {
        return 0;
    }
    if ((gnid = OBJ_txt2nid(group)) == NID_undef) {
        gnid = EC_curve_nist2nid(group);
    }
    return gnid != NID_undef && OBJ_obj2nid(param) == gnid
           && bits_len > 0 && (size_t)bits_len == plen
           && memcmp(bits, point, plen) == 0 && cs_ec_key_whole(key);
}

/* The checks of cs_bundle_verify_ex; with check_key 0, no key at all;
 * bare: the leaf was read by cs_pem_read_certs_bare. */
static apr_status_t verify(const apr_array_header_t *chain, EVP_PKEY *key,
                           int check_key, int bare, const char *name,
                           apr_time_t now, int checked, const char **err)
{
    X509 *leaf, *cert, *issuer;
    EVP_PKEY *pub;
    time_t t;
    int i, r;

    *err = NULL;
    if (chain == NULL || chain->nelts == 0) {
        *err = "bundle: the certificate chain is empty";
        return APR_EINVAL;
    }
    for (i = 0; i < chain->nelts; i++) {
        if (APR_ARRAY_IDX(chain, i, X509 *) == NULL) {
            *err = "bundle: the certificate chain has a hole";
            return APR_EINVAL;
        }
    }
    for (i = 0; i + 1 < chain->nelts && i < checked; i++) {
        cert = APR_ARRAY_IDX(chain, i, X509 *);
        issuer = APR_ARRAY_IDX(chain, i + 1, X509 *);
        if ((i == 0 && bare) ? !bare_issued_ok(issuer, cert)
                             : X509_check_issued(issuer, cert) != X509_V_OK) {
            ERR_clear_error();
            *err = "bundle: the chain is not in order (a certificate is "
                   "not issued by the next one)";
            return APR_EINVAL;
        }
        pub = X509_get0_pubkey(issuer);
        if (pub == NULL
            || !((i == 0 && bare) ? bare_signature_ok(cert, pub)
                                  : X509_verify(cert, pub) == 1)) {
            ERR_clear_error();
            *err = "bundle: a certificate's signature does not verify with "
                   "the next certificate's key";
            return APR_EINVAL;
        }
    }

    leaf = APR_ARRAY_IDX(chain, 0, X509 *);
    pub = bare ? NULL : X509_get0_pubkey(leaf);
    if (!check_key) {
        /* no key here (sealed by its importer) */
    }
    else if (bare) {
        if (!bare_key_matches(leaf, key)) {
            ERR_clear_error();
            *err = "bundle: the key does not match the certificate, or its "
                   "private key does not belong to it";
            return APR_EINVAL;
        }
    }
    else if (key == NULL || pub == NULL || EVP_PKEY_eq(pub, key) != 1) {
        ERR_clear_error();
        *err = "bundle: the key does not match the certificate";
        return APR_EINVAL;
    }
    /* EVP_PKEY_eq compares public keys only, and a decoder takes the
     * public key a PKCS#8 carries as it is: the private key must belong
     * to it too, or every handshake with this key fails. */
    if (check_key && !bare && !cs_key_belongs(key, pub)) {
        *err = "bundle: the private key does not belong to the "
               "certificate's public key";
        return APR_EINVAL;
    }

    if (name == NULL || *name == '\0') {
        *err = "bundle: no name to check";
        return APR_EINVAL;
    }
    if (name[0] == '*' && name[1] == '.') {
        /* X509_check_host takes a host, not a pattern: a wildcard name
         * is valid only if the leaf lists exactly that wildcard. */
        r = san_has(leaf, name);
    }
    else {
        /* Subject CN is not looked at: clients have ignored it for years,
         * a certificate they would refuse must not be served. */
        r = X509_check_host(leaf, name, strlen(name),
                            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
                            | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                            NULL) == 1;
    }
    ERR_clear_error();
    if (!r) {
        *err = "bundle: the certificate is not valid for the name";
        return APR_EINVAL;
    }

    t = (time_t)apr_time_sec(now);
    r = X509_cmp_time(X509_get0_notBefore(leaf), &t);
    if (r == 0) {
        ERR_clear_error();
        *err = "bundle: the certificate's notBefore cannot be read";
        return APR_EINVAL;
    }
    if (r > 0) {
        *err = "bundle: the certificate is not yet valid";
        return APR_EINVAL;
    }
    r = X509_cmp_time(X509_get0_notAfter(leaf), &t);
    if (r == 0) {
        ERR_clear_error();
        *err = "bundle: the certificate's notAfter cannot be read";
        return APR_EINVAL;
    }
    if (r < 0) {
        *err = "bundle: the certificate has expired";
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t cs_bundle_verify(const apr_array_header_t *chain, EVP_PKEY *key,
                              const char *name, apr_time_t now,
                              const char **err)
{
    return verify(chain, key, 1, 0, name, now, INT_MAX, err);
}

apr_status_t cs_bundle_verify_ex(const apr_array_header_t *chain,
                                 EVP_PKEY *key, const char *name,
                                 apr_time_t now, int checked,
                                 const char **err)
{
    return verify(chain, key, 1, 0, name, now, checked, err);
}

apr_status_t cs_bundle_verify_bare(const apr_array_header_t *chain,
                                   EVP_PKEY *key, const char *name,
                                   apr_time_t now, int checked,
                                   const char **err)
{
    return verify(chain, key, 1, 1, name, now, checked, err);
}

apr_status_t cs_chain_verify(const apr_array_header_t *chain,
                             const char *name, apr_time_t now,
                             const char **err)
{
    return verify(chain, NULL, 0, 0, name, now, INT_MAX, err);
}

/* ------------------------------------------------------------------ */
/* certificate requests                                                */
/* ------------------------------------------------------------------ */

apr_status_t cs_csr_make(const unsigned char **csr, apr_size_t *csr_len,
                         apr_pool_t *p, EVP_PKEY *key, const char *domain,
                         const char **err)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = NULL;
    unsigned char *der = NULL, *q;
    int len;
    apr_status_t rv = APR_EGENERAL;

    *err = "cannot build the CSR";
    if (!req || !name || !exts) {
        goto done;
    }
    /* A CN is at most 64 characters; the SAN is what counts. */
    if (strlen(domain) <= CS_CN_MAX
        && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       (const unsigned char *)domain, -1,
                                       -1, 0)) {
        goto done;
    }
    san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                              apr_pstrcat(p, "DNS:", domain, NULL));
    if (!san || !sk_X509_EXTENSION_push(exts, san)) {
        goto done;
    }
    if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, name)
        || !X509_REQ_set_pubkey(req, key)
        || !X509_REQ_add_extensions(req, exts)
        || !X509_REQ_sign(req, key, EVP_sha256())) {
        goto done;
    }
    if ((len = i2d_X509_REQ(req, NULL)) <= 0) {
        goto done;
    }
    der = apr_palloc(p, (apr_size_t)len);
    q = der;
    i2d_X509_REQ(req, &q);
    *csr = der;
    *csr_len = (apr_size_t)len;
    *err = NULL;
    rv = APR_SUCCESS;
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(name);
    X509_REQ_free(req);
    ERR_clear_error();
    return rv;
}

/* ------------------------------------------------------------------ */
/* tls-alpn-01 (RFC 8737)                                              */
/* ------------------------------------------------------------------ */

/* The extension: extnValue is the DER of Authorization ::= OCTET STRING
 * (SIZE (32)), so its bytes are 04 20 and the digest. */
static X509_EXTENSION *acme_id_ext(const unsigned char *digest)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(CS_ACME_ID_OID, 1);
    ASN1_OCTET_STRING *value = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    unsigned char der[CS_ACME_ID_LEN];

    der[0] = V_ASN1_OCTET_STRING;
    der[1] = 32;
    memcpy(der + 2, digest, 32);
    if (obj && value && ASN1_OCTET_STRING_set(value, der, sizeof(der))) {
        ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, value);
    }
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(value);
    return ext;
}

apr_status_t cs_tlsalpn_cert_make(X509 **cert, apr_pool_t *p, EVP_PKEY *key,
                                  const char *domain, const char *keyauth,
                                  apr_interval_time_t lifetime,
                                  const char **err)
{
    unsigned char digest[32];
    X509_EXTENSION *ext = NULL;
    X509_NAME *subject;
    X509 *x = NULL;
    time_t now = time(NULL);
    int with_cn;

    *cert = NULL;
    *err = NULL;
    if (!key || !keyauth || !issue_name_ok(domain) || domain[0] == '*') {
        *err = "tls-alpn-01: not a host name";
        return APR_EINVAL;
    }
    if (lifetime < apr_time_from_sec(60)) {
        *err = "tls-alpn-01: lifetime shorter than a minute";
        return APR_EINVAL;
    }
    if (!EVP_Digest(keyauth, strlen(keyauth), digest, NULL, EVP_sha256(),
                    NULL)) {
        goto failed;
    }
    with_cn = strlen(domain) <= CS_CN_MAX;
    if ((x = X509_new()) == NULL
        || !X509_set_version(x, X509_VERSION_3)
        || !set_serial(x)
        || (subject = X509_get_subject_name(x)) == NULL
        || (with_cn
            && !X509_NAME_add_entry_by_NID(subject, NID_commonName,
                                           MBSTRING_UTF8,
                                           (const unsigned char *)domain,
                                           -1, -1, 0))
        || !X509_set_issuer_name(x, subject)
        || !ASN1_TIME_set(X509_getm_notBefore(x), now - 60)
        || !ASN1_TIME_set(X509_getm_notAfter(x),
                          now + (time_t)apr_time_sec(lifetime))
        || !X509_set_pubkey(x, key)
        || !add_san(x, domain, !with_cn)
        || (ext = acme_id_ext(digest)) == NULL
        || !X509_add_ext(x, ext, -1)
        || X509_sign(x, key, EVP_sha256()) <= 0) {
        goto failed;
    }
    X509_EXTENSION_free(ext);
    apr_pool_cleanup_register(p, x, x509_cleanup, apr_pool_cleanup_null);
    *cert = x;
    return APR_SUCCESS;

failed:
    *err = "tls-alpn-01: cannot make the certificate";
    X509_EXTENSION_free(ext);
    X509_free(x);
    ERR_clear_error();
    return APR_EGENERAL;
}

apr_status_t cs_tlsalpn_cert_check(unsigned char *digest, X509 *cert,
                                   EVP_PKEY *key, const char *domain,
                                   apr_time_t now, const char **err)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(CS_ACME_ID_OID, 1);
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gen;
    X509_EXTENSION *ext;
    const ASN1_OCTET_STRING *value;
    const unsigned char *v;
    EVP_PKEY *pub;
    time_t t = (time_t)apr_time_sec(now);
    int at, names;

    *err = NULL;
    gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    names = gens ? sk_GENERAL_NAME_num(gens) : 0;
    gen = names == 1 ? sk_GENERAL_NAME_value(gens, 0) : NULL;
    if (!gen || gen->type != GEN_DNS
        || (size_t)ASN1_STRING_length(gen->d.dNSName) != strlen(domain)
        || apr_cstr_casecmpn((const char *)
                             ASN1_STRING_get0_data(gen->d.dNSName), domain,
                             strlen(domain))) {
        *err = "tls-alpn-01: the certificate's SAN is not exactly the "
               "domain";
    }
    GENERAL_NAMES_free(gens);
    at = obj ? X509_get_ext_by_OBJ(cert, obj, -1) : -1;
    ext = at >= 0 ? X509_get_ext(cert, at) : NULL;
    value = ext ? X509_EXTENSION_get_data(ext) : NULL;
    v = value ? ASN1_STRING_get0_data(value) : NULL;
    if (*err) {
        /* said */
    }
    else if (!ext || X509_get_ext_by_OBJ(cert, obj, at) >= 0) {
        *err = "tls-alpn-01: not exactly one acmeIdentifier extension";
    }
    else if (!X509_EXTENSION_get_critical(ext)) {
        *err = "tls-alpn-01: the acmeIdentifier extension is not critical";
    }
    else if (ASN1_STRING_length(value) != CS_ACME_ID_LEN
             || v[0] != V_ASN1_OCTET_STRING || v[1] != 32) {
        *err = "tls-alpn-01: the acmeIdentifier is not an OCTET STRING of "
               "32 bytes";
    }
    else if (!key || !(pub = X509_get0_pubkey(cert))
             || !cs_key_belongs(key, pub)) {
        *err = "tls-alpn-01: the key does not belong to the certificate";
    }
    /* X509_cmp_time is 0 for a time it cannot read: not valid either. */
    else if (X509_cmp_time(X509_get0_notBefore(cert), &t) >= 0
             || X509_cmp_time(X509_get0_notAfter(cert), &t) <= 0) {
        *err = "tls-alpn-01: the certificate is not valid now (or its "
               "validity does not read)";
    }
    else if (digest) {
        memcpy(digest, v + 2, 32);
    }
    ASN1_OBJECT_free(obj);
    ERR_clear_error();
    return *err ? APR_EINVAL : APR_SUCCESS;
}
