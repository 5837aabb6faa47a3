/*
 * cs_store_domains.c: the domains (their certificates, keys and errors)
 * and the change feed that tells proxies about them.
 *
 * Every write that changes what proxies serve appends one change with the
 * next value of the counter row, in the same transaction; the counter
 * row stays locked until commit, so seqs commit in order (cs_store.h).
 */
#include <string.h>

#include <apr_dbd.h>

#include "cs_db.h"
#include "cs_store.h"

/* The most changes one cs_store_changes() returns. */
#define CS_MAX_CHANGES 1000000

static apr_status_t check_bundle(cs_db_t *db, const cs_bundle_t *b)
{
    apr_status_t status;

    if ((status = cs_db_check_len(db, "domain", b->domain, CS_MAX_DOMAIN,
                                  1))
        || (status = cs_db_check_len(db, "state", b->state, CS_MAX_WORD, 0))
        || (status = cs_db_check_len(db, "serial", b->serial, CS_MAX_TOKEN,
                                     0))
        || (status = cs_db_check_len(db, "key_type", b->key_type,
                                     CS_MAX_WORD, 0))
        || (status = cs_db_check_len(db, "chain_pem", b->chain_pem,
                                     CS_MAX_TEXT, 0))
        || (status = cs_db_check_len(db, "key_cms", b->key_cms, CS_MAX_TEXT,
                                     0))) {
        return status;
    }
    return APR_SUCCESS;
}

/* Takes the next sequence number; from here until the transaction ends
 * the counter row is locked, so seqs commit in order. */
static apr_status_t seq_next(apr_int64_t *seq, cs_db_t *db, apr_pool_t *p)
{
    cs_db_row_t row;
    apr_status_t status;
    int nrows = 0;

    if ((status = cs_db_exec(&nrows, db, p, CS_STMT_SEQ_NEXT))) {
        return status;
    }
    if (nrows != 1) {
        return cs_db_fail(db, APR_EGENERAL, "the sequence counter is "
                          "missing (cs_store_schema() not run?)");
    }
    if ((status = cs_db_row(&row, db, p, CS_STMT_SEQ_GET))) {
        return status;
    }
    if (!row || !row[0]) {
        return cs_db_fail(db, APR_EGENERAL, "the sequence counter is "
                          "missing");
    }
    *seq = cs_db_int(row[0]);
    return APR_SUCCESS;
}

/* Appends a change; serial NULL and not_after 0 for a delete. */
static apr_status_t change_add(cs_db_t *db, apr_pool_t *p, apr_int64_t seq,
                               const char *domain, const char *op,
                               const char *serial, apr_int64_t not_after,
                               const char *actor, apr_int64_t at)
{
    return cs_db_exec(NULL, db, p, CS_STMT_CHG_INSERT, &seq, domain, op,
                      serial, &not_after, actor, &at);
}

/* cs_store_put_bundle()'s transaction (cs_db_tx_run()). */
typedef struct {
    cs_bundle_t *b;
    const char *state, *error, *actor;
    apr_int64_t updated, seq;
    int created;
} put_tx_t;

static apr_status_t put_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    put_tx_t *x = baton;
    cs_bundle_t *b = x->b;
    cs_db_row_t row = NULL;
    apr_status_t status;

    if ((status = seq_next(&x->seq, db, p)) == APR_SUCCESS) {
        status = cs_db_row(&row, db, p, CS_STMT_DOM_SERIAL, b->domain);
    }
    if (status == APR_SUCCESS) {
        /* Insert and update take the same arguments. */
        status = cs_db_exec(NULL, db, p, row ? CS_STMT_DOM_UPDATE
                                             : CS_STMT_DOM_INSERT,
                            x->state, b->key_type, &x->seq, b->serial,
                            &b->not_before, &b->not_after, b->chain_pem,
                            b->key_cms, x->error, &x->updated, x->actor,
                            b->domain);
    }
    if (status == APR_SUCCESS) {
        status = change_add(db, p, x->seq, b->domain, "upsert", b->serial,
                            b->not_after, x->actor, x->updated);
    }
    x->created = row == NULL;
    return status;
}

apr_status_t cs_store_put_bundle(cs_db_t *db, apr_pool_t *p, cs_bundle_t *b,
                                 const char *actor)
{
    apr_status_t status;
    put_tx_t x;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (!b) {
        return cs_db_fail(db, APR_EINVAL, "no bundle");
    }
    if ((status = check_bundle(db, b)) != APR_SUCCESS) {
        return status;
    }
    memset(&x, 0, sizeof(x));
    x.b = b;
    x.state = b->state ? b->state : "active";
    x.error = cs_db_cut(p, b->last_error, CS_MAX_ERROR);
    x.actor = cs_db_cut(p, actor, CS_MAX_ACTOR);
    x.updated = b->updated ? b->updated : cs_db_now();

    if ((status = cs_db_tx_run(db, p, "put bundle", put_tx, &x))
        == APR_SUCCESS) {
        b->seq = x.seq;
        b->created = x.created;
    }
    return status;
}

typedef struct {
    const char *domain, *error, *actor;
    apr_int64_t now, seq;
} dom_tx_t;

static apr_status_t set_error_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    dom_tx_t *x = baton;
    cs_db_row_t row = NULL;
    apr_status_t status;
    apr_int64_t zero = 0;
    const char *state;

    /* The counter's lock without a new seq: this is no change to what
     * proxies serve, but it must not race put_bundle's insert. */
    if ((status = cs_db_exec(NULL, db, p, CS_STMT_SEQ_LOCK))
        == APR_SUCCESS) {
        status = cs_db_row(&row, db, p, CS_STMT_DOM_SERIAL, x->domain);
    }
    if (status == APR_SUCCESS) {
        /* No error: back to what the domain's certificate says. */
        state = x->error ? "error" : row && row[0] ? "active" : "pending";
        if (row) {
            status = cs_db_exec(NULL, db, p, CS_STMT_DOM_ERROR, state,
                                x->error, &x->now, x->domain);
        }
        else {
            status = cs_db_exec(NULL, db, p, CS_STMT_DOM_INSERT, state, NULL,
                                &zero, NULL, &zero, &zero, NULL, NULL,
                                x->error, &x->now, NULL, x->domain);
        }
    }
    return status;
}

apr_status_t cs_store_set_error(cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *error)
{
    apr_status_t status;
    dom_tx_t x;

    if ((status = cs_db_enter_domain(db, p, domain))) {
        return status;
    }
    memset(&x, 0, sizeof(x));
    x.domain = domain;
    x.error = cs_db_cut(p, error, CS_MAX_ERROR);
    x.now = cs_db_now();
    return cs_db_tx_run(db, p, "set error", set_error_tx, &x);
}

static apr_status_t delete_tx(cs_db_t *db, apr_pool_t *p, void *baton)
{
    dom_tx_t *x = baton;
    apr_status_t status;
    int nrows = 0;

    if ((status = seq_next(&x->seq, db, p)) == APR_SUCCESS) {
        status = cs_db_exec(&nrows, db, p, CS_STMT_DOM_DELETE, x->domain);
    }
    if (status == APR_SUCCESS && nrows == 0) {
        /* Rolling back returns the seq too: no gap in the feed. */
        status = cs_db_fail(db, APR_NOTFOUND, "unknown domain %s",
                            x->domain);
    }
    if (status == APR_SUCCESS) {
        status = change_add(db, p, x->seq, x->domain, "delete", NULL, 0,
                            x->actor, x->now);
    }
    return status;
}

apr_status_t cs_store_delete(cs_db_t *db, apr_pool_t *p, const char *domain,
                             const char *actor, apr_int64_t *seq)
{
    apr_status_t status;
    dom_tx_t x;

    if ((status = cs_db_enter_domain(db, p, domain))) {
        return status;
    }
    memset(&x, 0, sizeof(x));
    x.domain = domain;
    x.actor = cs_db_cut(p, actor, CS_MAX_ACTOR);
    x.now = cs_db_now();
    if ((status = cs_db_tx_run(db, p, "delete", delete_tx, &x))
        == APR_SUCCESS && seq) {
        *seq = x.seq;
    }
    return status;
}

void cs_db_summary_from_row(void *item, cs_db_row_t r)
{
    cs_bundle_t *b = item;

    b->domain = r[0];
    b->seq = cs_db_int(r[1]);
    b->state = r[2];
    b->serial = r[3];
    b->not_before = cs_db_int(r[4]);
    b->not_after = cs_db_int(r[5]);
    b->key_type = r[6];
    b->last_error = r[7];
    b->updated = cs_db_int(r[8]);
}

static void change_from_row(void *item, cs_db_row_t r)
{
    cs_change_t *c = item;

    c->seq = cs_db_int(r[0]);
    c->domain = r[1];
    c->op = r[2];
    c->serial = r[3];
    c->not_after = cs_db_int(r[4]);
}

apr_status_t cs_store_get(cs_bundle_t **b, cs_db_t *db, apr_pool_t *p,
                          const char *domain)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, domain))
        || (status = cs_db_row(&row, db, p, CS_STMT_DOM_GET, domain))) {
        return status;
    }
    if (!row) {
        return cs_db_fail(db, APR_NOTFOUND, "unknown domain %s", domain);
    }
    *b = apr_pcalloc(p, sizeof(**b));
    cs_db_summary_from_row(*b, row);
    (*b)->chain_pem = row[9];
    (*b)->key_cms = row[10];
    return APR_SUCCESS;
}

apr_status_t cs_store_list(apr_array_header_t **domains, cs_db_t *db,
                           apr_pool_t *p, const char *after, int limit)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (limit < 1) {
        return cs_db_fail(db, APR_EINVAL, "limit must be at least 1");
    }
    /* Every name sorts after "". */
    return cs_db_rows(domains, db, p, sizeof(cs_bundle_t), cs_db_summary_from_row,
                      CS_STMT_DOM_LIST, after ? after : "", &limit);
}

apr_status_t cs_store_changes(apr_array_header_t **changes,
                              apr_int64_t *next, int *more, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t since, int limit)
{
    apr_array_header_t *c;
    apr_status_t status;
    int fetch;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (limit < 1) {
        return cs_db_fail(db, APR_EINVAL, "limit must be at least 1");
    }
    if (limit > CS_MAX_CHANGES) {
        limit = CS_MAX_CHANGES;
    }
    /* One more row than asked for tells whether more follow. */
    fetch = limit + 1;
    if ((status = cs_db_rows(&c, db, p, sizeof(cs_change_t),
                             change_from_row, CS_STMT_CHG_LIST, &since,
                             &fetch))) {
        return status;
    }
    *more = c->nelts > limit;
    if (*more) {
        c->nelts = limit;
    }
    *next = c->nelts ? APR_ARRAY_IDX(c, c->nelts - 1, cs_change_t).seq
                     : since;
    *changes = c;
    return APR_SUCCESS;
}
