/*
 * cs_db.h: the apr_dbd plumbing under cs_store_*(), private to the store.
 *
 * One place for what every store call does with the database: the
 * statement table (by id, for the calls; by label, for mod_dbd), preparing
 * on first use, running a statement with its arguments, reading rows back,
 * transactions, and the few things the sqlite3 and mysql drivers do
 * differently.  The cs_store_*.c files state which statement they run and
 * what they do with its rows.
 *
 * One SQL dialect for both drivers: only types both accept (VARCHAR,
 * BIGINT, TEXT, MEDIUMTEXT), secondary indexes declared as UNIQUE
 * constraints inside CREATE TABLE (CREATE INDEX IF NOT EXISTS is
 * MariaDB-only), no upsert syntax (neither's is the other's), and no
 * reliance on an UPDATE's row count where MySQL would report 0 for a row
 * that matched but did not change.
 *
 * Errors: APR_EGENERAL for a database failure (APR_EAGAIN when it was a
 * lock wait that gave up, which is worth retrying), APR_EINVAL for a value
 * the schema cannot hold, APR_NOTFOUND where cs_store.h says so; the text
 * is in db->error for cs_store_error().  The first failure of a call is
 * the one kept.
 */
#ifndef CS_DB_H
#define CS_DB_H

#include <apr_dbd.h>
#include <apr_pools.h>
#include <apr_tables.h>

#include "cs_store.h"

/* Column limits, checked before a write so both databases refuse the same
 * values (SQLite would store anything; MySQL depends on its sql_mode).
 * They match the DDL in cs_store_schema.c. */
#define CS_MAX_DOMAIN   253
#define CS_MAX_TOKEN    64      /* pool, host, lease id, serial */
#define CS_MAX_WORD     16      /* state, key_type, op */
#define CS_MAX_STATE    32      /* a host's rollout state */
#define CS_MAX_NAME     32      /* a limiter's name */
#define CS_MAX_ACTOR    255
#define CS_MAX_VARCHAR  255     /* directory, kid, keyauth */
#define CS_MAX_CHTOKEN  128     /* an http-01 token */
#define CS_MAX_PROFILE  64      /* an ACME profile name */
#define CS_MAX_TEXT     65535   /* TEXT */
#define CS_MAX_ERROR    4000    /* last_error is truncated, not refused */
/* MEDIUMTEXT holds 16 MiB, but apr_dbd_mysql reads at most 1 MiB of a
 * field back (its default "fldsz"). */
#define CS_MAX_JSON     1048575

/* The statements, by id: cs_store_statements()[id]; their SQL is in
 * cs_store_schema.c, beside the tables. */
typedef enum {
    /* The sequence counter; its row lock orders all domain writes. */
    CS_STMT_SEQ_NEXT, CS_STMT_SEQ_GET, CS_STMT_SEQ_LOCK,
    /* Domains and the change feed. */
    CS_STMT_DOM_GET, CS_STMT_DOM_SERIAL, CS_STMT_DOM_INSERT,
    CS_STMT_DOM_UPDATE, CS_STMT_DOM_ERROR, CS_STMT_DOM_DELETE,
    CS_STMT_DOM_LIST, CS_STMT_CHG_INSERT, CS_STMT_CHG_LIST,
    /* Lease pools, leases, host reports. */
    CS_STMT_POOL_GET, CS_STMT_POOL_INSERT, CS_STMT_POOL_LOCK,
    CS_STMT_LEASE_EXPIRE, CS_STMT_LEASE_COUNT, CS_STMT_LEASE_MINE,
    CS_STMT_LEASE_RENEW, CS_STMT_LEASE_INSERT, CS_STMT_LEASE_DELETE,
    CS_STMT_LEASE_LIST, CS_STMT_HOST_COUNT, CS_STMT_HOST_INSERT,
    CS_STMT_HOST_UPDATE, CS_STMT_HOST_SERVING,
    /* ACME: queue, challenges, accounts, limiters. */
    CS_STMT_JOB_GET, CS_STMT_JOB_INSERT, CS_STMT_JOB_REQUEUE,
    CS_STMT_JOB_DUE, CS_STMT_JOB_CLAIM, CS_STMT_JOB_FINISH,
    CS_STMT_JOB_DELETE, CS_STMT_JOB_COUNT, CS_STMT_CHAL_INSERT,
    CS_STMT_CHAL_GET, CS_STMT_CHAL_DELETE, CS_STMT_ACCT_GET,
    CS_STMT_ACCT_INSERT, CS_STMT_ACCT_UPDATE, CS_STMT_LIM_GET,
    CS_STMT_LIM_INSERT, CS_STMT_LIM_LOCK, CS_STMT_LIM_SET,
    /* Notifications: the outbox (cs_store_notify.c). */
    CS_STMT_NTF_INSERT, CS_STMT_NTF_DUE, CS_STMT_NTF_CLAIM, CS_STMT_NTF_GET,
    CS_STMT_NTF_FINISH, CS_STMT_NTF_EXPIRING, CS_STMT_NTF_PURGE,
    CS_STMT_NTF_COUNT,
    /* tls-alpn-01 challenge certificates in progress. */
    CS_STMT_ALPN_INSERT, CS_STMT_ALPN_GET, CS_STMT_ALPN_DELETE,
    /* On-demand verdicts (cs_store_ondemand.c). */
    CS_STMT_OD_GET, CS_STMT_OD_INSERT, CS_STMT_OD_UPDATE, CS_STMT_OD_PURGE,
    CS_STMT_OD_COUNT,
    /* ACME, several CAs: each CA's health, the job's CA and priority,
     * the limiters as a list (cs_store_acme.c). */
    CS_STMT_CA_GET, CS_STMT_CA_INSERT, CS_STMT_CA_UPDATE, CS_STMT_CA_LIST,
    CS_STMT_JOB_CA_GET, CS_STMT_JOB_CA_SET, CS_STMT_JOB_DUE_PRIO,
    CS_STMT_JOB_PRIO_SET,
    CS_STMT_LIM_LIST,
    /* Metrics: the ACME order counters (cs_store_metrics.c). */
    CS_STMT_ORD_ADD, CS_STMT_ORD_INSERT,
    /* The pool's TLS session ticket keys (cs_store_tkeys.c). */
    CS_STMT_TK_LIST, CS_STMT_TK_INSERT, CS_STMT_TK_PURGE,
    /* The scheduler at 1M jobs (cs_store_job_due_prio()). */
    CS_STMT_JOB_DUE_WINDOW,
    CS_STMT_COUNT
} cs_stmt_e;

/* A row: its columns as strings, NULL for SQL NULL, copied into the
 * call's pool. */
typedef const char **cs_db_row_t;

/** A cs_domains row without the bulky columns (DOMAIN_COLS of
 * cs_store_domains.c) into the cs_bundle_t at item. */
void cs_db_summary_from_row(void *item, cs_db_row_t r);

/* Every public call starts here: clears db->error, makes the statement
 * hash if there is none, and sets the connection up for this driver
 * (SQLite: a busy timeout; mod_dbd may have opened it without one). */
apr_status_t cs_db_enter(cs_db_t *db, apr_pool_t *p);

/* cs_db_enter(), then domain must be 1 to CS_MAX_DOMAIN bytes: the start
 * of every call about one domain. */
apr_status_t cs_db_enter_domain(cs_db_t *db, apr_pool_t *p,
                                const char *domain);

/*
 * Run a statement.  The arguments follow stmt, one for each placeholder
 * of its SQL, in order, as apr_dbd_pvbquery() takes them: a const char *
 * (NULL for SQL NULL) for %s, a pointer to an apr_int64_t for %lld, to an
 * int for %d.  A statement whose prepared form went stale is prepared
 * again (see cs_db.c).
 *
 * cs_db_exec: no result; *nrows (if not NULL) the rows it changed.
 * cs_db_row:  the first row, or *row NULL if there is none.
 * cs_db_rows: every row, each turned by from_row into an item of size
 *             bytes (zeroed first) of the array *items.
 * Every row is read, so the connection is free for the next statement.
 */
typedef void cs_db_from_row_fn(void *item, cs_db_row_t row);

apr_status_t cs_db_exec(int *nrows, cs_db_t *db, apr_pool_t *p,
                        cs_stmt_e stmt, ...);
apr_status_t cs_db_row(cs_db_row_t *row, cs_db_t *db, apr_pool_t *p,
                       cs_stmt_e stmt, ...);
apr_status_t cs_db_rows(apr_array_header_t **items, cs_db_t *db,
                        apr_pool_t *p, apr_size_t size,
                        cs_db_from_row_fn *from_row, cs_stmt_e stmt, ...);

/* A row that a transaction will lock (a lease pool's, a limiter's) must
 * exist before the transaction starts: select it by key with get, insert
 * it with insert if missing.  Inserted outside the transaction: a
 * duplicate from a racing process is fine there (the lock taken later
 * tells if the row is really missing), inside it would doom the
 * transaction.  Both statements take the key as their one argument. */
apr_status_t cs_db_ensure_row(cs_db_t *db, apr_pool_t *p, cs_stmt_e get,
                              cs_stmt_e insert, const char *key);

/* Transactions.  Every statement is prepared before the transaction
 * starts.  cs_db_tx_end() commits if status is APR_SUCCESS, else rolls
 * back, and returns status (or the commit's failure). */
apr_status_t cs_db_tx_begin(apr_dbd_transaction_t **t, cs_db_t *db,
                            apr_pool_t *p);
apr_status_t cs_db_tx_end(apr_dbd_transaction_t *t, cs_db_t *db,
                          apr_pool_t *p, apr_status_t status);

/*
 * A transaction that is run again when it conflicts: begin, body, end,
 * and if the database rolled it back as a deadlock or (Galera) a
 * certification conflict (db->conflict), again from the start, after a
 * short random pause, at most a few times (logged: CS00120 each time,
 * CS00121 when it gives up and returns APR_EAGAIN).  body runs inside the
 * transaction and must set every output afresh each time, as a run that
 * was rolled back leaves nothing behind.  Any other failure, and success,
 * return at once.
 */
typedef apr_status_t cs_db_tx_fn(cs_db_t *db, apr_pool_t *p, void *baton);
apr_status_t cs_db_tx_run(cs_db_t *db, apr_pool_t *p, const char *what,
                          cs_db_tx_fn *body, void *baton);

/* SQL without parameters and without a prepared statement, for the
 * schema, which runs before the tables exist: cs_db_run() returns the
 * driver's code (0: done); cs_db_select() reads the rows of a query. */
int cs_db_run(cs_db_t *db, const char *sql);
apr_status_t cs_db_select(apr_array_header_t **rows, cs_db_t *db,
                          apr_pool_t *p, const char *sql, const char *what);

/* Settings that belong to the database rather than to the connection
 * (SQLite: the WAL journal, so readers never wait on the writer). */
void cs_db_setup_file(cs_db_t *db);

/* Record a failure: the driver's code rv of what (mapped to APR_EAGAIN
 * when worth a retry, else APR_EGENERAL), or a status with a message.
 * The first failure of a call is kept; cs_db_forget() drops it, for a
 * failure that was expected (a racing insert). */
apr_status_t cs_db_driver_fail(cs_db_t *db, int rv, const char *what);
apr_status_t cs_db_fail(cs_db_t *db, apr_status_t status, const char *fmt,
                        ...)
    __attribute__((format(printf, 3, 4)));
void cs_db_forget(cs_db_t *db);

/* Values: s must be 1 to max bytes (required) or NULL or at most max
 * (not required), else APR_EINVAL naming what; cs_db_cut() shortens s
 * to at most max bytes at a UTF-8 character boundary. */
apr_status_t cs_db_check_len(cs_db_t *db, const char *what, const char *s,
                             apr_size_t max, int required);
const char *cs_db_cut(apr_pool_t *p, const char *s, apr_size_t max);

/* A column as a number (NULL: 0); the wall clock in unix seconds. */
apr_int64_t cs_db_int(const char *s);
apr_int64_t cs_db_now(void);

#endif /* CS_DB_H */
