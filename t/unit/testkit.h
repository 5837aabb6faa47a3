/*
 * testkit.h: keys, certificates and temporary directories that several
 * unit programs make the same way.  Everything made here is owned by the
 * pool it is given.
 */
#ifndef TESTKIT_H
#define TESTKIT_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_crypto.h"
#include "cs_x509.h"

/* An unsigned X.509 v3 certificate for key, whose subject and issuer are
 * CN=cn, valid from now + before to now + after (seconds). */
X509 *testkit_cert(apr_pool_t *pool, EVP_PKEY *key, const char *cn,
                   long serial, long before, long after);

/* A self-signed certificate for key (SHA-256, a fresh serial, valid from a
 * minute ago for a day). */
X509 *testkit_self_signed(apr_pool_t *pool, EVP_PKEY *key, const char *cn);

/* An EC P-256 CA ("test CA") into ca, and one RSA-2048 wrapping pair
 * ("wrap") into *certs and *keys.  0, or -1 (and a line on stdout). */
int testkit_ca_and_wrap(apr_pool_t *pool, cs_ca_t *ca,
                        apr_array_header_t **certs,
                        apr_array_header_t **keys);

/* A new directory $TMPDIR/cs-unit-<name>-XXXXXX, or NULL (perror). */
char *testkit_tmpdir(apr_pool_t *pool, const char *name);

/* A new empty file $TMPDIR/<prefix>XXXXXX (/tmp if TMPDIR is not known):
 * its path, or NULL (and a line on stderr). */
char *testkit_tmpfile(apr_pool_t *pool, const char *prefix);

/* Remove path and all below it. */
void testkit_rm_tree(const char *path);

/** Wall-clock seconds (for benches). */
double testkit_now(void);

/** CPU seconds of this process so far: every thread, user and system. */
double testkit_cpu(void);

#endif
