/*
 * csy_dyn.c: per-handshake certificates from the store (see csy_dyn.h).
 *
 * A lookup under the cache's mutex is a hash probe and a list splice;
 * everything slow (reading files, opening the envelope, parsing) happens
 * outside it, so one cold domain never holds up the handshakes of the
 * others.  Two threads missing the same name at once both load it and the
 * second insert wins; that is rarer and cheaper than making one wait.
 *
 * Consistency: a worker reads the domain's generation slot before it
 * reads the files, and the daemon bumps the slot after the new `current`
 * link is in place.  So a worker that raced the switch holds an entry
 * tagged with the old slot value and reloads at its next lookup; it never
 * keeps a stale version past a bump.  A version is read through the
 * serial the `current` link names, so a switch during the read cannot mix
 * two versions; if pruning removed it meanwhile the read starts again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_allocator.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cs_crypto.h"
#include "cs_envelope.h"
#include "cs_file.h"
#include "cs_layout.h"
#include "cs_name.h"
#include "cs_seal.h"
#include "csy_clock.h"
#include "csy_dyn.h"

#define CSY_MAX_CHAIN   (256 * 1024)
#define CSY_MAX_CMS     (64 * 1024)
#define CSY_MAX_SEAL    (16 * 1024 + 64)
#define CSY_LOAD_TRIES  3
/* Scratch memory the cache's allocator keeps for misses: enough for a
 * few threads missing at once. */
#define CSY_SCRATCH_KEEP (512 * 1024)
/* After a new version failed to load, the old one keeps serving and the
 * new one is tried again after this long, not at every handshake. */
#define CSY_RETRY_AFTER apr_time_from_sec(5)

/* ------------------------------------------------------------------ */
/* Names and the shared generation table                               */
/* ------------------------------------------------------------------ */

static apr_uint32_t fnv1a_n(const char *s, apr_size_t len)
{
    apr_uint32_t h = 2166136261u;

    while (len--) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

static apr_uint32_t fnv1a(const char *s)
{
    return fnv1a_n(s, strlen(s));
}

/* Counters are shared by every process: relaxed atomic adds. */
#define COUNT(c, field) do { \
        if ((c)->sh) { \
            __atomic_fetch_add(&(c)->sh->field, 1, __ATOMIC_RELAXED); \
        } \
    } while (0)

apr_uint32_t csy_gen_slots_for(apr_uint64_t manifest_bytes)
{
    apr_uint64_t want = manifest_bytes / CSY_GEN_MANIFEST_BYTES_PER_DOMAIN;
    apr_uint32_t slots = CSY_GEN_SLOTS_MIN;

    while (slots < want && slots < CSY_GEN_SLOTS_MAX) {
        slots <<= 1;
    }
    return slots;
}

apr_size_t csy_shared_size(apr_uint32_t slots)
{
    return sizeof(csy_shared_t) + (apr_size_t)slots * sizeof(apr_uint32_t);
}

void csy_shared_init(csy_shared_t *sh, apr_uint32_t slots)
{
    memset(sh, 0, csy_shared_size(slots));
    sh->mask = slots - 1;
}

apr_uint32_t csy_gen_slot(const csy_shared_t *sh, const char *name)
{
    return fnv1a(name) & sh->mask;
}

apr_uint32_t csy_gen_get(const csy_shared_t *sh, const char *name)
{
    return __atomic_load_n(&sh->slot[csy_gen_slot(sh, name)],
                           __ATOMIC_ACQUIRE);
}

void csy_gen_bump(csy_shared_t *sh, const char *name)
{
    __atomic_add_fetch(&sh->slot[csy_gen_slot(sh, name)], 1,
                       __ATOMIC_RELEASE);
    __atomic_add_fetch(&sh->changes, 1, __ATOMIC_RELAXED);
}

void csy_gen_bump_all(csy_shared_t *sh)
{
    apr_size_t i;

    for (i = 0; i <= sh->mask; i++) {
        __atomic_add_fetch(&sh->slot[i], 1, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&sh->changes, 1, __ATOMIC_RELAXED);
}

int csy_sni_name(char *out, const char *sni)
{
    /* The suite's one rule, then: a client does not ask for "*.x" (the
     * wildcard entry is found from the name it covers). */
    return cs_name_lower(out, sni) && out[0] != '*';
}

int csy_cert_covers(X509 *leaf, const char *host)
{
    /* What a browser checks: the DNS names of subjectAltName (the subject
     * only without any), a wildcard standing for one whole label.  An
     * address literal is never covered: the store holds domains. */
    if (!leaf || !host || !host[0]) {
        return 0;
    }
    return X509_check_host(leaf, host, strlen(host),
                           X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                           NULL) == 1;
}

/* ------------------------------------------------------------------ */
/* Intermediate chains: one per CA, parsed once per process            */
/* ------------------------------------------------------------------ */

#define CSY_MAX_CHAINS 64

typedef struct chain_t chain_t;
struct chain_t {
    chain_t *next;
    apr_uint32_t hash;
    apr_size_t len;
    char *pem;
    STACK_OF(X509) *sk;
};

typedef struct {
    apr_thread_mutex_t *mu;
    chain_t *head;
    unsigned count;
} chains_t;

/* A stack of its own (certificates shared, referenced) for the chain
 * whose PEM text is pem; parsed only the first time this process sees
 * it.  NULL on a parse error (why says so). */
static STACK_OF(X509) *chain_get(chains_t *ch, apr_pool_t *p,
                                 const char *pem, apr_size_t len,
                                 const char **why)
{
    apr_uint32_t h = fnv1a_n(pem, len);
    apr_array_header_t *certs;
    STACK_OF(X509) *sk = NULL;
    chain_t *c;
    int i;

    if (ch) {
        apr_thread_mutex_lock(ch->mu);
        for (c = ch->head; c; c = c->next) {
            if (c->hash == h && c->len == len && !memcmp(c->pem, pem, len)) {
                sk = X509_chain_up_ref(c->sk);
                break;
            }
        }
        apr_thread_mutex_unlock(ch->mu);
        if (sk) {
            return sk;
        }
    }
    if (cs_pem_read_certs(&certs, p, pem, len, why)
        || !(sk = sk_X509_new_null())) {
        return NULL;
    }
    for (i = 0; i < certs->nelts; i++) {
        X509 *x = APR_ARRAY_IDX(certs, i, X509 *);
        if (!X509_up_ref(x) || !sk_X509_push(sk, x)) {
            sk_X509_pop_free(sk, X509_free);
            *why = "out of memory";
            return NULL;
        }
    }
    if (ch && (c = calloc(1, sizeof(*c))) != NULL) {
        c->pem = malloc(len);
        c->sk = X509_chain_up_ref(sk);
        if (!c->pem || !c->sk) {
            free(c->pem);
            free(c);
            return sk;
        }
        memcpy(c->pem, pem, len);
        c->len = len;
        c->hash = h;
        apr_thread_mutex_lock(ch->mu);
        if (ch->count < CSY_MAX_CHAINS) {
            c->next = ch->head;
            ch->head = c;
            ch->count++;
            c = NULL;
        }
        apr_thread_mutex_unlock(ch->mu);
        if (c) {
            sk_X509_pop_free(c->sk, X509_free);
            free(c->pem);
            free(c);
        }
    }
    return sk;
}

static void chains_free(chains_t *ch)
{
    chain_t *c;

    while ((c = ch->head) != NULL) {
        ch->head = c->next;
        sk_X509_pop_free(c->sk, X509_free);
        free(c->pem);
        free(c);
    }
}

/* ------------------------------------------------------------------ */
/* Bundles                                                             */
/* ------------------------------------------------------------------ */

void csy_bundle_release(csy_bundle_t *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        X509_free(b->leaf);
        sk_X509_pop_free(b->chain, X509_free);
        EVP_PKEY_free(b->key);
        OPENSSL_free(b);
    }
}

static void bundle_ref(csy_bundle_t *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
}

/* The serial `current` names; APR_NOTFOUND if none (or not a serial). */
static apr_status_t current_serial(char *serial, const char *store_dir,
                                   const char *name)
{
    char path[1400], buf[CS_LAYOUT_SERIAL_MAX + 1];
    ssize_t n;

    if (!cs_layout_path_buf(path, sizeof(path), store_dir, name,
                            CS_LAYOUT_CURRENT, NULL)) {
        return APR_NOTFOUND;
    }
    n = readlink(path, buf, sizeof(buf));
    if (n < 0) {
        return errno == ENOENT || errno == ENOTDIR ? APR_NOTFOUND
                                                   : APR_FROM_OS_ERROR(errno);
    }
    if (!cs_layout_serial_ok(buf, (apr_size_t)n)) {
        return APR_NOTFOUND;    /* also a target longer than a serial */
    }
    memcpy(serial, buf, (apr_size_t)n);
    serial[n] = '\0';
    return APR_SUCCESS;
}

/* The wrapping keys, and the sealing keys derived from them. */
typedef struct {
    const apr_array_header_t *certs;    /* X509 * */
    const apr_array_header_t *keys;     /* EVP_PKEY *, same order */
    const apr_array_header_t *seal;     /* cs_seal_key_t, or NULL */
} wrapping_t;

static void wrapping_init(wrapping_t *w, apr_pool_t *p,
                          const apr_array_header_t *certs,
                          const apr_array_header_t *keys)
{
    w->certs = certs;
    w->keys = keys;
    w->seal = cs_seal_keys_derive(p, keys);
}

/* The key from the version's key.cms: an RSA-OAEP decryption and
 * OpenSSL's decoders, about 1.2 ms.  *key is the caller's. */
static apr_status_t open_envelope(EVP_PKEY **key, apr_pool_t *p,
                                  const char *store_dir, const char *name,
                                  const char *serial, X509 *leaf,
                                  const wrapping_t *w, const char **why)
{
    apr_status_t rv;
    apr_size_t len;
    char *cms;
    int i;

    *key = NULL;
    if ((rv = cs_file_read(&cms, &len, p,
                           cs_layout_path(p, store_dir, name, serial,
                                          CS_LAYOUT_ENVELOPE),
                           CSY_MAX_CMS))) {
        *why = APR_STATUS_IS_ENOENT(rv) ? "version removed while reading"
                                        : "cannot read key.cms";
        return rv;
    }
    rv = APR_ENOENT;
    *why = "no wrapping key";
    for (i = 0; w->keys && i < w->keys->nelts; i++) {
        rv = cs_envelope_open(key, p, (unsigned char *)cms, len,
                              APR_ARRAY_IDX(w->certs, i, X509 *),
                              APR_ARRAY_IDX(w->keys, i, EVP_PKEY *), why);
        if (rv != APR_ENOENT) {
            break;
        }
    }
    OPENSSL_cleanse(cms, len);
    if (rv) {
        *key = NULL;
        /* Not "gone": that would make the caller read the version again. */
        return APR_STATUS_IS_ENOENT(rv) ? APR_EINVAL : rv;
    }
    if (X509_check_private_key(leaf, *key) != 1) {
        ERR_clear_error();
        *key = NULL;
        *why = "the key does not match the certificate";
        return APR_EINVAL;
    }
    EVP_PKEY_up_ref(*key);      /* ours: the pool's cleanup frees its copy */
    return APR_SUCCESS;
}

/* The key from key.seal, which the sync daemon wrote beside key.cms: an
 * AES-GCM decryption and, for EC keys, no decoder (~35 us).  Anything but
 * success (an older store without it, another wrapping key) means: use
 * key.cms. */
static EVP_PKEY *open_seal(apr_pool_t *p, const char *store_dir,
                           X509 *leaf, const wrapping_t *w, const char *name,
                           const char *serial)
{
    EVP_PKEY *key = NULL;
    const char *why;
    apr_size_t len;
    char *sealed;
    int i;

    if (!w->seal
        || cs_file_read(&sealed, &len, p,
                        cs_layout_path(p, store_dir, name, serial,
                                       CS_LAYOUT_SEAL),
                        CSY_MAX_SEAL)) {
        return NULL;
    }
    for (i = 0; i < w->seal->nelts; i++) {
        if (cs_seal_open(&key, (unsigned char *)sealed, len, leaf,
                         &APR_ARRAY_IDX(w->seal, i, cs_seal_key_t), name,
                         serial, &why) != APR_ENOENT) {
            break;
        }
    }
    return key;
}

/* The first certificate of a PEM text, base64-decoded here rather than
 * through the PEM reader's BIO (a quarter of the parse time); *rest
 * points past its END line.  The caller frees it. */
static X509 *leaf_parse(const char *pem, const char **rest,
                        const char **why)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    const char *b = strstr(pem, begin), *e;
    const unsigned char *q;
    unsigned char *der;
    EVP_ENCODE_CTX *ctx;
    int n = 0, m = 0, ok;
    X509 *x = NULL;

    *why = "fullchain.pem has no certificate";
    if (!b || !(e = strstr(b += sizeof(begin) - 1, end))
        || e - b > CSY_MAX_CHAIN) {
        return NULL;
    }
    *rest = e + sizeof(end) - 1;
    while (**rest == '\r' || **rest == '\n' || **rest == ' '
           || **rest == '\t') {
        (*rest)++;
    }
    *why = "fullchain.pem: the first certificate cannot be parsed";
    if (!(der = malloc((size_t)(e - b)))) {
        return NULL;
    }
    ctx = EVP_ENCODE_CTX_new();
    ok = ctx != NULL;
    if (ok) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)b,
                              (int)(e - b)) >= 0
             && EVP_DecodeFinal(ctx, der + n, &m) == 1;
    }
    EVP_ENCODE_CTX_free(ctx);
    q = der;
    if (ok && (x = d2i_X509(NULL, &q, n + m)) != NULL && q != der + n + m) {
        X509_free(x);
        x = NULL;
    }
    free(der);
    ERR_clear_error();
    return x;
}

/* One attempt at reading the version `serial` of name. */
static apr_status_t load_version(csy_bundle_t *b, apr_pool_t *p,
                                 chains_t *chains, const char *store_dir,
                                 const char *name, const wrapping_t *w,
                                 const char **why)
{
    const char *rest;
    apr_size_t pem_len;
    apr_status_t rv;
    char *pem;

    b->from_envelope = 0;
    if ((rv = cs_file_read(&pem, &pem_len, p,
                           cs_layout_path(p, store_dir, name, b->serial,
                                          CS_LAYOUT_CHAIN),
                           CSY_MAX_CHAIN))) {
        *why = APR_STATUS_IS_ENOENT(rv) ? "version removed while reading"
                                        : "cannot read the version";
        return rv;
    }
    /* From here on an error is the content's, never a file gone
     * (APR_ENOENT would make the caller read the version again), except
     * for a key file. */
    if (!(b->leaf = leaf_parse(pem, &rest, why))) {
        return APR_EINVAL;
    }
    /* The intermediates: shared by many domains, parsed once. */
    b->chain = *rest ? chain_get(chains, p, rest,
                                 pem_len - (apr_size_t)(rest - pem), why)
                     : sk_X509_new_null();
    if (!b->chain) {
        return APR_EINVAL;
    }
    if ((b->key = open_seal(p, store_dir, b->leaf, w, name, b->serial))) {
        return APR_SUCCESS;
    }
    b->from_envelope = 1;
    return open_envelope(&b->key, p, store_dir, name, b->serial, b->leaf, w,
                         why);
}

/* alloc: where the scratch pool's memory comes from (the cache's, which
 * keeps what it freed for the next miss; NULL: an allocator of its own,
 * whose memory goes back to the system, with Debian's APR by munmap). */
static apr_status_t bundle_load(csy_bundle_t **pb, chains_t *chains,
                                apr_allocator_t *alloc,
                                const char *store_dir, const char *name,
                                const wrapping_t *w, char *err,
                                apr_size_t errlen)
{
    char serial[CSY_SERIAL_SIZE];
    csy_bundle_t *b;
    apr_pool_t *p;
    apr_status_t rv;
    const char *why = "";
    int tries;

    *pb = NULL;
    if (strlen(name) > CS_NAME_MAX) {
        return APR_NOTFOUND;
    }
    /* A name the store does not have costs this one readlink, nothing
     * allocated. */
    if ((rv = current_serial(serial, store_dir, name))) {
        if (!APR_STATUS_IS_NOTFOUND(rv) && err && errlen) {
            apr_snprintf(err, errlen, "%s (serial -): no current version",
                         name);
        }
        return rv;
    }
    b = OPENSSL_zalloc(sizeof(*b) + strlen(name) + 1);
    if (!b) {
        return APR_ENOMEM;
    }
    b->refs = 1;
    strcpy(b->name, name);
    memcpy(b->serial, serial, sizeof(serial));
    /* Unmanaged: workers call this from any thread (the allocator has a
     * mutex). */
    if ((rv = apr_pool_create_unmanaged_ex(&p, NULL, alloc))) {
        OPENSSL_free(b);
        return rv;
    }
    for (tries = 0; tries < CSY_LOAD_TRIES; tries++) {
        if (tries && (rv = current_serial(b->serial, store_dir, name))) {
            why = "no current version";
            break;
        }
        rv = load_version(b, p, chains, store_dir, name, w, &why);
        if (!APR_STATUS_IS_ENOENT(rv)) {
            break;      /* done, or an error a retry would not fix */
        }
        X509_free(b->leaf);
        sk_X509_pop_free(b->chain, X509_free);
        EVP_PKEY_free(b->key);
        b->leaf = NULL;
        b->chain = NULL;
        b->key = NULL;
        apr_pool_clear(p);
    }
    /* why may live in p: formatted before p goes.  A name the store
     * does not have is no error worth a log line. */
    if (rv && !APR_STATUS_IS_NOTFOUND(rv) && err && errlen) {
        apr_snprintf(err, errlen, "%s (serial %s): %s", name,
                     b->serial[0] ? b->serial : "-", why);
    }
    apr_pool_destroy(p);
    if (rv) {
        b->refs = 1;
        csy_bundle_release(b);
        return rv;
    }
    *pb = b;
    return APR_SUCCESS;
}

apr_status_t csy_bundle_load(csy_bundle_t **pb, const char *store_dir,
                             const char *name,
                             const apr_array_header_t *wrap_certs,
                             const apr_array_header_t *wrap_keys,
                             char *err, apr_size_t errlen)
{
    wrapping_t w;
    apr_pool_t *p;
    apr_status_t rv;

    if ((rv = apr_pool_create_unmanaged_ex(&p, NULL, NULL))) {
        return rv;
    }
    wrapping_init(&w, p, wrap_certs, wrap_keys);
    rv = bundle_load(pb, NULL, NULL, store_dir, name, &w, err, errlen);
    apr_pool_destroy(p);
    return rv;
}

int csy_bundle_use(SSL *ssl, const csy_bundle_t *b)
{
    /* The virtual host's own (default) certificate goes: a client that
     * prefers its key type must not be offered it instead. */
    SSL_certs_clear(ssl);
    return SSL_use_cert_and_key(ssl, b->leaf, b->key, b->chain, 1) == 1;
}

/* ------------------------------------------------------------------ */
/* The cache                                                           */
/* ------------------------------------------------------------------ */

typedef struct entry_t entry_t;
struct entry_t {
    entry_t *hnext;                 /* bucket chain */
    entry_t *prev, *next;           /* LRU list, most recent first */
    csy_bundle_t *b;
    apr_uint32_t hash;
    apr_uint32_t gen;
    apr_uint32_t failed_gen;        /* slot value whose version failed */
    apr_time_t retry_at;            /* ... tried again not before this
                                     * (monotonic clock) */
};

/* A name the store did not have at generation gen of its slot. */
typedef struct {
    apr_uint32_t hash;
    apr_uint32_t gen;
    char name[CSY_NEG_NAME];        /* "": a free slot */
} neg_t;

struct csy_cache_t {
    apr_thread_mutex_t *mu;
    apr_allocator_t *alloc;         /* misses' scratch memory, reused */
    neg_t *neg;                     /* CSY_NEG_SLOTS, direct-mapped; NULL
                                     * without change notices */
    entry_t **buckets;
    apr_uint32_t mask;
    unsigned capacity;
    unsigned count;
    entry_t lru;                    /* sentinel */
    chains_t chains;
    csy_shared_t *sh;
    const char *store_dir;
    wrapping_t wrap;
};

static entry_t *find(csy_cache_t *c, apr_uint32_t h, const char *name)
{
    entry_t *e;

    for (e = c->buckets[h & c->mask]; e; e = e->hnext) {
        if (e->hash == h && strcmp(e->b->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

static void lru_unlink(entry_t *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_front(csy_cache_t *c, entry_t *e)
{
    e->next = c->lru.next;
    e->prev = &c->lru;
    c->lru.next->prev = e;
    c->lru.next = e;
}

static void drop(csy_cache_t *c, entry_t *e)
{
    entry_t **pp = &c->buckets[e->hash & c->mask];

    while (*pp != e) {
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    lru_unlink(e);
    c->count--;
    csy_bundle_release(e->b);
    free(e);
}

static apr_status_t cache_cleanup(void *data)
{
    csy_cache_t *c = data;

    while (c->lru.next != &c->lru) {
        drop(c, c->lru.next);
    }
    free(c->buckets);
    free(c->neg);
    apr_allocator_destroy(c->alloc);
    chains_free(&c->chains);
    return APR_SUCCESS;
}

apr_status_t csy_cache_create(csy_cache_t **pc, apr_pool_t *p,
                              unsigned capacity, csy_shared_t *sh,
                              const char *store_dir,
                              const apr_array_header_t *wrap_certs,
                              const apr_array_header_t *wrap_keys)
{
    csy_cache_t *c = apr_pcalloc(p, sizeof(*c));
    apr_thread_mutex_t *amu;
    apr_uint32_t n = 16;
    apr_status_t rv;

    *pc = NULL;
    if (capacity == 0) {
        return APR_EINVAL;
    }
    while (n < capacity && n < (1u << 24)) {
        n <<= 1;
    }
    if ((rv = apr_thread_mutex_create(&c->mu, APR_THREAD_MUTEX_DEFAULT, p))
        || (rv = apr_thread_mutex_create(&c->chains.mu,
                                         APR_THREAD_MUTEX_DEFAULT, p))) {
        return rv;
    }
    /* A miss's scratch pool: a few KB, kept for the next miss instead of
     * a new allocator (an mmap and a munmap) each time. */
    if ((rv = apr_allocator_create(&c->alloc))
        || (rv = apr_thread_mutex_create(&amu, APR_THREAD_MUTEX_DEFAULT,
                                         p))) {
        return rv;
    }
    apr_allocator_mutex_set(c->alloc, amu);
    apr_allocator_max_free_set(c->alloc, CSY_SCRATCH_KEEP);
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets
        || (sh && !(c->neg = calloc(CSY_NEG_SLOTS, sizeof(*c->neg))))) {
        free(c->buckets);
        apr_allocator_destroy(c->alloc);
        return APR_ENOMEM;
    }
    c->mask = n - 1;
    c->capacity = capacity;
    c->lru.next = c->lru.prev = &c->lru;
    c->sh = sh;
    c->store_dir = apr_pstrdup(p, store_dir);
    wrapping_init(&c->wrap, p, wrap_certs, wrap_keys);
    apr_pool_cleanup_register(p, c, cache_cleanup, apr_pool_cleanup_null);
    *pc = c;
    return APR_SUCCESS;
}

/* Under the mutex: e (or a new entry) now holds b at generation gen. */
static void store_entry(csy_cache_t *c, entry_t *e, apr_uint32_t h,
                        csy_bundle_t *b, apr_uint32_t gen)
{
    if (e) {
        csy_bundle_release(e->b);
        lru_unlink(e);
    }
    else {
        e = calloc(1, sizeof(*e));
        if (!e) {
            csy_bundle_release(b);
            return;
        }
        e->hash = h;
        e->hnext = c->buckets[h & c->mask];
        c->buckets[h & c->mask] = e;
        c->count++;
    }
    e->b = b;
    e->gen = gen;
    e->retry_at = 0;
    lru_front(c, e);
    while (c->count > c->capacity) {
        drop(c, c->lru.prev);
        COUNT(c, evictions);
    }
}

/* Under the mutex: the negative slot of a name (NULL if too long to
 * keep), and whether it says the store did not have it at gen. */
static neg_t *neg_slot(csy_cache_t *c, apr_uint32_t h, const char *name)
{
    if (!c->neg || strlen(name) >= CSY_NEG_NAME) {
        return NULL;
    }
    /* The high bits: the low ones pick the positive bucket. */
    return &c->neg[(h >> 16 ^ h * 2654435761u) % CSY_NEG_SLOTS];
}

static int neg_known(const neg_t *n, apr_uint32_t h, const char *name,
                     apr_uint32_t gen)
{
    return n && n->hash == h && n->gen == gen && n->name[0]
           && strcmp(n->name, name) == 0;
}

/* The bundle for exactly this store name. */
static apr_status_t lookup_exact(csy_bundle_t **pb, csy_cache_t *c,
                                 const char *name, char *err,
                                 apr_size_t errlen)
{
    apr_uint32_t h = fnv1a(name);
    apr_uint32_t gen = c->sh ? csy_gen_get(c->sh, name) : 0;
    char cached[CSY_SERIAL_SIZE] = "", now[CSY_SERIAL_SIZE];
    csy_bundle_t *b;
    entry_t *e;
    apr_status_t rv;

    apr_thread_mutex_lock(c->mu);
    e = find(c, h, name);
    if (e && (e->gen == gen
              || (e->retry_at && e->failed_gen == gen
                  && csy_clock_mono() < e->retry_at))) {
        lru_unlink(e);
        lru_front(c, e);
        bundle_ref(e->b);
        *pb = e->b;
        apr_thread_mutex_unlock(c->mu);
        COUNT(c, hits);
        return APR_SUCCESS;
    }
    if (e) {
        memcpy(cached, e->b->serial, sizeof(cached));
    }
    else if (neg_known(neg_slot(c, h, name), h, name, gen)) {
        /* Not in the store when this slot value was current. */
        apr_thread_mutex_unlock(c->mu);
        COUNT(c, unknown_cached);
        return APR_NOTFOUND;
    }
    apr_thread_mutex_unlock(c->mu);

    /* The slot moved (the name, or another sharing its slot, changed):
     * still the same version? Then one readlink() was the whole cost. */
    if (cached[0] && current_serial(now, c->store_dir, name) == APR_SUCCESS
        && strcmp(now, cached) == 0) {
        apr_thread_mutex_lock(c->mu);
        e = find(c, h, name);
        if (e && strcmp(e->b->serial, now) == 0) {
            e->gen = gen;
            bundle_ref(e->b);
            *pb = e->b;
            apr_thread_mutex_unlock(c->mu);
            COUNT(c, revalidated);
            return APR_SUCCESS;
        }
        apr_thread_mutex_unlock(c->mu);
    }

    rv = bundle_load(&b, &c->chains, c->alloc, c->store_dir, name, &c->wrap,
                     err,
                     errlen);
    apr_thread_mutex_lock(c->mu);
    e = find(c, h, name);
    if (rv == APR_SUCCESS) {
        COUNT(c, misses);
        if (b->from_envelope) {
            COUNT(c, envelopes);
        }
        bundle_ref(b);          /* one for the cache, one for the caller */
        store_entry(c, e, h, b, gen);
        *pb = b;
    }
    else if (APR_STATUS_IS_NOTFOUND(rv)) {
        neg_t *n = neg_slot(c, h, name);

        if (e) {
            drop(c, e);         /* deleted: forget it */
        }
        if (n) {
            /* gen was read before the store: a name added since has
             * bumped its slot, and is looked up again. */
            n->hash = h;
            n->gen = gen;
            strcpy(n->name, name);
        }
    }
    else {
        COUNT(c, errors);
        if (e) {
            /* What was serving keeps serving; the new version is tried
             * again in a few seconds (the slot stays unmatched). */
            e->failed_gen = gen;
            e->retry_at = csy_clock_mono() + CSY_RETRY_AFTER;
            bundle_ref(e->b);
            *pb = e->b;
            rv = APR_SUCCESS;
        }
    }
    apr_thread_mutex_unlock(c->mu);
    return rv;
}

apr_status_t csy_cache_lookup(csy_bundle_t **pb, csy_cache_t *c,
                              const char *name, char *err,
                              apr_size_t errlen)
{
    const char *dot = strchr(name, '.');
    char wild[CSY_NAME_SIZE];
    apr_status_t rv;

    *pb = NULL;
    if (err && errlen) {
        err[0] = '\0';
    }
    rv = lookup_exact(pb, c, name, err, errlen);
    if (APR_STATUS_IS_NOTFOUND(rv) && dot && strchr(dot + 1, '.')
        && name[0] != '*') {
        if (err && errlen) {
            err[0] = '\0';
        }
        apr_snprintf(wild, sizeof(wild), "*%s", dot);
        rv = lookup_exact(pb, c, wild, err, errlen);
    }
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        COUNT(c, unknown);
    }
    return rv;
}

void csy_cache_info(csy_cache_t *c, csy_cache_info_t *info)
{
    apr_thread_mutex_lock(c->mu);
    info->capacity = c->capacity;
    info->entries = c->count;
    apr_thread_mutex_unlock(c->mu);
}

int csy_cache_serial(csy_cache_t *c, const char *name, char *out)
{
    entry_t *e;

    apr_thread_mutex_lock(c->mu);
    e = find(c, fnv1a(name), name);
    if (e) {
        memcpy(out, e->b->serial, CSY_SERIAL_SIZE);
    }
    apr_thread_mutex_unlock(c->mu);
    return e != NULL;
}
