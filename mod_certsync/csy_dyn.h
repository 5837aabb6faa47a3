/*
 * csy_dyn.h: dynamic activation, the certificate for each TLS handshake
 * picked by SNI from the store (ARCHITECTURE.md section 4, "dynamic").
 *
 * Pure code: APR and OpenSSL, no httpd types (mod_certsync.c is the glue
 * that calls it from an OpenSSL certificate callback).
 *
 * Three parts:
 *
 *  - csy_shared_t, a small block of shared memory the httpd parent maps
 *    before it forks the sync daemon and the workers.  It holds a table of
 *    generation counters indexed by a hash of the domain name: the daemon
 *    bumps a domain's slot after it installed or removed that domain, and
 *    a worker that cached the domain notices the new value on its next
 *    lookup.  Also the cache counters, summed over every process.
 *
 *  - csy_bundle_t, one domain's chain and key as OpenSSL objects, read
 *    from the store's current version (fullchain.pem and key.cms) and
 *    decrypted in memory with a wrapping key.  Never written anywhere.
 *
 *  - csy_cache_t, a bounded per-process cache of bundles: a hash table
 *    (O(1) in the number of domains) with least-recently-used eviction,
 *    safe to use from the threads of one process.
 */
#ifndef CSY_DYN_H
#define CSY_DYN_H

#include <apr_pools.h>
#include <apr_tables.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cs_layout.h"
#include "cs_name.h"

/* Buffers for a store name (a domain or "*.parent", lib/cs_name.h) and a
 * serial (lib/cs_layout.h), NUL included. */
#define CSY_NAME_SIZE   (CS_NAME_MAX + 1)
#define CSY_SERIAL_SIZE (CS_LAYOUT_SERIAL_MAX + 1)

/*
 * Generation slots: a power of two, sized at each start from the store
 * (csy_gen_slots_for).  A bump tells every name of its slot that it may
 * have changed; a cached name that did not costs its worker one readlink
 * (a "revalidated" count), never a reload.  With as many slots as domains
 * a bump reaches on average one other name; the table costs 4 bytes a
 * slot of shared memory (1,000,000 domains: 2^21 slots, 8 MiB).
 */
#define CSY_GEN_SLOTS_MIN   65536
#define CSY_GEN_SLOTS_MAX   (1u << 24)
/* The manifest's bytes per domain assumed for sizing: lines are the name
 * twice and 14 bytes, so this errs toward more slots. */
#define CSY_GEN_MANIFEST_BYTES_PER_DOMAIN 32

typedef struct {
    apr_uint64_t changes;           /* bumps by the daemon */
    apr_uint64_t hits;              /* counters of every worker */
    apr_uint64_t misses;            /* versions read and decrypted */
    apr_uint64_t envelopes;         /* ... of which from key.cms (no usable
                                     * key.seal): the slow way */
    apr_uint64_t revalidated;       /* slot moved, same serial kept */
    apr_uint64_t evictions;
    apr_uint64_t unknown;           /* names the store does not have */
    apr_uint64_t unknown_cached;    /* ... answered without a readlink */
    apr_uint64_t errors;            /* a version that could not be read */
    apr_uint32_t mask;              /* slots - 1 */
    apr_uint32_t slot[];            /* the generations */
} csy_shared_t;

/** The slots for a store whose manifest has manifest_bytes bytes (0: none
 *  yet): the power of two at or above the domains it may list, within
 *  CSY_GEN_SLOTS_MIN and CSY_GEN_SLOTS_MAX. */
apr_uint32_t csy_gen_slots_for(apr_uint64_t manifest_bytes);

/** The bytes of a csy_shared_t with slots (a power of two) slots. */
apr_size_t csy_shared_size(apr_uint32_t slots);

/** Zero sh (csy_shared_size(slots) bytes) and give it slots slots. */
void csy_shared_init(csy_shared_t *sh, apr_uint32_t slots);

/** The slot of a store name: names with the same slot share notices. */
apr_uint32_t csy_gen_slot(const csy_shared_t *sh, const char *name);

/** Slot value for a store name (a domain or "*.parent"). */
apr_uint32_t csy_gen_get(const csy_shared_t *sh, const char *name);

/** Tell every worker that name changed (after the store has it). */
void csy_gen_bump(csy_shared_t *sh, const char *name);

/** Every name may have changed (a new sync daemon: what happened between
 * the last one's cycle and its death is unknown).  Workers check each
 * cached entry once more (one readlink). */
void csy_gen_bump_all(csy_shared_t *sh);

/** A domain's chain and key; reference counted, shared by threads. */
typedef struct csy_bundle_t csy_bundle_t;
struct csy_bundle_t {
    X509 *leaf;
    STACK_OF(X509) *chain;          /* intermediates, may be empty */
    EVP_PKEY *key;
    char serial[CSY_SERIAL_SIZE];   /* hex, as in the store */
    int from_envelope;              /* key.cms opened, not key.seal */
    volatile apr_uint32_t refs;
    char name[];                    /* the store name it came from (as
                                     * long as it is: every byte of an
                                     * entry counts, see csy_cache_t) */
};

/** Drop a reference (the last one frees the bundle and its key). */
void csy_bundle_release(csy_bundle_t *b);

/**
 * Read name's current version from the store at store_dir and open its
 * key envelope with one of the wrapping keys (X509 * / EVP_PKEY * arrays,
 * same order).  APR_NOTFOUND if the store has no such name; another error
 * with a reason in err (errlen bytes) if the version is unreadable or the
 * key does not open or match.  name must be a valid store name.
 */
apr_status_t csy_bundle_load(csy_bundle_t **b, const char *store_dir,
                             const char *name,
                             const apr_array_header_t *wrap_certs,
                             const apr_array_header_t *wrap_keys,
                             char *err, apr_size_t errlen);

/**
 * The server name a client sent, as a store name: the suite's one domain
 * rule (cs_name_lower, lib/cs_name.h) in lower case, and not a wildcard.
 * Writes it to out (CSY_NAME_SIZE bytes); 0 if the name cannot be a domain of the
 * store (then no lookup is made).
 */
int csy_sni_name(char *out, const char *sni);

/**
 * Whether a request's host name (lower case, no port, no trailing dot, as
 * httpd gives it in r->hostname) is one of the names of leaf: its DNS
 * subjectAltNames, a wildcard covering exactly one label.  0 for NULL, an
 * empty name or an address.  The dynamic catch-all answers 421 to a
 * request on a connection whose certificate does not cover its Host.
 */
int csy_cert_covers(X509 *leaf, const char *host);

typedef struct csy_cache_t csy_cache_t;

typedef struct {
    unsigned capacity;
    unsigned entries;
} csy_cache_info_t;

/**
 * A cache of at most capacity bundles for this process (freed with p),
 * shared by its threads.  sh may be NULL (no change notices: entries then
 * live until evicted, which only tests want).
 *
 * Memory: at most CSY_CACHE_ENTRY_BYTES a cached domain with an EC P-256
 * key (measured by t/unit/test_csy_dyn: OpenSSL 3.0's X509 with its
 * decoded public key about 4.3 KB, the private EVP_PKEY 2.2 KB, each with
 * its own copy of the curve's group), plus CSY_NEG_SLOTS x 80 bytes for
 * the names the store does not have.  A pool of N domains that should
 * never miss needs N x CSY_CACHE_ENTRY_BYTES in every worker process.
 *
 * Names the store does not have are remembered too (a negative cache of
 * CSY_NEG_SLOTS names, each tagged with its generation slot, so a name
 * the daemon adds is looked up again at once): a flood of handshakes for
 * unknown names costs one readlink each for a new name and none for a
 * name seen before, nor for its wildcard parent.
 */
#define CSY_CACHE_ENTRY_BYTES   9000
#define CSY_NEG_SLOTS           4096
#define CSY_NEG_NAME            64      /* longer names are not kept */

apr_status_t csy_cache_create(csy_cache_t **c, apr_pool_t *p,
                              unsigned capacity, csy_shared_t *sh,
                              const char *store_dir,
                              const apr_array_header_t *wrap_certs,
                              const apr_array_header_t *wrap_keys);

/**
 * The bundle for a client's server name (as csy_sni_name gives it): the
 * exact name, else the wildcard "*.parent".  On APR_SUCCESS *b holds a
 * reference the caller releases.  APR_NOTFOUND: the store serves neither.
 * An unreadable new version keeps the cached one serving (err says why)
 * and is tried again after a few seconds; with nothing cached the error
 * is returned.  err is left empty for names the store does not have.
 */
apr_status_t csy_cache_lookup(csy_bundle_t **b, csy_cache_t *c,
                              const char *name, char *err,
                              apr_size_t errlen);

/** Size and fill of this process's cache. */
void csy_cache_info(csy_cache_t *c, csy_cache_info_t *info);

/**
 * The serial this process has cached for name, in out (CSY_SERIAL_SIZE
 * bytes); 0 if not cached.
 */
int csy_cache_serial(csy_cache_t *c, const char *name, char *out);

/** Install a bundle on a handshake (chain, key; replaces the default). */
int csy_bundle_use(SSL *ssl, const csy_bundle_t *b);

#endif /* CSY_DYN_H */
