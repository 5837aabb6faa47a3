/*
 * cs_store_notify.c: the notifications' outbox (cs_notify.h), for every
 * instance on the database: recording an event once per sink, claiming a
 * due row so that one worker delivers it, the decision after a delivery,
 * the expiry scan, and the purge.
 */
#include <string.h>

#include <apr_dbd.h>
#include <apr_strings.h>

#include "cs_db.h"
#include "cs_notify.h"
#include "cs_store.h"

static apr_status_t record_one(int *added, cs_db_t *db, apr_pool_t *p,
                               const char *id, const char *sink,
                               const cs_event_t *ev, const char *body)
{
    cs_db_row_t row;
    apr_int64_t now = ev->time, not_after = ev->not_after;
    apr_status_t status;

    if (cs_db_exec(NULL, db, p, CS_STMT_NTF_INSERT, id, sink, ev->type,
                   ev->domain, ev->serial, &not_after, body, &now, &now,
                   &now) == APR_SUCCESS) {
        (*added)++;
        return APR_SUCCESS;
    }
    /* Recorded before (the same event noticed again, by this instance or
     * another): fine.  Anything else is the database failing. */
    cs_db_forget(db);
    if ((status = cs_db_row(&row, db, p, CS_STMT_NTF_GET, id, sink))) {
        return status;
    }
    if (!row) {
        return cs_db_fail(db, APR_EGENERAL, "cannot record event %s for %s",
                          id, sink);
    }
    return APR_SUCCESS;
}

apr_status_t cs_notify_record(int *added, const char **pid, cs_db_t *db,
                              apr_pool_t *p, const cs_event_t *ev,
                              const char *discriminator,
                              const apr_array_header_t *sinks)
{
    const char *id, *body;
    apr_status_t status;
    int i, n = 0;

    if (added) {
        *added = 0;
    }
    if ((status = cs_db_enter_domain(db, p, ev->domain))
        || (status = cs_db_check_len(db, "serial", ev->serial, CS_MAX_TOKEN,
                                     0))) {
        return status;
    }
    if (!cs_notify_type_known(ev->type)) {
        return cs_db_fail(db, APR_EINVAL, "unknown event type");
    }
    id = cs_notify_event_id(p, ev->type, ev->domain, discriminator);
    body = id ? cs_notify_event_json(p, id, ev) : NULL;
    if (!body) {
        return cs_db_fail(db, APR_EGENERAL, "cannot build the event");
    }
    if (strlen(body) > CS_MAX_TEXT) {
        /* A CA's megabyte of subproblems: the event without them. */
        cs_event_t small = *ev;

        small.problem = NULL;
        small.error = cs_db_cut(p, ev->error, CS_MAX_ERROR);
        body = cs_notify_event_json(p, id, &small);
    }
    if (pid) {
        *pid = id;
    }
    for (i = 0; sinks && i < sinks->nelts; i++) {
        if ((status = record_one(&n, db, p, id,
                                 APR_ARRAY_IDX(sinks, i, const char *), ev,
                                 body))) {
            return status;
        }
    }
    if (added) {
        *added = n;
    }
    return APR_SUCCESS;
}

static void key_from_row(void *item, cs_db_row_t r)
{
    cs_outbox_t *o = item;

    o->id = r[0];
    o->sink = r[1];
}

apr_status_t cs_notify_due(apr_array_header_t **rows, cs_db_t *db,
                           apr_pool_t *p, apr_int64_t now, int limit)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_rows(rows, db, p, sizeof(cs_outbox_t), key_from_row,
                      CS_STMT_NTF_DUE, &now, &now, &limit);
}

apr_status_t cs_notify_claim(int *claimed, cs_db_t *db, apr_pool_t *p,
                             const char *id, const char *sink,
                             const char *owner, apr_int64_t now, int lease)
{
    apr_status_t status;
    apr_int64_t until = now + lease;
    int nrows = 0;

    *claimed = 0;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_check_len(db, "owner", owner, CS_MAX_TOKEN, 1))
        || (status = cs_db_exec(&nrows, db, p, CS_STMT_NTF_CLAIM, owner,
                                &until, id, sink, &now, &now))) {
        return status;
    }
    *claimed = nrows == 1;
    return APR_SUCCESS;
}

apr_status_t cs_notify_get(cs_outbox_t **row, cs_db_t *db, apr_pool_t *p,
                           const char *id, const char *sink)
{
    cs_db_row_t r;
    cs_outbox_t *o;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_row(&r, db, p, CS_STMT_NTF_GET, id, sink))) {
        return status;
    }
    if (!r) {
        return cs_db_fail(db, APR_NOTFOUND, "no event %s for %s", id, sink);
    }
    o = apr_pcalloc(p, sizeof(*o));
    o->id = r[0];
    o->sink = r[1];
    o->type = r[2];
    o->domain = r[3];
    o->serial = r[4];
    o->not_after = cs_db_int(r[5]);
    o->body = r[6];
    o->state = r[7];
    o->attempts = (int)cs_db_int(r[8]);
    o->next_at = cs_db_int(r[9]);
    o->last_error = r[10];
    o->created = cs_db_int(r[11]);
    *row = o;
    return APR_SUCCESS;
}

apr_status_t cs_notify_finish(cs_db_t *db, apr_pool_t *p, const char *id,
                              const char *sink, const char *owner,
                              const cs_notify_next_t *next,
                              const char *error, apr_int64_t now)
{
    apr_status_t status;
    apr_int64_t attempts = next->attempts;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_NTF_FINISH, next->state,
                      &attempts, &next->next_at,
                      cs_db_cut(p, error, CS_MAX_ERROR), &now, id, sink,
                      owner);
}

typedef struct {
    const char *domain;
    const char *serial;
    apr_int64_t not_after;
} expiring_t;

static void expiring_from_row(void *item, cs_db_row_t r)
{
    expiring_t *e = item;

    e->domain = r[0];
    e->serial = r[1];
    e->not_after = cs_db_int(r[2]);
}

apr_status_t cs_notify_scan_expiring(int *added, cs_db_t *db,
                                     apr_pool_t *p, apr_int64_t now,
                                     apr_int64_t window, int percent,
                                     const apr_array_header_t *sinks,
                                     int limit)
{
    apr_array_header_t *rows;
    apr_int64_t until = window > 0 ? now + window : 0;
    apr_int64_t pct = percent > 0 ? percent : 0;
    apr_status_t status;
    cs_event_t ev;
    int i, n;

    *added = 0;
    if ((status = cs_db_enter(db, p))
        || (status = cs_db_rows(&rows, db, p, sizeof(expiring_t),
                                expiring_from_row, CS_STMT_NTF_EXPIRING,
                                &until, &now, &pct, &limit))) {
        return status;
    }
    for (i = 0; i < rows->nelts; i++) {
        const expiring_t *e = &APR_ARRAY_IDX(rows, i, expiring_t);

        /* pct 0 and window 0 match only what expired already: told too,
         * since a certificate past its end has no successor either. */
        memset(&ev, 0, sizeof(ev));
        ev.type = CS_EVENT_EXPIRING;
        ev.domain = e->domain;
        ev.serial = e->serial;
        ev.not_after = e->not_after;
        ev.time = now;
        if ((status = cs_notify_record(&n, NULL, db, p, &ev, e->serial,
                                       sinks))) {
            return status;
        }
        *added += n;
    }
    return APR_SUCCESS;
}

apr_status_t cs_notify_purge(cs_db_t *db, apr_pool_t *p, apr_int64_t now,
                             apr_int64_t keep)
{
    apr_status_t status;
    apr_int64_t before = now - keep;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_exec(NULL, db, p, CS_STMT_NTF_PURGE, &before, &now);
}

apr_status_t cs_notify_count(apr_int64_t *count, cs_db_t *db,
                             apr_pool_t *p, const char *state)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_enter(db, p))
        || (status = cs_db_row(&row, db, p, CS_STMT_NTF_COUNT, state))) {
        return status;
    }
    *count = row ? cs_db_int(row[0]) : 0;
    return APR_SUCCESS;
}
