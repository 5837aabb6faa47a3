/*
 * csy_check.h: what csy_sync.c's cycle asks of csy_check.c: the bundles of
 * a batch checked and their installs staged on several threads.  Not for
 * other files.
 */
#ifndef CSY_CHECK_H
#define CSY_CHECK_H

#include "csy_sync.h"

/* How a job's why starts when the store refused the install. */
#define CSY_STORE_WHY       "store: "

/* One bundle of a batch: what the main thread read from the answer, then
 * what a worker made of it. */
typedef struct {
    const char *want;           /* the domain asked for */
    const char *domain, *serial, *chain_pem, *key_cms;
    const char *why;            /* refused: why; NULL: fine */
    const char *warn;           /* for the log: no key.seal, and why */
    int pending;                /* staged: to be made current */
} csy_job_t;

/* A cycle's checking threads' memory (one allocator each), and a batch
 * being checked. */
typedef struct csy_checker_t csy_checker_t;
typedef struct csy_checking_t csy_checking_t;

/** Workers for a cycle, one per CPU or cfg->threads; p outlives them. */
csy_checker_t *csy_checker_make(apr_pool_t *p, const csy_config_t *cfg,
                                csy_store_t *store);

/**
 * Starts checking and staging jobs on the workers but the first: the
 * calling thread is free meanwhile (it fetches the next batch) and joins
 * them in csy_check_finish().  The previous batch's bundles are freed: what
 * the caller keeps of them it must have copied.  Each job's why, warn and
 * pending say the outcome.
 */
csy_checking_t *csy_check_start(csy_checker_t *ck, csy_job_t *jobs,
                                int njobs, apr_pool_t *p);

/** The calling thread checks what is left, then waits for the others. */
void csy_check_finish(csy_checking_t *c);

#endif /* CSY_CHECK_H */
