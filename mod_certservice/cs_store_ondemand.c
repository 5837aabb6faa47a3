/*
 * cs_store_ondemand.c: the verdicts of on-demand issuance (cs_ondemand.h)
 * in table cs_ondemand, shared by every instance on the database.
 *
 * No upsert syntax is common to both databases: a put updates the row
 * when there is one, else inserts it; an insert that loses a race with
 * another instance's (the primary key refuses it) updates instead.
 */
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_ondemand.h"
#include "cs_store.h"

#define OD_MAX_REASON   255

apr_status_t cs_od_get(cs_od_row_t **prow, cs_db_t *db, apr_pool_t *p,
                       const char *name)
{
    cs_db_row_t row;
    cs_od_row_t *r;
    apr_status_t status;

    *prow = NULL;
    if ((status = cs_db_enter_domain(db, p, name))
        || (status = cs_db_row(&row, db, p, CS_STMT_OD_GET, name))) {
        return status;
    }
    if (!row) {
        return APR_NOTFOUND;
    }
    r = apr_pcalloc(p, sizeof(*r));
    r->name = row[0];
    r->verdict = row[1];
    r->until = cs_db_int(row[2]);
    r->reason = row[3];
    r->asked = cs_db_int(row[4]);
    *prow = r;
    return APR_SUCCESS;
}

apr_status_t cs_od_put(cs_db_t *db, apr_pool_t *p, const char *name,
                       const char *verdict, apr_int64_t until,
                       const char *reason, apr_int64_t now)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter_domain(db, p, name))
        || (status = cs_db_check_len(db, "verdict", verdict, CS_MAX_WORD,
                                     1))) {
        return status;
    }
    reason = reason ? cs_db_cut(p, reason, OD_MAX_REASON) : NULL;
    if ((status = cs_db_row(&row, db, p, CS_STMT_OD_GET, name))) {
        return status;
    }
    if (!row) {
        if (cs_db_exec(NULL, db, p, CS_STMT_OD_INSERT, verdict, &until,
                       reason, &now, name) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* Another instance inserted it first: ours replaces it. */
        cs_db_forget(db);
    }
    return cs_db_exec(NULL, db, p, CS_STMT_OD_UPDATE, verdict, &until,
                      reason, &now, name);
}

apr_status_t cs_od_purge(cs_db_t *db, apr_pool_t *p, apr_int64_t now)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p))) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_OD_PURGE, &now);
}

apr_status_t cs_od_count(apr_int64_t *count, cs_db_t *db, apr_pool_t *p,
                         const char *verdict)
{
    cs_db_row_t row;
    apr_status_t status;

    *count = 0;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_row(&row, db, p, CS_STMT_OD_COUNT, verdict))) {
        return status;
    }
    *count = row ? cs_db_int(row[0]) : 0;
    return APR_SUCCESS;
}
