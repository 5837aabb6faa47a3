/*
 * cs_db.c: the apr_dbd plumbing under the store (see cs_db.h): preparing
 * the statements (their table is in cs_store_schema.c), running them,
 * rows, transactions, and what the sqlite3 and mysql drivers do
 * differently.
 *
 * Serialisation: every write that touches cs_domains first updates the
 * counter row, and every lease or limiter decision first updates its
 * pool's or limiter's row, so on MariaDB/InnoDB those rows' locks order
 * the writers until commit, and any consistent read in the transaction
 * comes after the lock was taken.  On SQLite the driver's BEGIN IMMEDIATE
 * takes the database's write lock up front, which orders writers the same
 * way.
 */
#include <stdarg.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_db.h"
#include "cs_log.h"
#include "cs_name.h"

/* SQLite: how long one statement waits for another connection's lock
 * before the driver's own retry loop (16 x 100 ms) takes over.  Short: the
 * apr_dbd sqlite3 driver holds a process-wide mutex around every step, so
 * a long wait inside SQLite would stall the lock holder of the same
 * process too (measured: 1000 PUTs from 8 clients, 92 s with 1000 ms,
 * 2.5 s with 10 ms).  The driver's retry loop sleeps without the mutex. */
#define CS_SQLITE_BUSY_MS "10"

/* The most placeholders a statement has (cs_dom_update: 12). */
#define CS_DB_MAX_ARGS 16

/* ------------------------------------------------------------------ */
/* What the drivers do differently                                     */
/* ------------------------------------------------------------------ */

static int is_sqlite(const cs_db_t *db)
{
    return strcmp(apr_dbd_name(db->driver), "sqlite3") == 0;
}

/* A lock wait that gave up or a deadlock: SQLITE_BUSY, SQLITE_LOCKED;
 * MySQL's lock wait timeout, deadlock, MariaDB's
 * innodb_snapshot_isolation conflict. */
static int is_conflict(const cs_db_t *db, int rv, const char *msg)
{
    if (is_sqlite(db)) {
        return rv == 5 || rv == 6
               || (msg && strstr(msg, "database is locked"));
    }
    return rv == 1205 || rv == 1213 || rv == 1020;
}

/* A conflict that rolled the whole transaction back, so that running it
 * again from the start is the cure: InnoDB's deadlock, MariaDB's
 * snapshot-isolation conflict, and on a Galera cluster the certification
 * failure of a transaction whose write set collided with another node's
 * (at COMMIT, or at the next statement of a transaction that a replicated
 * write set aborted), which the server reports as a deadlock too.  Not a
 * lock wait timeout (1205): that one waited its 50 s already. */
static int is_deadlock(const cs_db_t *db, int rv, const char *msg)
{
    if (is_sqlite(db)) {
        return 0;
    }
    return rv == 1213 || rv == 1020
           || (msg && strstr(msg, "Deadlock found") != NULL);
}

/* Prepared statements can die under the store:
 * - the sqlite3 driver prepares with the legacy sqlite3_prepare(), whose
 *   statements fail for good once another connection changed the schema
 *   (created a table, say).  Such a statement is prepared again and run
 *   once more, right away: the connection and its transaction are intact.
 * - the MySQL client reconnects by itself after the connection was lost
 *   (server restart, idle timeout; mod_dbd's ping on acquiring a
 *   connection does it too), and the new session knows none of the old
 *   statements.  They are all forgotten, to be prepared again on next use.
 *   A statement the server never ran (the client knew it stale, or the
 *   server did not know it, or the server had gone away before it was
 *   sent) is run again at once, but not inside a transaction: the
 *   transaction did not survive.  cs_db_tx_begin() proves the session
 *   first, so a transaction starts on a live one.  A connection lost
 *   while a statement ran (2013) may have run it: that one fails. */
static int is_stale(cs_db_t *db, int rv)
{
    const char *msg;

    if (!is_sqlite(db)) {
        /* Unknown statement handler, server gone away, lost connection,
         * statement not prepared, statement closed. */
        if (rv == 1243 || rv == 2006 || rv == 2013 || rv == 2030
            || rv == 2056) {
            apr_hash_clear(db->prepared);
            return rv != 2013 && !db->in_tx;
        }
        return 0;
    }
    msg = apr_dbd_error(db->driver, db->handle, rv);
    return msg && strstr(msg, "schema has changed") != NULL;
}

apr_status_t cs_db_enter(cs_db_t *db, apr_pool_t *p)
{
    db->error[0] = '\0';
    db->conflict = 0;
    if (!db->driver || !db->handle) {
        return cs_db_fail(db, APR_EINVAL, "no database connection");
    }
    if (!db->prepared) {
        db->prepared = apr_hash_make(p);
    }
    if (is_sqlite(db)) {
        /* Per connection, and costs nothing to repeat.  It returns a row,
         * which the driver reports as a non-zero code: nothing to
         * check. */
        cs_db_run(db, "PRAGMA busy_timeout = " CS_SQLITE_BUSY_MS);
    }
    return APR_SUCCESS;
}

void cs_db_setup_file(cs_db_t *db)
{
    if (is_sqlite(db)) {
        /* 8 KiB pages, for a new file only (a file's page size is fixed
         * when its first page is written): a domain's row (certificate
         * chain and sealed key, about 2.4 KB) fits one to a 4 KiB page
         * with the rest wasted, three to an 8 KiB one: 4.1 KB a domain
         * became 2.8 KB (100,000 domains, bench/certservice_1m.sh).  Must
         * come before the switch to WAL, which writes the first page. */
        cs_db_run(db, "PRAGMA page_size = 8192");
        /* Readers never wait for the writer, nor it for them, and the
         * setting stays with the file.  Returns a row: nothing to check. */
        cs_db_run(db, "PRAGMA journal_mode = WAL");
    }
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

apr_status_t cs_db_driver_fail(cs_db_t *db, int rv, const char *what)
{
    const char *msg = apr_dbd_error(db->driver, db->handle, rv);

    if (!db->error[0]) {
        apr_snprintf(db->error, sizeof(db->error), "%s: %s (%d)", what,
                     msg && *msg ? msg : "unknown error", rv);
    }
    if (is_deadlock(db, rv, msg)) {
        db->conflict = 1;
    }
    return is_conflict(db, rv, msg) ? APR_EAGAIN : APR_EGENERAL;
}

apr_status_t cs_db_fail(cs_db_t *db, apr_status_t status, const char *fmt,
                        ...)
{
    va_list ap;

    if (!db->error[0]) {
        va_start(ap, fmt);
        apr_vsnprintf(db->error, sizeof(db->error), fmt, ap);
        va_end(ap);
    }
    return status;
}

void cs_db_forget(cs_db_t *db)
{
    db->error[0] = '\0';
    db->conflict = 0;
}

const char *cs_store_error(cs_db_t *db, apr_pool_t *p, int rv)
{
    char buf[120];

    if (db && db->error[0]) {
        return apr_pstrdup(p, db->error);
    }
    if (rv == APR_SUCCESS) {
        return "no error";
    }
    return apr_pstrdup(p, apr_strerror(rv, buf, sizeof(buf)));
}

/* ------------------------------------------------------------------ */
/* Preparing and running                                               */
/* ------------------------------------------------------------------ */

/* fresh: prepare again even if the hash has the statement. */
static apr_status_t stmt_get(apr_dbd_prepared_t **st, cs_db_t *db,
                             cs_stmt_e stmt, int fresh)
{
    const cs_statement_t *s = cs_store_statements() + stmt;
    int rv;

    *st = fresh ? NULL : apr_hash_get(db->prepared, s->label,
                                      APR_HASH_KEY_STRING);
    if (*st) {
        return APR_SUCCESS;
    }
    /* The hash's pool lives as long as the hash, so the statement does. */
    rv = apr_dbd_prepare(db->driver, apr_hash_pool_get(db->prepared),
                         db->handle, s->sql, s->label, st);
    if (rv) {
        *st = NULL;
        return cs_db_driver_fail(db, rv, s->label);
    }
    apr_hash_set(db->prepared, s->label, APR_HASH_KEY_STRING, *st);
    return APR_SUCCESS;
}

/* A query's rows, copied into p: the MySQL driver reuses its buffers from
 * row to row.  Every row is read, so the connection is ready for the next
 * statement. */
static apr_status_t read_rows(apr_array_header_t **rows, cs_db_t *db,
                              apr_pool_t *p, apr_dbd_results_t *res,
                              const char *what)
{
    apr_dbd_row_t *row;
    cs_db_row_t vals;
    const char *v;
    int rv, i, ncols;

    *rows = apr_array_make(p, 8, sizeof(cs_db_row_t));
    ncols = apr_dbd_num_cols(db->driver, res);
    for (;;) {
        row = NULL;
        rv = apr_dbd_get_row(db->driver, p, res, &row, -1);
        if (rv == -1) {
            break;
        }
        if (rv) {
            return cs_db_driver_fail(db, rv, what);
        }
        vals = apr_pcalloc(p, (ncols ? ncols : 1) * sizeof(*vals));
        for (i = 0; i < ncols; i++) {
            v = apr_dbd_get_entry(db->driver, row, i);
            vals[i] = v ? apr_pstrdup(p, v) : NULL;
        }
        APR_ARRAY_PUSH(*rows, cs_db_row_t) = vals;
    }
    return APR_SUCCESS;
}

/* One run of a prepared statement: a select if res, else a query. */
static int execute(int *nrows, apr_dbd_results_t **res, cs_db_t *db,
                   apr_pool_t *p, apr_dbd_prepared_t *st, const void **args)
{
    if (res) {
        *res = NULL;
        return apr_dbd_pbselect(db->driver, p, db->handle, res, st, 0,
                                args);
    }
    return apr_dbd_pbquery(db->driver, p, db->handle, nrows, st, args);
}

/* Runs stmt with the arguments in ap (one per placeholder): rows NULL for
 * a statement without a result. */
static apr_status_t run(int *nrows, apr_array_header_t **rows, cs_db_t *db,
                        apr_pool_t *p, cs_stmt_e stmt, va_list ap)
{
    const void *args[CS_DB_MAX_ARGS];
    apr_dbd_prepared_t *st;
    apr_dbd_results_t *res = NULL;
    apr_status_t status;
    const char *s, *label;
    int n = 0, rv;

    if ((unsigned int)stmt >= CS_STMT_COUNT) {
        return cs_db_fail(db, APR_EGENERAL, "no statement %d", (int)stmt);
    }
    label = cs_store_statements()[stmt].label;
    /* No literal '%' in the SQL: each one is a placeholder. */
    for (s = cs_store_statements()[stmt].sql; *s; s++) {
        if (*s != '%') {
            continue;
        }
        if (n == CS_DB_MAX_ARGS) {
            return cs_db_fail(db, APR_EGENERAL, "%s: too many arguments",
                              label);
        }
        args[n++] = va_arg(ap, const void *);
    }
    if ((status = stmt_get(&st, db, stmt, 0)) != APR_SUCCESS) {
        return status;
    }
    rv = execute(nrows, rows ? &res : NULL, db, p, st, args);
    if (rv && is_stale(db, rv)
        && stmt_get(&st, db, stmt, 1) == APR_SUCCESS) {
        rv = execute(nrows, rows ? &res : NULL, db, p, st, args);
    }
    if (rv) {
        return cs_db_driver_fail(db, rv, label);
    }
    return rows ? read_rows(rows, db, p, res, label) : APR_SUCCESS;
}

apr_status_t cs_db_exec(int *nrows, cs_db_t *db, apr_pool_t *p,
                        cs_stmt_e stmt, ...)
{
    apr_status_t status;
    va_list ap;
    int n = 0;

    va_start(ap, stmt);
    status = run(&n, NULL, db, p, stmt, ap);
    va_end(ap);
    if (status == APR_SUCCESS && nrows) {
        *nrows = n;
    }
    return status;
}

apr_status_t cs_db_row(cs_db_row_t *row, cs_db_t *db, apr_pool_t *p,
                       cs_stmt_e stmt, ...)
{
    apr_array_header_t *rows;
    apr_status_t status;
    va_list ap;

    *row = NULL;
    va_start(ap, stmt);
    status = run(NULL, &rows, db, p, stmt, ap);
    va_end(ap);
    if (status == APR_SUCCESS && rows->nelts) {
        *row = APR_ARRAY_IDX(rows, 0, cs_db_row_t);
    }
    return status;
}

apr_status_t cs_db_rows(apr_array_header_t **items, cs_db_t *db,
                        apr_pool_t *p, apr_size_t size,
                        cs_db_from_row_fn *from_row, cs_stmt_e stmt, ...)
{
    apr_array_header_t *rows;
    apr_status_t status;
    va_list ap;
    int i;

    va_start(ap, stmt);
    status = run(NULL, &rows, db, p, stmt, ap);
    va_end(ap);
    if (status != APR_SUCCESS) {
        return status;
    }
    *items = apr_array_make(p, rows->nelts ? rows->nelts : 1, size);
    for (i = 0; i < rows->nelts; i++) {
        from_row(apr_array_push(*items), APR_ARRAY_IDX(rows, i, cs_db_row_t));
    }
    return APR_SUCCESS;
}

apr_status_t cs_db_ensure_row(cs_db_t *db, apr_pool_t *p, cs_stmt_e get,
                              cs_stmt_e insert, const char *key)
{
    cs_db_row_t row;
    apr_status_t status;

    if ((status = cs_db_row(&row, db, p, get, key)) != APR_SUCCESS) {
        return status;
    }
    if (!row && cs_db_exec(NULL, db, p, insert, key) != APR_SUCCESS) {
        /* Taken as a racing insert; the lock tells if it was not. */
        cs_db_forget(db);
    }
    return APR_SUCCESS;
}

int cs_db_run(cs_db_t *db, const char *sql)
{
    int nrows;

    return apr_dbd_query(db->driver, db->handle, &nrows, sql);
}

apr_status_t cs_db_select(apr_array_header_t **rows, cs_db_t *db,
                          apr_pool_t *p, const char *sql, const char *what)
{
    apr_dbd_results_t *res = NULL;
    int rv;

    if ((rv = apr_dbd_select(db->driver, p, db->handle, &res, sql, 0))) {
        return cs_db_driver_fail(db, rv, what);
    }
    return read_rows(rows, db, p, res, what);
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

/* Any failure (of a statement, or not found, invalid) marks the
 * transaction for rollback before it ends. */
apr_status_t cs_db_tx_begin(apr_dbd_transaction_t **t, cs_db_t *db,
                            apr_pool_t *p)
{
    apr_dbd_prepared_t *st;
    apr_status_t status;
    cs_db_row_t row;
    int i, rv;

    *t = NULL;
    /* MySQL: one statement first, outside the transaction, proves the
     * session and its prepared statements; after a reconnect it is
     * prepared again and run once more (is_stale) and the others are
     * forgotten.  A round trip per transaction, so that the first
     * transaction after a database restart does not fail. */
    if (!is_sqlite(db)
        && (status = cs_db_row(&row, db, p, CS_STMT_SEQ_GET))
           != APR_SUCCESS) {
        return status;
    }
    /* Nothing is prepared inside a transaction: preparing could make the
     * MySQL client reconnect, silently, into a session in autocommit
     * mode, and the rest of the "transaction" would commit piecemeal.  A
     * statement run after a reconnect fails instead. */
    for (i = 0; i < CS_STMT_COUNT; i++) {
        if ((status = stmt_get(&st, db, i, 0)) != APR_SUCCESS) {
            return status;
        }
    }
    rv = apr_dbd_transaction_start(db->driver, p, db->handle, t);
    if (rv == 0) {
        /* Every statement's result is checked here, and the first
         * failure ends the work and rolls back; the driver's habit of
         * failing every later statement too would only stop a stale
         * statement from being prepared again and retried. */
        apr_dbd_transaction_mode_set(db->driver, *t,
                                     APR_DBD_TRANSACTION_IGNORE_ERRORS);
        db->in_tx = 1;
        return APR_SUCCESS;
    }
    status = cs_db_driver_fail(db, rv, "begin");
    /* The drivers attach the transaction to the handle even when starting
     * it failed; ending it detaches it. */
    if (*t) {
        apr_dbd_transaction_mode_set(db->driver, *t,
                                     APR_DBD_TRANSACTION_ROLLBACK);
        apr_dbd_transaction_end(db->driver, p, *t);
    }
    *t = NULL;
    return status;
}

apr_status_t cs_db_tx_end(apr_dbd_transaction_t *t, cs_db_t *db,
                          apr_pool_t *p, apr_status_t status)
{
    int rv;

    db->in_tx = 0;
    /* MySQL: COMMIT as a statement of its own, whose error code the
     * driver returns: apr_dbd's end of a transaction returns only whether
     * mysql_commit() failed, and the SET autocommit after it wipes the
     * message, so a certification conflict at commit (Galera: 1213) would
     * look like any failure.  The driver's own commit then has nothing
     * left to do.  A connection lost during the COMMIT (2013) may have
     * committed: that one is no conflict, never retried. */
    if (status == APR_SUCCESS && !is_sqlite(db)
        && (rv = cs_db_run(db, "COMMIT")) != 0) {
        status = cs_db_driver_fail(db, rv, "commit");
    }
    if (status != APR_SUCCESS) {
        apr_dbd_transaction_mode_set(db->driver, t,
                                     APR_DBD_TRANSACTION_ROLLBACK);
    }
    rv = apr_dbd_transaction_end(db->driver, p, t);
    if (rv) {
        if (status == APR_SUCCESS) {
            status = cs_db_driver_fail(db, rv, "commit");
        }
        /* A COMMIT that failed (SQLite: still busy) leaves the
         * transaction open on the connection; close it so the next user
         * of the connection starts clean.  Harmless when none is open. */
        cs_db_run(db, "ROLLBACK");
    }
    return status;
}

/* How often a transaction runs at most when it keeps conflicting, and
 * the first pause between runs (doubled each time, with jitter: two
 * writers that collided must not collide again in step).  Eight runs
 * wait at most about 1.3 s in all. */
#define CS_DB_TX_TRIES   8
#define CS_DB_TX_PAUSE_MS 5

static void tx_log(cs_db_t *db, cs_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tx_log(cs_db_t *db, cs_log_level_t level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!db->log) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    db->log(db->log_baton, level, msg);
}

apr_status_t cs_db_tx_run(cs_db_t *db, apr_pool_t *p, const char *what,
                          cs_db_tx_fn *body, void *baton)
{
    apr_dbd_transaction_t *t;
    apr_status_t status;
    apr_uint32_t r;
    int attempt, ms;

    for (attempt = 1; ; attempt++) {
        cs_db_forget(db);
        if ((status = cs_db_tx_begin(&t, db, p)) == APR_SUCCESS) {
            status = body(db, p, baton);
            status = cs_db_tx_end(t, db, p, status);
        }
        if (status == APR_SUCCESS || !db->conflict) {
            return status;
        }
        if (attempt == CS_DB_TX_TRIES) {
            tx_log(db, CS_LOG_WARN, CSLOGNO(00121) "database: %s: still "
                   "conflicting after %d attempts, given up: %s", what,
                   attempt, db->error);
            return APR_EAGAIN;
        }
        apr_generate_random_bytes((unsigned char *)&r, sizeof(r));
        ms = CS_DB_TX_PAUSE_MS << (attempt - 1);
        ms = ms / 2 + (int)(r % (apr_uint32_t)(ms + 1));
        tx_log(db, CS_LOG_INFO, CSLOGNO(00120) "database: %s: conflict "
               "(%s), attempt %d of %d, again in %d ms", what, db->error,
               attempt, CS_DB_TX_TRIES, ms);
        db->retries++;
        apr_sleep(apr_time_from_msec(ms));
    }
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

apr_status_t cs_db_check_len(cs_db_t *db, const char *what, const char *s,
                             apr_size_t max, int required)
{
    if (!s) {
        return required ? cs_db_fail(db, APR_EINVAL, "%s missing", what)
                        : APR_SUCCESS;
    }
    if ((required && !*s) || strlen(s) > max) {
        return cs_db_fail(db, APR_EINVAL, "%s must be 1 to %"
                          APR_SIZE_T_FMT " bytes", what, max);
    }
    return APR_SUCCESS;
}

apr_status_t cs_db_enter_domain(cs_db_t *db, apr_pool_t *p,
                                const char *domain)
{
    apr_status_t status;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    return cs_db_check_len(db, "domain", domain, CS_MAX_DOMAIN, 1);
}

const char *cs_db_cut(apr_pool_t *p, const char *s, apr_size_t max)
{
    apr_size_t n;

    if (!s || (n = cs_utf8_prefix(s, max)) == strlen(s)) {
        return s;
    }
    return apr_pstrndup(p, s, n);
}

apr_int64_t cs_db_int(const char *s)
{
    return s ? apr_atoi64(s) : 0;
}

apr_int64_t cs_db_now(void)
{
    return apr_time_sec(apr_time_now());
}
