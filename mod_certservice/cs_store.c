/*
 * cs_store.c: CertService's storage through apr_dbd (see cs_store.h).
 *
 * One SQL dialect for the sqlite3 and mysql drivers: only types both
 * accept (VARCHAR, BIGINT, TEXT, MEDIUMTEXT), secondary indexes declared
 * as UNIQUE constraints inside CREATE TABLE (CREATE INDEX IF NOT EXISTS is
 * MariaDB-only), no upsert syntax (neither's is the other's), and no
 * reliance on an UPDATE's row count where MySQL would report 0 for a row
 * that matched but did not change.
 *
 * Serialisation: every write that touches cs_domains first updates the
 * counter row, and every lease decision first updates its pool's row, so
 * on MariaDB/InnoDB those rows' locks order the writers until commit, and
 * any consistent read in the transaction comes after the lock was taken.
 * On SQLite the driver's BEGIN IMMEDIATE takes the database's write lock
 * up front, which orders writers the same way.
 *
 * Errors: APR_EGENERAL for a database failure (APR_EAGAIN when it was a
 * lock wait that gave up, which is worth retrying), APR_EINVAL for a value
 * the schema cannot hold, APR_NOTFOUND where the header says so; the text
 * is in db->error for cs_store_error().
 */
#include <stdarg.h>
#include <string.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "cs_name.h"
#include "cs_sched.h"
#include "cs_store.h"

/* Column limits, checked here so both databases refuse the same values
 * (SQLite would store anything; MySQL depends on its sql_mode). */
#define CS_MAX_DOMAIN   253
#define CS_MAX_TOKEN    64      /* pool, host, lease id, serial */
#define CS_MAX_WORD     16      /* state, key_type, op */
#define CS_MAX_ACTOR    255
#define CS_MAX_TEXT     65535   /* TEXT */
#define CS_MAX_ERROR    4000    /* last_error is truncated, not refused */
/* MEDIUMTEXT holds 16 MiB, but apr_dbd_mysql reads at most 1 MiB of a
 * field back (its default "fldsz"). */
#define CS_MAX_JSON     1048575

/* SQLite: how long one statement waits for another connection's lock
 * before the driver's own retry loop (16 x 100 ms) takes over.  Short: the
 * apr_dbd sqlite3 driver holds a process-wide mutex around every step, so
 * a long wait inside SQLite would stall the lock holder of the same
 * process too (measured: 1000 PUTs from 8 clients, 92 s with 1000 ms,
 * 2.5 s with 10 ms).  The driver's retry loop sleeps without the mutex. */
#define CS_SQLITE_BUSY_MS "10"

/* ------------------------------------------------------------------ */
/* Schema and statements                                               */
/* ------------------------------------------------------------------ */

static const char *const schema_ddl[] = {
    "CREATE TABLE IF NOT EXISTS cs_counter ("
    " name VARCHAR(32) NOT NULL PRIMARY KEY,"
    " value BIGINT NOT NULL)",

    "CREATE TABLE IF NOT EXISTS cs_domains ("
    " name VARCHAR(253) NOT NULL PRIMARY KEY,"
    " state VARCHAR(16) NOT NULL,"
    " key_type VARCHAR(16),"
    " seq BIGINT NOT NULL,"
    " serial VARCHAR(64),"
    " not_before BIGINT NOT NULL,"
    " not_after BIGINT NOT NULL,"
    " chain_pem TEXT,"
    " key_cms TEXT,"
    " last_error TEXT,"
    " updated BIGINT NOT NULL,"
    " actor VARCHAR(255))",

    /* UNIQUE (domain, seq): the index cs_store_domain_hosts() needs. */
    "CREATE TABLE IF NOT EXISTS cs_changes ("
    " seq BIGINT NOT NULL PRIMARY KEY,"
    " domain VARCHAR(253) NOT NULL,"
    " op VARCHAR(8) NOT NULL,"
    " serial VARCHAR(64),"
    " not_after BIGINT NOT NULL,"
    " actor VARCHAR(255),"
    " at BIGINT NOT NULL,"
    " UNIQUE (domain, seq))",

    "CREATE TABLE IF NOT EXISTS cs_pools ("
    " name VARCHAR(64) NOT NULL PRIMARY KEY,"
    " gen BIGINT NOT NULL)",

    /* UNIQUE (pool, id): an index on pool (id is unique anyway). */
    "CREATE TABLE IF NOT EXISTS cs_leases ("
    " id VARCHAR(64) NOT NULL PRIMARY KEY,"
    " pool VARCHAR(64) NOT NULL,"
    " host VARCHAR(253) NOT NULL,"
    " expires BIGINT NOT NULL,"
    " UNIQUE (pool, id))",

    "CREATE TABLE IF NOT EXISTS cs_hosts ("
    " host VARCHAR(253) NOT NULL PRIMARY KEY,"
    " pool VARCHAR(64) NOT NULL,"
    " seq BIGINT NOT NULL,"
    " state VARCHAR(32) NOT NULL,"
    " failed_json MEDIUMTEXT,"
    " reported BIGINT NOT NULL)",

    /* ACME: the issuer queue and renewal schedule (one row per domain,
     * due at next_at), challenges in progress, accounts, limiters. */
    "CREATE TABLE IF NOT EXISTS cs_acme_jobs ("
    " domain VARCHAR(253) NOT NULL PRIMARY KEY,"
    " key_type VARCHAR(16) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " attempts BIGINT NOT NULL,"
    " next_at BIGINT NOT NULL,"
    " owner VARCHAR(64),"
    " lease_until BIGINT NOT NULL,"
    " last_error TEXT,"
    " renew_at BIGINT NOT NULL,"
    " updated BIGINT NOT NULL,"
    " UNIQUE (next_at, domain))",

    "CREATE TABLE IF NOT EXISTS cs_acme_challenges ("
    " token VARCHAR(128) NOT NULL PRIMARY KEY,"
    " domain VARCHAR(253) NOT NULL,"
    " keyauth VARCHAR(255) NOT NULL,"
    " expires BIGINT NOT NULL)",

    "CREATE TABLE IF NOT EXISTS cs_acme_accounts ("
    " directory VARCHAR(255) NOT NULL PRIMARY KEY,"
    " kid VARCHAR(255),"
    " key_cms TEXT NOT NULL,"
    " updated BIGINT NOT NULL)",

    "CREATE TABLE IF NOT EXISTS cs_acme_limits ("
    " name VARCHAR(32) NOT NULL PRIMARY KEY,"
    " window_start BIGINT NOT NULL,"
    " count BIGINT NOT NULL,"
    " paused_until BIGINT NOT NULL)",

    NULL
};

#define DOMAIN_COLS "name, seq, state, serial, not_before, not_after, " \
                    "key_type, last_error, updated"

static const cs_statement_t statements[] = {
    /* The sequence counter; its row lock orders all domain writes. */
    { "cs_seq_next",
      "UPDATE cs_counter SET value = value + 1 WHERE name = 'seq'" },
    { "cs_seq_get",
      "SELECT value FROM cs_counter WHERE name = 'seq'" },
    { "cs_seq_lock",
      "UPDATE cs_counter SET value = value WHERE name = 'seq'" },

    { "cs_dom_get",
      "SELECT " DOMAIN_COLS ", chain_pem, key_cms"
      " FROM cs_domains WHERE name = %s" },
    { "cs_dom_serial",
      "SELECT serial FROM cs_domains WHERE name = %s" },
    /* Same parameters, in the same order, as cs_dom_update. */
    { "cs_dom_insert",
      "INSERT INTO cs_domains (state, key_type, seq, serial, not_before,"
      " not_after, chain_pem, key_cms, last_error, updated, actor, name)"
      " VALUES (%s, %s, %lld, %s, %lld, %lld, %s, %s, %s, %lld, %s, %s)" },
    { "cs_dom_update",
      "UPDATE cs_domains SET state = %s, key_type = %s, seq = %lld,"
      " serial = %s, not_before = %lld, not_after = %lld, chain_pem = %s,"
      " key_cms = %s, last_error = %s, updated = %lld, actor = %s"
      " WHERE name = %s" },
    { "cs_dom_error",
      "UPDATE cs_domains SET state = %s, last_error = %s, updated = %lld"
      " WHERE name = %s" },
    { "cs_dom_delete",
      "DELETE FROM cs_domains WHERE name = %s" },
    { "cs_dom_list",
      "SELECT " DOMAIN_COLS " FROM cs_domains WHERE name > %s"
      " ORDER BY name LIMIT %d" },

    { "cs_chg_insert",
      "INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor,"
      " at) VALUES (%lld, %s, %s, %s, %lld, %s, %lld)" },
    { "cs_chg_list",
      "SELECT seq, domain, op, serial, not_after FROM cs_changes"
      " WHERE seq > %lld ORDER BY seq LIMIT %d" },

    /* A pool's row is the lock its lease decisions serialise on. */
    { "cs_pool_get",
      "SELECT gen FROM cs_pools WHERE name = %s" },
    { "cs_pool_insert",
      "INSERT INTO cs_pools (name, gen) VALUES (%s, 0)" },
    { "cs_pool_lock",
      "UPDATE cs_pools SET gen = gen + 1 WHERE name = %s" },

    { "cs_lease_expire",
      "DELETE FROM cs_leases WHERE pool = %s AND expires <= %lld" },
    { "cs_lease_count",
      "SELECT COUNT(*), MIN(expires) FROM cs_leases WHERE pool = %s" },
    { "cs_lease_mine",
      "SELECT id FROM cs_leases WHERE pool = %s AND host = %s"
      " ORDER BY expires DESC, id" },
    { "cs_lease_renew",
      "UPDATE cs_leases SET expires = %lld WHERE id = %s" },
    { "cs_lease_insert",
      "INSERT INTO cs_leases (id, pool, host, expires)"
      " VALUES (%s, %s, %s, %lld)" },
    { "cs_lease_delete",
      "DELETE FROM cs_leases WHERE pool = %s AND id = %s AND expires > %lld" },
    { "cs_lease_list",
      "SELECT id, host, expires FROM cs_leases"
      " WHERE pool = %s AND expires > %lld ORDER BY expires, id" },

    { "cs_host_count",
      "SELECT COUNT(*) FROM cs_hosts WHERE host = %s" },
    { "cs_host_insert",
      "INSERT INTO cs_hosts (host, pool, seq, state, failed_json, reported)"
      " VALUES (%s, %s, %lld, %s, %s, %lld)" },
    { "cs_host_update",
      "UPDATE cs_hosts SET pool = %s, seq = %lld, state = %s,"
      " failed_json = %s, reported = %lld WHERE host = %s" },
    /* The domain's latest change at or below each host's seq; a delete
     * has a NULL serial, which is the answer for it too. */
    { "cs_host_serving",
      "SELECT h.host, h.pool, h.seq, h.state, h.failed_json, h.reported,"
      " (SELECT c.serial FROM cs_changes c WHERE c.domain = %s"
      " AND c.seq <= h.seq ORDER BY c.seq DESC LIMIT 1)"
      " FROM cs_hosts h ORDER BY h.host" },

    /* ACME queue.  A claim is one UPDATE whose WHERE re-checks that the
     * job is due and unclaimed, so two workers (of any instance) never
     * both get it; its values always change, so the row count is right
     * on MySQL too. */
    { "cs_job_get",
      "SELECT domain, key_type, state, attempts, next_at, owner,"
      " lease_until, last_error, renew_at, updated"
      " FROM cs_acme_jobs WHERE domain = %s" },
    { "cs_job_insert",
      "INSERT INTO cs_acme_jobs (domain, key_type, state, attempts, next_at,"
      " owner, lease_until, last_error, renew_at, updated)"
      " VALUES (%s, %s, 'queued', 0, %lld, NULL, 0, NULL, 0, %lld)" },
    { "cs_job_requeue",
      "UPDATE cs_acme_jobs SET key_type = %s, state = 'queued',"
      " attempts = 0, next_at = %lld, last_error = NULL, updated = %lld"
      " WHERE domain = %s" },
    { "cs_job_due",
      "SELECT domain FROM cs_acme_jobs WHERE next_at <= %lld"
      " AND lease_until < %lld ORDER BY next_at, domain LIMIT %d" },
    { "cs_job_claim",
      "UPDATE cs_acme_jobs SET owner = %s, lease_until = %lld"
      " WHERE domain = %s AND next_at <= %lld AND lease_until < %lld" },
    { "cs_job_finish",
      "UPDATE cs_acme_jobs SET state = %s, attempts = %lld, next_at = %lld,"
      " owner = NULL, lease_until = 0, last_error = %s, renew_at = %lld,"
      " updated = %lld WHERE domain = %s AND owner = %s" },
    { "cs_job_delete",
      "DELETE FROM cs_acme_jobs WHERE domain = %s" },
    { "cs_job_count",
      "SELECT COUNT(*) FROM cs_acme_jobs WHERE state = %s" },

    { "cs_chal_insert",
      "INSERT INTO cs_acme_challenges (token, domain, keyauth, expires)"
      " VALUES (%s, %s, %s, %lld)" },
    { "cs_chal_get",
      "SELECT keyauth FROM cs_acme_challenges WHERE token = %s"
      " AND expires > %lld" },
    { "cs_chal_delete",
      "DELETE FROM cs_acme_challenges WHERE token = %s OR expires <= %lld" },

    { "cs_acct_get",
      "SELECT kid, key_cms FROM cs_acme_accounts WHERE directory = %s" },
    { "cs_acct_insert",
      "INSERT INTO cs_acme_accounts (directory, kid, key_cms, updated)"
      " VALUES (%s, %s, %s, %lld)" },
    { "cs_acct_update",
      "UPDATE cs_acme_accounts SET kid = %s, key_cms = %s, updated = %lld"
      " WHERE directory = %s" },

    /* A limiter's row is its lock, like a pool's for leases. */
    { "cs_lim_get",
      "SELECT window_start, count, paused_until FROM cs_acme_limits"
      " WHERE name = %s" },
    { "cs_lim_insert",
      "INSERT INTO cs_acme_limits (name, window_start, count, paused_until)"
      " VALUES (%s, 0, 0, 0)" },
    { "cs_lim_lock",
      "UPDATE cs_acme_limits SET count = count WHERE name = %s" },
    { "cs_lim_set",
      "UPDATE cs_acme_limits SET window_start = %lld, count = %lld,"
      " paused_until = %lld WHERE name = %s" },

    { NULL, NULL }
};

const cs_statement_t *cs_store_statements(void)
{
    return statements;
}

/* ------------------------------------------------------------------ */
/* Driver helpers                                                      */
/* ------------------------------------------------------------------ */

static int is_sqlite(const cs_db_t *db)
{
    return strcmp(apr_dbd_name(db->driver), "sqlite3") == 0;
}

/* Records the first failure of a call and maps the driver's code. */
static apr_status_t db_fail(cs_db_t *db, int rv, const char *what)
{
    const char *msg = apr_dbd_error(db->driver, db->handle, rv);
    int sqlite = is_sqlite(db);

    if (!db->error[0]) {
        apr_snprintf(db->error, sizeof(db->error), "%s: %s (%d)", what,
                     msg && *msg ? msg : "unknown error", rv);
    }
    /* SQLITE_BUSY, SQLITE_LOCKED; MySQL lock wait timeout, deadlock,
     * MariaDB's innodb_snapshot_isolation conflict. */
    if ((sqlite && (rv == 5 || rv == 6
                    || (msg && strstr(msg, "database is locked"))))
        || (!sqlite && (rv == 1205 || rv == 1213 || rv == 1020))) {
        return APR_EAGAIN;
    }
    return APR_EGENERAL;
}

static apr_status_t fail(cs_db_t *db, apr_status_t rv, const char *fmt,
                         ...)
{
    va_list ap;

    if (!db->error[0]) {
        va_start(ap, fmt);
        apr_vsnprintf(db->error, sizeof(db->error), fmt, ap);
        va_end(ap);
    }
    return rv;
}

/* Every public call starts here: a fresh error, and on SQLite a busy
 * timeout for this connection, which may be mod_dbd's and opened without
 * one (the setting is per connection and costs nothing to repeat). */
static apr_status_t call_begin(cs_db_t *db, apr_pool_t *p)
{
    int nrows;

    db->error[0] = '\0';
    if (!db->driver || !db->handle) {
        return fail(db, APR_EINVAL, "no database connection");
    }
    if (!db->prepared) {
        db->prepared = apr_hash_make(p);
    }
    if (is_sqlite(db)) {
        /* It returns a row, which the driver reports as a non-zero code:
         * nothing to check. */
        apr_dbd_query(db->driver, db->handle, &nrows,
                      "PRAGMA busy_timeout = " CS_SQLITE_BUSY_MS);
    }
    return APR_SUCCESS;
}

/* fresh: prepare again even if the hash has the statement. */
static apr_status_t stmt_get(apr_dbd_prepared_t **st, cs_db_t *db,
                             const char *label, int fresh)
{
    const cs_statement_t *s;
    int rv;

    *st = fresh ? NULL : apr_hash_get(db->prepared, label,
                                      APR_HASH_KEY_STRING);
    if (*st) {
        return APR_SUCCESS;
    }
    for (s = statements; s->label && strcmp(s->label, label); s++) {
        ;
    }
    if (!s->label) {
        return fail(db, APR_EGENERAL, "no statement %s", label);
    }
    /* The hash's pool lives as long as the hash, so the statement does. */
    rv = apr_dbd_prepare(db->driver, apr_hash_pool_get(db->prepared),
                         db->handle, s->sql, s->label, st);
    if (rv) {
        *st = NULL;
        return db_fail(db, rv, label);
    }
    apr_hash_set(db->prepared, s->label, APR_HASH_KEY_STRING, *st);
    return APR_SUCCESS;
}

/* Prepared statements can die under the store:
 * - the sqlite3 driver prepares with the legacy sqlite3_prepare(), whose
 *   statements fail for good once another connection changed the schema
 *   (created a table, say).  Such a statement is prepared again and run
 *   once more, right away: the connection and its transaction are intact.
 * - the MySQL client reconnects by itself after the connection was lost
 *   (server restart, idle timeout), and the new session knows none of the
 *   old statements.  They are all forgotten, to be prepared again on next
 *   use, but not retried: a transaction did not survive either. */
static int stale(cs_db_t *db, int rv)
{
    const char *msg;

    if (!is_sqlite(db)) {
        /* Unknown statement handler, server gone away, lost connection,
         * statement not prepared, statement closed. */
        if (rv == 1243 || rv == 2006 || rv == 2013 || rv == 2030
            || rv == 2056) {
            apr_hash_clear(db->prepared);
        }
        return 0;
    }
    msg = apr_dbd_error(db->driver, db->handle, rv);
    return msg && strstr(msg, "schema has changed") != NULL;
}

/* A statement without a result; args as apr_dbd_pbquery() takes them. */
static apr_status_t db_exec(int *nrows, cs_db_t *db, apr_pool_t *p,
                            const char *label, const void **args)
{
    apr_dbd_prepared_t *st;
    apr_status_t status;
    int n = 0, rv;

    if ((status = stmt_get(&st, db, label, 0)) != APR_SUCCESS) {
        return status;
    }
    rv = apr_dbd_pbquery(db->driver, p, db->handle, &n, st, args);
    if (rv && stale(db, rv)
        && stmt_get(&st, db, label, 1) == APR_SUCCESS) {
        rv = apr_dbd_pbquery(db->driver, p, db->handle, &n, st, args);
    }
    if (rv) {
        return db_fail(db, rv, label);
    }
    if (nrows) {
        *nrows = n;
    }
    return APR_SUCCESS;
}

/* A query's rows as arrays of strings (NULL for SQL NULL), copied into p:
 * the MySQL driver reuses its buffers from row to row.  Every row is
 * read, so the connection is ready for the next statement. */
static apr_status_t db_rows(apr_array_header_t **rows, cs_db_t *db,
                            apr_pool_t *p, const char *label,
                            const void **args)
{
    apr_dbd_prepared_t *st;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row;
    apr_status_t status;
    const char **vals, *v;
    int rv, i, ncols;

    if ((status = stmt_get(&st, db, label, 0)) != APR_SUCCESS) {
        return status;
    }
    rv = apr_dbd_pbselect(db->driver, p, db->handle, &res, st, 0, args);
    if (rv && stale(db, rv)
        && stmt_get(&st, db, label, 1) == APR_SUCCESS) {
        res = NULL;
        rv = apr_dbd_pbselect(db->driver, p, db->handle, &res, st, 0, args);
    }
    if (rv) {
        return db_fail(db, rv, label);
    }
    *rows = apr_array_make(p, 8, sizeof(const char **));
    ncols = apr_dbd_num_cols(db->driver, res);
    for (;;) {
        row = NULL;
        rv = apr_dbd_get_row(db->driver, p, res, &row, -1);
        if (rv == -1) {
            break;
        }
        if (rv) {
            return db_fail(db, rv, label);
        }
        vals = apr_pcalloc(p, (ncols ? ncols : 1) * sizeof(*vals));
        for (i = 0; i < ncols; i++) {
            v = apr_dbd_get_entry(db->driver, row, i);
            vals[i] = v ? apr_pstrdup(p, v) : NULL;
        }
        APR_ARRAY_PUSH(*rows, const char **) = vals;
    }
    return APR_SUCCESS;
}

#define ROW(rows, i) APR_ARRAY_IDX(rows, i, const char **)

static apr_int64_t to_int64(const char *s)
{
    return s ? apr_atoi64(s) : 0;
}

/* Transactions: any failure (of a statement, or not found, invalid)
 * marks the transaction for rollback before it ends. */
static apr_status_t tx_begin(apr_dbd_transaction_t **t, cs_db_t *db,
                             apr_pool_t *p)
{
    const cs_statement_t *s;
    apr_dbd_prepared_t *st;
    apr_status_t status;
    int rv;

    *t = NULL;
    /* Nothing is prepared inside a transaction: preparing could make the
     * MySQL client reconnect, silently, into a session in autocommit
     * mode, and the rest of the "transaction" would commit piecemeal.  A
     * statement run after a reconnect fails instead. */
    for (s = statements; s->label; s++) {
        if ((status = stmt_get(&st, db, s->label, 0)) != APR_SUCCESS) {
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
    }
    else {
        apr_status_t status = db_fail(db, rv, "begin");

        /* The drivers attach the transaction to the handle even when
         * starting it failed; ending it detaches it. */
        if (*t) {
            apr_dbd_transaction_mode_set(db->driver, *t,
                                         APR_DBD_TRANSACTION_ROLLBACK);
            apr_dbd_transaction_end(db->driver, p, *t);
        }
        *t = NULL;
        return status;
    }
    return APR_SUCCESS;
}

static apr_status_t tx_end(apr_dbd_transaction_t *t, cs_db_t *db,
                           apr_pool_t *p, apr_status_t status)
{
    int rv, nrows;

    if (status != APR_SUCCESS) {
        apr_dbd_transaction_mode_set(db->driver, t,
                                     APR_DBD_TRANSACTION_ROLLBACK);
    }
    rv = apr_dbd_transaction_end(db->driver, p, t);
    if (rv) {
        if (status == APR_SUCCESS) {
            status = db_fail(db, rv, "commit");
        }
        /* A COMMIT that failed (SQLite: still busy) leaves the
         * transaction open on the connection; close it so the next user
         * of the connection starts clean.  Harmless when none is open. */
        apr_dbd_query(db->driver, db->handle, &nrows, "ROLLBACK");
    }
    return status;
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static const char *cut(apr_pool_t *p, const char *s, apr_size_t max)
{
    apr_size_t n;

    if (!s || (n = cs_utf8_prefix(s, max)) == strlen(s)) {
        return s;
    }
    return apr_pstrndup(p, s, n);
}

static apr_status_t check_len(cs_db_t *db, const char *what, const char *s,
                              apr_size_t max, int required)
{
    if (!s) {
        return required ? fail(db, APR_EINVAL, "%s missing", what)
                        : APR_SUCCESS;
    }
    if ((required && !*s) || strlen(s) > max) {
        return fail(db, APR_EINVAL, "%s must be 1 to %" APR_SIZE_T_FMT
                    " bytes", what, max);
    }
    return APR_SUCCESS;
}

static apr_int64_t now_sec(void)
{
    return apr_time_sec(apr_time_now());
}

/* Takes the next sequence number; from here until the transaction ends
 * the counter row is locked, so seqs commit in order. */
static apr_status_t seq_next(apr_int64_t *seq, cs_db_t *db, apr_pool_t *p)
{
    apr_array_header_t *rows;
    apr_status_t status;
    int nrows = 0;

    if ((status = db_exec(&nrows, db, p, "cs_seq_next", NULL))) {
        return status;
    }
    if (nrows != 1) {
        return fail(db, APR_EGENERAL, "the sequence counter is missing "
                    "(cs_store_schema() not run?)");
    }
    if ((status = db_rows(&rows, db, p, "cs_seq_get", NULL))) {
        return status;
    }
    if (rows->nelts != 1 || !ROW(rows, 0)[0]) {
        return fail(db, APR_EGENERAL, "the sequence counter is missing");
    }
    *seq = to_int64(ROW(rows, 0)[0]);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

static apr_status_t counter_exists(int *exists, cs_db_t *db, apr_pool_t *p)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row;
    int rv;

    *exists = 0;
    rv = apr_dbd_select(db->driver, p, db->handle, &res,
                        "SELECT value FROM cs_counter WHERE name = 'seq'", 0);
    if (rv) {
        return db_fail(db, rv, "schema: counter");
    }
    for (;;) {
        row = NULL;
        rv = apr_dbd_get_row(db->driver, p, res, &row, -1);
        if (rv == -1) {
            break;
        }
        if (rv) {
            return db_fail(db, rv, "schema: counter");
        }
        *exists = 1;
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_schema(cs_db_t *db, apr_pool_t *p)
{
    apr_status_t status;
    int i, rv = 0, nrows, attempt, exists;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (is_sqlite(db)) {
        /* Readers never wait for the writer, nor it for them, and the
         * setting stays with the file.  Returns a row: nothing to check. */
        apr_dbd_query(db->driver, db->handle, &nrows,
                      "PRAGMA journal_mode = WAL");
    }
    /* Another process creating the same tables at the same moment can
     * make a statement fail once (SQLite: the schema changed under it);
     * the next attempt finds the tables there. */
    for (attempt = 0; attempt < 3; attempt++) {
        for (i = 0; schema_ddl[i]; i++) {
            if ((rv = apr_dbd_query(db->driver, db->handle, &nrows,
                                    schema_ddl[i])) != 0) {
                break;
            }
        }
        if (!schema_ddl[i]) {
            break;
        }
        apr_sleep(apr_time_from_msec(50 * (attempt + 1)));
    }
    if (rv) {
        return db_fail(db, rv, "schema");
    }
    if ((status = counter_exists(&exists, db, p)) != APR_SUCCESS) {
        return status;
    }
    if (!exists) {
        rv = apr_dbd_query(db->driver, db->handle, &nrows,
                           "INSERT INTO cs_counter (name, value)"
                           " VALUES ('seq', 0)");
        if (rv) {
            /* Fine if a racing process inserted it first. */
            if ((status = counter_exists(&exists, db, p)) != APR_SUCCESS) {
                return status;
            }
            if (!exists) {
                db->error[0] = '\0';
                return db_fail(db, rv, "schema: seeding the counter");
            }
        }
    }
    db->error[0] = '\0';
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Domains and the change feed                                         */
/* ------------------------------------------------------------------ */

static apr_status_t check_bundle(cs_db_t *db, const cs_bundle_t *b)
{
    apr_status_t status;

    if ((status = check_len(db, "domain", b->domain, CS_MAX_DOMAIN, 1))
        || (status = check_len(db, "state", b->state, CS_MAX_WORD, 0))
        || (status = check_len(db, "serial", b->serial, CS_MAX_TOKEN, 0))
        || (status = check_len(db, "key_type", b->key_type, CS_MAX_WORD, 0))
        || (status = check_len(db, "chain_pem", b->chain_pem, CS_MAX_TEXT,
                               0))
        || (status = check_len(db, "key_cms", b->key_cms, CS_MAX_TEXT, 0))) {
        return status;
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_put_bundle(cs_db_t *db, apr_pool_t *p, cs_bundle_t *b,
                                 const char *actor)
{
    apr_dbd_transaction_t *t;
    apr_array_header_t *rows = NULL;
    apr_status_t status;
    apr_int64_t seq = 0, updated;
    const char *state, *error;
    const void *args[12];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (!b) {
        return fail(db, APR_EINVAL, "no bundle");
    }
    if ((status = check_bundle(db, b)) != APR_SUCCESS) {
        return status;
    }
    state = b->state ? b->state : "active";
    error = cut(p, b->last_error, CS_MAX_ERROR);
    actor = cut(p, actor, CS_MAX_ACTOR);
    updated = b->updated ? b->updated : now_sec();

    if ((status = tx_begin(&t, db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = seq_next(&seq, db, p)) == APR_SUCCESS) {
        args[0] = b->domain;
        status = db_rows(&rows, db, p, "cs_dom_serial", args);
    }
    if (status == APR_SUCCESS) {
        args[0] = state;
        args[1] = b->key_type;
        args[2] = &seq;
        args[3] = b->serial;
        args[4] = &b->not_before;
        args[5] = &b->not_after;
        args[6] = b->chain_pem;
        args[7] = b->key_cms;
        args[8] = error;
        args[9] = &updated;
        args[10] = actor;
        args[11] = b->domain;
        status = db_exec(NULL, db, p, rows->nelts ? "cs_dom_update"
                                                  : "cs_dom_insert", args);
    }
    if (status == APR_SUCCESS) {
        args[0] = &seq;
        args[1] = b->domain;
        args[2] = "upsert";
        args[3] = b->serial;
        args[4] = &b->not_after;
        args[5] = actor;
        args[6] = &updated;
        status = db_exec(NULL, db, p, "cs_chg_insert", args);
    }
    if ((status = tx_end(t, db, p, status)) == APR_SUCCESS) {
        b->seq = seq;
    }
    return status;
}

apr_status_t cs_store_set_error(cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *error)
{
    apr_dbd_transaction_t *t;
    apr_array_header_t *rows = NULL;
    apr_status_t status;
    apr_int64_t now = now_sec(), zero = 0;
    const char *state;
    const void *args[12];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    error = cut(p, error, CS_MAX_ERROR);

    if ((status = tx_begin(&t, db, p)) != APR_SUCCESS) {
        return status;
    }
    /* The counter's lock without a new seq: this is no change to what
     * proxies serve, but it must not race put_bundle's insert. */
    if ((status = db_exec(NULL, db, p, "cs_seq_lock", NULL))
        == APR_SUCCESS) {
        args[0] = domain;
        status = db_rows(&rows, db, p, "cs_dom_serial", args);
    }
    if (status == APR_SUCCESS) {
        /* No error: back to what the domain's certificate says. */
        state = error ? "error"
                      : (rows->nelts && ROW(rows, 0)[0]) ? "active"
                                                         : "pending";
        if (rows->nelts) {
            args[0] = state;
            args[1] = error;
            args[2] = &now;
            args[3] = domain;
            status = db_exec(NULL, db, p, "cs_dom_error", args);
        }
        else {
            args[0] = state;
            args[1] = NULL;
            args[2] = &zero;
            args[3] = NULL;
            args[4] = &zero;
            args[5] = &zero;
            args[6] = NULL;
            args[7] = NULL;
            args[8] = error;
            args[9] = &now;
            args[10] = NULL;
            args[11] = domain;
            status = db_exec(NULL, db, p, "cs_dom_insert", args);
        }
    }
    return tx_end(t, db, p, status);
}

apr_status_t cs_store_delete(cs_db_t *db, apr_pool_t *p, const char *domain,
                             const char *actor, apr_int64_t *seq)
{
    apr_dbd_transaction_t *t;
    apr_status_t status;
    apr_int64_t s = 0, now = now_sec(), zero = 0;
    const void *args[7];
    int nrows = 0;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    actor = cut(p, actor, CS_MAX_ACTOR);

    if ((status = tx_begin(&t, db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = seq_next(&s, db, p)) == APR_SUCCESS) {
        args[0] = domain;
        status = db_exec(&nrows, db, p, "cs_dom_delete", args);
    }
    if (status == APR_SUCCESS && nrows == 0) {
        /* Rolling back returns the seq too: no gap in the feed. */
        status = fail(db, APR_NOTFOUND, "unknown domain %s", domain);
    }
    if (status == APR_SUCCESS) {
        args[0] = &s;
        args[1] = domain;
        args[2] = "delete";
        args[3] = NULL;
        args[4] = &zero;
        args[5] = actor;
        args[6] = &now;
        status = db_exec(NULL, db, p, "cs_chg_insert", args);
    }
    if ((status = tx_end(t, db, p, status)) == APR_SUCCESS && seq) {
        *seq = s;
    }
    return status;
}

/* One cs_domains row, columns as in DOMAIN_COLS (+ chain_pem, key_cms). */
static void bundle_from_row(cs_bundle_t *b, const char **r, int full)
{
    memset(b, 0, sizeof(*b));
    b->domain = r[0];
    b->seq = to_int64(r[1]);
    b->state = r[2];
    b->serial = r[3];
    b->not_before = to_int64(r[4]);
    b->not_after = to_int64(r[5]);
    b->key_type = r[6];
    b->last_error = r[7];
    b->updated = to_int64(r[8]);
    if (full) {
        b->chain_pem = r[9];
        b->key_cms = r[10];
    }
}

apr_status_t cs_store_get(cs_bundle_t **b, cs_db_t *db, apr_pool_t *p,
                          const char *domain)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[1];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    args[0] = domain;
    if ((status = db_rows(&rows, db, p, "cs_dom_get", args))) {
        return status;
    }
    if (!rows->nelts) {
        return fail(db, APR_NOTFOUND, "unknown domain %s", domain);
    }
    *b = apr_palloc(p, sizeof(**b));
    bundle_from_row(*b, ROW(rows, 0), 1);
    return APR_SUCCESS;
}

apr_status_t cs_store_list(apr_array_header_t **domains, cs_db_t *db,
                           apr_pool_t *p, const char *after, int limit)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[2];
    int i;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (limit < 1) {
        return fail(db, APR_EINVAL, "limit must be at least 1");
    }
    /* Every name sorts after "". */
    args[0] = after ? after : "";
    args[1] = &limit;
    if ((status = db_rows(&rows, db, p, "cs_dom_list", args))) {
        return status;
    }
    *domains = apr_array_make(p, rows->nelts ? rows->nelts : 1,
                              sizeof(cs_bundle_t));
    for (i = 0; i < rows->nelts; i++) {
        bundle_from_row(apr_array_push(*domains), ROW(rows, i), 0);
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_changes(apr_array_header_t **changes,
                              apr_int64_t *next, int *more, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t since, int limit)
{
    apr_array_header_t *rows;
    apr_status_t status;
    cs_change_t *c;
    const char **r;
    const void *args[2];
    int i, fetch;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if (limit < 1) {
        return fail(db, APR_EINVAL, "limit must be at least 1");
    }
    if (limit > 1000000) {
        limit = 1000000;
    }
    /* One more row than asked for tells whether more follow. */
    fetch = limit + 1;
    args[0] = &since;
    args[1] = &fetch;
    if ((status = db_rows(&rows, db, p, "cs_chg_list", args))) {
        return status;
    }
    *changes = apr_array_make(p, limit < rows->nelts ? limit
                                                     : rows->nelts + 1,
                              sizeof(cs_change_t));
    *next = since;
    for (i = 0; i < rows->nelts && i < limit; i++) {
        r = ROW(rows, i);
        c = apr_array_push(*changes);
        c->seq = to_int64(r[0]);
        c->domain = r[1];
        c->op = r[2];
        c->serial = r[3];
        c->not_after = to_int64(r[4]);
        *next = c->seq;
    }
    *more = rows->nelts > limit;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Restart leases                                                      */
/* ------------------------------------------------------------------ */

static apr_status_t lease_id_make(const char **id, cs_db_t *db,
                                  apr_pool_t *p)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    char *s;
    apr_status_t rv;
    int i;

    if ((rv = apr_generate_random_bytes(raw, sizeof(raw))) != APR_SUCCESS) {
        return fail(db, rv, "no random bytes for a lease id");
    }
    s = apr_palloc(p, 2 * sizeof(raw) + 1);
    for (i = 0; i < (int)sizeof(raw); i++) {
        s[2 * i] = hex[raw[i] >> 4];
        s[2 * i + 1] = hex[raw[i] & 0xF];
    }
    s[2 * sizeof(raw)] = '\0';
    *id = s;
    return APR_SUCCESS;
}

/* The pool's row must exist before a transaction can lock it.  Inserted
 * outside the transaction: a duplicate from a racing process is fine
 * there, while inside it would doom the transaction. */
static apr_status_t pool_ensure(cs_db_t *db, apr_pool_t *p, const char *pool)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[1];

    args[0] = pool;
    if ((status = db_rows(&rows, db, p, "cs_pool_get", args))) {
        return status;
    }
    if (!rows->nelts
        && db_exec(NULL, db, p, "cs_pool_insert", args) != APR_SUCCESS) {
        /* Taken as a racing insert; the lock below tells if it was not. */
        db->error[0] = '\0';
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_lease_acquire(const char **lease_id,
                                    apr_int64_t *expires, int *granted,
                                    apr_int64_t *retry_after, cs_db_t *db,
                                    apr_pool_t *p, const char *pool,
                                    const char *host, int ttl,
                                    int max_unavailable, apr_int64_t now)
{
    apr_dbd_transaction_t *t;
    apr_array_header_t *rows = NULL;
    apr_status_t status;
    apr_int64_t until = now + ttl, first = 0, count = 0;
    const char *id = NULL;
    const void *args[4];
    int nrows = 0, got = 0;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = check_len(db, "host", host, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    if (ttl < 1 || max_unavailable < 1) {
        return fail(db, APR_EINVAL, "ttl and max_unavailable must be at "
                    "least 1");
    }
    if ((status = pool_ensure(db, p, pool)) != APR_SUCCESS) {
        return status;
    }

    if ((status = tx_begin(&t, db, p)) != APR_SUCCESS) {
        return status;
    }
    /* Lock the pool's row first: every read below then sees every lease
     * committed before us, and nobody else decides until we commit. */
    args[0] = pool;
    if ((status = db_exec(&nrows, db, p, "cs_pool_lock", args))
        == APR_SUCCESS && nrows != 1) {
        status = fail(db, APR_EGENERAL, "pool %s has no row", pool);
    }
    if (status == APR_SUCCESS) {
        args[0] = pool;
        args[1] = &now;
        status = db_exec(NULL, db, p, "cs_lease_expire", args);
    }
    /* A host asking again (a retried request, a restarted daemon) gets
     * its live lease back, renewed: it already holds that slot. */
    if (status == APR_SUCCESS) {
        args[0] = pool;
        args[1] = host;
        status = db_rows(&rows, db, p, "cs_lease_mine", args);
    }
    if (status == APR_SUCCESS && rows->nelts) {
        id = ROW(rows, 0)[0];
        args[0] = &until;
        args[1] = id;
        status = db_exec(NULL, db, p, "cs_lease_renew", args);
        got = 1;
    }
    else if (status == APR_SUCCESS) {
        args[0] = pool;
        if ((status = db_rows(&rows, db, p, "cs_lease_count", args))
            == APR_SUCCESS && rows->nelts) {
            count = to_int64(ROW(rows, 0)[0]);
            first = to_int64(ROW(rows, 0)[1]);
        }
        if (status == APR_SUCCESS && count < max_unavailable) {
            if ((status = lease_id_make(&id, db, p)) == APR_SUCCESS) {
                args[0] = id;
                args[1] = pool;
                args[2] = host;
                args[3] = &until;
                status = db_exec(NULL, db, p, "cs_lease_insert", args);
                got = 1;
            }
        }
    }
    if ((status = tx_end(t, db, p, status)) != APR_SUCCESS) {
        return status;
    }
    *granted = got;
    if (got) {
        *lease_id = id;
        *expires = until;
    }
    else {
        *lease_id = NULL;
        *retry_after = first - now > 1 ? first - now : 1;
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_lease_release(cs_db_t *db, apr_pool_t *p,
                                    const char *pool, const char *lease_id)
{
    apr_status_t status;
    apr_int64_t now = now_sec();
    const void *args[3];
    int nrows = 0;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = check_len(db, "lease", lease_id, CS_MAX_TOKEN, 1))) {
        return status;
    }
    /* An expired lease's row may linger until the pool's next acquire;
     * it is not live, so it is not found. */
    args[0] = pool;
    args[1] = lease_id;
    args[2] = &now;
    if ((status = db_exec(&nrows, db, p, "cs_lease_delete", args))) {
        return status;
    }
    if (nrows == 0) {
        return fail(db, APR_NOTFOUND, "no live lease %s in pool %s",
                    lease_id, pool);
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_leases(apr_array_header_t **leases, cs_db_t *db,
                             apr_pool_t *p, const char *pool,
                             apr_int64_t now)
{
    apr_array_header_t *rows;
    apr_status_t status;
    cs_lease_t *l;
    const void *args[2];
    int i;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "pool", pool, CS_MAX_TOKEN, 1))) {
        return status;
    }
    args[0] = pool;
    args[1] = &now;
    if ((status = db_rows(&rows, db, p, "cs_lease_list", args))) {
        return status;
    }
    *leases = apr_array_make(p, rows->nelts ? rows->nelts : 1,
                             sizeof(cs_lease_t));
    for (i = 0; i < rows->nelts; i++) {
        l = apr_array_push(*leases);
        l->id = ROW(rows, i)[0];
        l->host = ROW(rows, i)[1];
        l->expires = to_int64(ROW(rows, i)[2]);
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Host reports                                                        */
/* ------------------------------------------------------------------ */

apr_status_t cs_store_host_report(cs_db_t *db, apr_pool_t *p,
                                  const char *host, const char *pool,
                                  apr_int64_t seq, const char *state,
                                  const char *failed_json, apr_int64_t now)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[6];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "host", host, CS_MAX_DOMAIN, 1))
        || (status = check_len(db, "pool", pool, CS_MAX_TOKEN, 1))
        || (status = check_len(db, "state", state, 32, 1))
        || (status = check_len(db, "failed", failed_json, CS_MAX_JSON,
                               0))) {
        return status;
    }
    if (!failed_json) {
        failed_json = "{}";
    }
    /* Update or insert; no transaction needed (one row, the host's own).
     * The count decides, not the UPDATE's row count, which MySQL reports
     * as 0 when a repeated report changes nothing. */
    args[0] = host;
    if ((status = db_rows(&rows, db, p, "cs_host_count", args))) {
        return status;
    }
    if (!rows->nelts || to_int64(ROW(rows, 0)[0]) == 0) {
        args[0] = host;
        args[1] = pool;
        args[2] = &seq;
        args[3] = state;
        args[4] = failed_json;
        args[5] = &now;
        if (db_exec(NULL, db, p, "cs_host_insert", args) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* The same host's report racing this one inserted first. */
        db->error[0] = '\0';
    }
    args[0] = pool;
    args[1] = &seq;
    args[2] = state;
    args[3] = failed_json;
    args[4] = &now;
    args[5] = host;
    return db_exec(NULL, db, p, "cs_host_update", args);
}

apr_status_t cs_store_domain_hosts(apr_array_header_t **hosts, cs_db_t *db,
                                   apr_pool_t *p, const char *domain)
{
    apr_array_header_t *rows;
    apr_status_t status;
    cs_host_serving_t *h;
    const char **r;
    const void *args[1];
    int i;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    args[0] = domain;
    if ((status = db_rows(&rows, db, p, "cs_host_serving", args))) {
        return status;
    }
    *hosts = apr_array_make(p, rows->nelts ? rows->nelts : 1,
                            sizeof(cs_host_serving_t));
    for (i = 0; i < rows->nelts; i++) {
        r = ROW(rows, i);
        h = apr_array_push(*hosts);
        h->host = r[0];
        h->pool = r[1];
        h->seq = to_int64(r[2]);
        h->state = r[3];
        h->failed_json = r[4];
        h->reported = to_int64(r[5]);
        h->serial = r[6];
    }
    return APR_SUCCESS;
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
/* ACME: issuer queue, challenges, accounts, limiter                   */
/* ------------------------------------------------------------------ */

apr_status_t cs_store_job_enqueue(cs_db_t *db, apr_pool_t *p,
                                  const char *domain, const char *key_type,
                                  apr_int64_t now)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[4];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))
        || (status = check_len(db, "key_type", key_type, CS_MAX_WORD, 1))) {
        return status;
    }
    args[0] = domain;
    if ((status = db_rows(&rows, db, p, "cs_job_get", args))) {
        return status;
    }
    if (!rows->nelts) {
        args[0] = domain;
        args[1] = key_type;
        args[2] = &now;
        args[3] = &now;
        if (db_exec(NULL, db, p, "cs_job_insert", args) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
        /* A racing PUT of the same domain inserted first. */
        db->error[0] = '\0';
    }
    args[0] = key_type;
    args[1] = &now;
    args[2] = &now;
    args[3] = domain;
    return db_exec(NULL, db, p, "cs_job_requeue", args);
}

apr_status_t cs_store_job_get(cs_job_t **job, cs_db_t *db, apr_pool_t *p,
                              const char *domain)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const char **r;
    const void *args[1];
    cs_job_t *j;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "domain", domain, CS_MAX_DOMAIN, 1))) {
        return status;
    }
    args[0] = domain;
    if ((status = db_rows(&rows, db, p, "cs_job_get", args))) {
        return status;
    }
    if (!rows->nelts) {
        return fail(db, APR_NOTFOUND, "no ACME job for %s", domain);
    }
    r = ROW(rows, 0);
    j = apr_pcalloc(p, sizeof(*j));
    j->domain = r[0];
    j->key_type = r[1];
    j->state = r[2];
    j->attempts = (int)to_int64(r[3]);
    j->next_at = to_int64(r[4]);
    j->owner = r[5];
    j->lease_until = to_int64(r[6]);
    j->last_error = r[7];
    j->renew_at = to_int64(r[8]);
    j->updated = to_int64(r[9]);
    *job = j;
    return APR_SUCCESS;
}

apr_status_t cs_store_job_due(apr_array_header_t **domains, cs_db_t *db,
                              apr_pool_t *p, apr_int64_t now, int limit)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[3];
    int i;

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = &now;
    args[1] = &now;
    args[2] = &limit;
    if ((status = db_rows(&rows, db, p, "cs_job_due", args))) {
        return status;
    }
    *domains = apr_array_make(p, rows->nelts + 1, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        APR_ARRAY_PUSH(*domains, const char *) = ROW(rows, i)[0];
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_job_claim(int *claimed, cs_db_t *db, apr_pool_t *p,
                                const char *domain, const char *owner,
                                apr_int64_t now, int lease)
{
    apr_status_t status;
    apr_int64_t until = now + lease;
    const void *args[5];
    int nrows = 0;

    *claimed = 0;
    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "owner", owner, CS_MAX_TOKEN, 1))) {
        return status;
    }
    args[0] = owner;
    args[1] = &until;
    args[2] = domain;
    args[3] = &now;
    args[4] = &now;
    if ((status = db_exec(&nrows, db, p, "cs_job_claim", args))) {
        return status;
    }
    *claimed = nrows == 1;
    return APR_SUCCESS;
}

apr_status_t cs_store_job_finish(cs_db_t *db, apr_pool_t *p,
                                 const cs_job_t *job, const char *owner)
{
    apr_status_t status;
    apr_int64_t attempts = job->attempts, now = now_sec();
    const void *args[8];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = job->state;
    args[1] = &attempts;
    args[2] = &job->next_at;
    args[3] = cut(p, job->last_error, CS_MAX_ERROR);
    args[4] = &job->renew_at;
    args[5] = &now;
    args[6] = job->domain;
    args[7] = owner;
    return db_exec(NULL, db, p, "cs_job_finish", args);
}

apr_status_t cs_store_job_delete(cs_db_t *db, apr_pool_t *p,
                                 const char *domain)
{
    apr_status_t status;
    const void *args[1];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = domain;
    return db_exec(NULL, db, p, "cs_job_delete", args);
}

apr_status_t cs_store_job_count(apr_int64_t *count, cs_db_t *db,
                                apr_pool_t *p, const char *state)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[1];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = state;
    if ((status = db_rows(&rows, db, p, "cs_job_count", args))) {
        return status;
    }
    *count = rows->nelts ? to_int64(ROW(rows, 0)[0]) : 0;
    return APR_SUCCESS;
}

apr_status_t cs_store_challenge_put(cs_db_t *db, apr_pool_t *p,
                                    const char *token, const char *domain,
                                    const char *keyauth, apr_int64_t expires)
{
    apr_status_t status;
    apr_int64_t now = now_sec();
    const void *args[4];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "token", token, 128, 1))
        || (status = check_len(db, "keyauth", keyauth, 255, 1))) {
        return status;
    }
    /* Drops this token if a retried order left it, and stale ones. */
    args[0] = token;
    args[1] = &now;
    if ((status = db_exec(NULL, db, p, "cs_chal_delete", args))) {
        return status;
    }
    args[0] = token;
    args[1] = domain;
    args[2] = keyauth;
    args[3] = &expires;
    return db_exec(NULL, db, p, "cs_chal_insert", args);
}

apr_status_t cs_store_challenge_get(const char **keyauth, cs_db_t *db,
                                    apr_pool_t *p, const char *token,
                                    apr_int64_t now)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[2];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "token", token, 128, 1))) {
        return status;
    }
    args[0] = token;
    args[1] = &now;
    if ((status = db_rows(&rows, db, p, "cs_chal_get", args))) {
        return status;
    }
    if (!rows->nelts || !ROW(rows, 0)[0]) {
        return fail(db, APR_NOTFOUND, "no challenge in progress");
    }
    *keyauth = ROW(rows, 0)[0];
    return APR_SUCCESS;
}

apr_status_t cs_store_challenge_delete(cs_db_t *db, apr_pool_t *p,
                                       const char *token)
{
    apr_status_t status;
    apr_int64_t now = now_sec();
    const void *args[2];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = token;
    args[1] = &now;
    return db_exec(NULL, db, p, "cs_chal_delete", args);
}

apr_status_t cs_store_account_get(const char **kid, const char **key_cms,
                                  cs_db_t *db, apr_pool_t *p,
                                  const char *directory)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[1];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "directory", directory, 255, 1))) {
        return status;
    }
    args[0] = directory;
    if ((status = db_rows(&rows, db, p, "cs_acct_get", args))) {
        return status;
    }
    if (!rows->nelts) {
        return fail(db, APR_NOTFOUND, "no ACME account for %s", directory);
    }
    *kid = ROW(rows, 0)[0];
    *key_cms = ROW(rows, 0)[1];
    return APR_SUCCESS;
}

apr_status_t cs_store_account_put(cs_db_t *db, apr_pool_t *p,
                                  const char *directory, const char *kid,
                                  const char *key_cms, int insert)
{
    apr_status_t status;
    apr_int64_t now = now_sec();
    const void *args[4];

    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "directory", directory, 255, 1))
        || (status = check_len(db, "kid", kid, 255, 0))
        || (status = check_len(db, "key_cms", key_cms, CS_MAX_TEXT, 1))) {
        return status;
    }
    if (insert) {
        args[0] = directory;
        args[1] = kid;
        args[2] = key_cms;
        args[3] = &now;
        return db_exec(NULL, db, p, "cs_acct_insert", args);
    }
    args[0] = kid;
    args[1] = key_cms;
    args[2] = &now;
    args[3] = directory;
    return db_exec(NULL, db, p, "cs_acct_update", args);
}

/* The limiter's row must exist before a transaction locks it (as for
 * pools: inserted outside, a racing duplicate is fine). */
static apr_status_t limiter_ensure(cs_db_t *db, apr_pool_t *p,
                                   const char *name)
{
    apr_array_header_t *rows;
    apr_status_t status;
    const void *args[1];

    args[0] = name;
    if ((status = db_rows(&rows, db, p, "cs_lim_get", args))) {
        return status;
    }
    if (!rows->nelts
        && db_exec(NULL, db, p, "cs_lim_insert", args) != APR_SUCCESS) {
        db->error[0] = '\0';
    }
    return APR_SUCCESS;
}

apr_status_t cs_store_rate_take(int *granted, apr_int64_t *retry_after,
                                cs_db_t *db, apr_pool_t *p,
                                const char *name, apr_int64_t now,
                                apr_int64_t window, int limit,
                                apr_int64_t pause_until)
{
    apr_dbd_transaction_t *t;
    apr_array_header_t *rows = NULL;
    apr_status_t status;
    cs_rate_t r;
    const void *args[4];

    *granted = 0;
    *retry_after = 1;
    if ((status = call_begin(db, p)) != APR_SUCCESS) {
        return status;
    }
    if ((status = check_len(db, "limiter", name, 32, 1))) {
        return status;
    }
    if ((status = limiter_ensure(db, p, name)) != APR_SUCCESS) {
        return status;
    }
    if ((status = tx_begin(&t, db, p)) != APR_SUCCESS) {
        return status;
    }
    args[0] = name;
    status = db_exec(NULL, db, p, "cs_lim_lock", args);
    if (status == APR_SUCCESS) {
        status = db_rows(&rows, db, p, "cs_lim_get", args);
    }
    if (status == APR_SUCCESS && rows->nelts != 1) {
        status = fail(db, APR_EGENERAL, "limiter %s has no row", name);
    }
    if (status == APR_SUCCESS) {
        r.window_start = to_int64(ROW(rows, 0)[0]);
        r.count = to_int64(ROW(rows, 0)[1]);
        r.paused_until = to_int64(ROW(rows, 0)[2]);
        if (pause_until > 0) {
            /* The CA said wait: everyone waits (never shortened). */
            if (pause_until > r.paused_until) {
                r.paused_until = pause_until;
            }
        }
        else if (limit > 0) {
            cs_sched_rate_take(&r, granted, retry_after, now, window, limit);
        }
        args[0] = &r.window_start;
        args[1] = &r.count;
        args[2] = &r.paused_until;
        args[3] = name;
        status = db_exec(NULL, db, p, "cs_lim_set", args);
    }
    if ((status = tx_end(t, db, p, status)) != APR_SUCCESS) {
        *granted = 0;
    }
    return status;
}
