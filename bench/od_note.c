/*
 * od_note: what csy_od_note() (mod_certsync/csy_ondemand.c) costs the
 * certificate callback of a handshake for a name the store lacks, with
 * CertSyncOnDemand on: nanoseconds per call for random new names (over
 * the rate: the usual case under a flood), new names within the rate
 * (the table filling, refusals making way), and a name already queued,
 * with 1 and 4 threads on one table (the workers of one process).
 *
 *   bench/od_note [CALLS]        (make bench/od_note; default 2,000,000)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <apr_general.h>
#include <apr_time.h>

#include "csy_ondemand.h"

static csy_od_t *od;
static long calls;
static int mode;                /* 0 random, 1 one name */

static double now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *run(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg * 7919u + 1;
    char name[64];
    long i;

    for (i = 0; i < calls; i++) {
        if (mode == 0) {
            seed = seed * 1103515245u + 12345u;
            snprintf(name, sizeof(name), "r%08x-%ld.flood.test", seed, i);
        }
        else {
            strcpy(name, "queued.example");
        }
        csy_od_note(od, name, apr_time_now());
    }
    return NULL;
}

static void bench(const char *what, unsigned rate, int m, int threads)
{
    pthread_t t[8];
    double t0;
    int i;

    csy_od_init(od, rate, rate);
    mode = m;
    if (m == 1) {
        csy_od_note(od, "queued.example", apr_time_now());
    }
    t0 = now_ns();
    for (i = 0; i < threads; i++) {
        pthread_create(&t[i], NULL, run, (void *)(size_t)i);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    printf("| %s | %d | %.0f |\n", what, threads,
           (now_ns() - t0) / ((double)calls * threads) * threads);
}

int main(int argc, char **argv)
{
    calls = argc > 1 ? atol(argv[1]) : 2000000;
    apr_initialize();
    od = mmap(NULL, sizeof(*od), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    printf("| case | threads | ns per call (wall, per thread) |\n|---|---:|---:|\n");
    bench("random names, over the rate (5/s)", 5, 0, 1);
    bench("random names, over the rate (5/s)", 5, 0, 4);
    bench("random names, all within the rate", 1000000000, 0, 1);
    bench("a name already queued", 5, 1, 1);
    bench("a name already queued", 5, 1, 4);
    return 0;
}
