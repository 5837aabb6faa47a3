/*
 * bench/dyn_unknown.c: what a handshake for a name the store does not
 * have costs dynamic mode's lookup (csy_cache_lookup), in CPU time: a
 * flood of random server names against a store.
 *
 *   cc -O2 -o /tmp/dyn_unknown bench/dyn_unknown.c mod_certsync/csy_dyn.c \
 *      lib/cs_crypto.c lib/cs_envelope.c lib/cs_file.c lib/cs_layout.c \
 *      lib/cs_name.c lib/cs_name_idn.c lib/cs_seal.c lib/cs_x509.c \
 *      -Imod_certsync -Ilib \
 *      $(pkg-config --cflags --libs apr-1) -lssl -lcrypto -lidn2 -lpsl \
 *      -ljansson
 *   /tmp/dyn_unknown STORE_DIR [LOOKUPS]
 *
 * STORE_DIR: a store as bench/mkstore or the sync daemon fill it (only
 * its live/ directory is read).  Prints the CPU time per lookup of new
 * random names (each asked once), then of one unknown name asked again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <apr_general.h>
#include <apr_tables.h>

#include "csy_dyn.h"

static double cpu_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double flood(csy_cache_t *c, int n, int distinct, int *unknown)
{
    csy_bundle_t *b;
    char name[80], err[256];
    double t0 = cpu_us();
    int i;

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "r%d-%d.scale.test",
                 distinct ? rand() : 7, distinct ? i : 7);
        *unknown += APR_STATUS_IS_NOTFOUND(csy_cache_lookup(&b, c, name, err,
                                                            sizeof(err)));
        if (b) {
            csy_bundle_release(b);
        }
    }
    return (cpu_us() - t0) / n;
}

int main(int argc, char **argv)
{
    apr_array_header_t *certs, *keys;
    apr_pool_t *p;
    csy_shared_t *sh;
    csy_cache_t *c;
    int n = argc > 2 ? atoi(argv[2]) : 20000, unknown = 0;
    double fresh, again;

    if (argc < 2 || n <= 0) {
        fprintf(stderr, "usage: %s STORE_DIR [LOOKUPS]\n", argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&p, NULL);
    sh = calloc(1, csy_shared_size(1u << 17));
    csy_shared_init(sh, 1u << 17);
    certs = apr_array_make(p, 1, sizeof(void *));
    keys = apr_array_make(p, 1, sizeof(void *));
    if (csy_cache_create(&c, p, 16, sh, argv[1], certs, keys)) {
        fprintf(stderr, "cannot create the cache\n");
        return 1;
    }
    srand(42);
    fresh = flood(c, n, 1, &unknown);
    again = flood(c, n, 0, &unknown);
    printf("%d of %d lookups unknown; CPU per lookup: %.2f us for new "
           "random names, %.2f us for one name asked again\n", unknown,
           2 * n, fresh, again);
    return unknown == 2 * n ? 0 : 1;
}
