/*
 * cs_store_schema.c: the database's shape: the tables, which
 * cs_store_schema() creates, the columns added since (schema_columns: a
 * database made by an older version gains them), and every statement the
 * store runs on them, in one dialect for the sqlite3 and mysql drivers
 * (see cs_db.h).
 */
#include <apr_dbd.h>
#include <apr_time.h>

#include "cs_db.h"
#include "cs_store.h"

/* ------------------------------------------------------------------ */
/* Tables                                                              */
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
    " profile VARCHAR(64),"
    " UNIQUE (next_at, domain))",

    "CREATE TABLE IF NOT EXISTS cs_acme_challenges ("
    " token VARCHAR(128) NOT NULL PRIMARY KEY,"
    " domain VARCHAR(253) NOT NULL,"
    " keyauth VARCHAR(255) NOT NULL,"
    " expires BIGINT NOT NULL)",

    /* tls-alpn-01: the challenge certificate of a domain's order in
     * progress, its key sealed to the wrapping certificates. */
    "CREATE TABLE IF NOT EXISTS cs_acme_tlsalpn ("
    " domain VARCHAR(253) NOT NULL PRIMARY KEY,"
    " cert_pem TEXT NOT NULL,"
    " key_cms TEXT NOT NULL,"
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

    /* Notifications: the outbox, one row per event and sink, due at
     * next_at (cs_notify.h).  UNIQUE (domain, type, serial, id): the
     * index of the expiry scan's "told already". */
    "CREATE TABLE IF NOT EXISTS cs_notify_events ("
    " id VARCHAR(64) NOT NULL,"
    " sink VARCHAR(16) NOT NULL,"
    " type VARCHAR(32) NOT NULL,"
    " domain VARCHAR(253) NOT NULL,"
    " serial VARCHAR(64),"
    " not_after BIGINT NOT NULL,"
    " body TEXT NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " attempts BIGINT NOT NULL,"
    " next_at BIGINT NOT NULL,"
    " owner VARCHAR(64),"
    " lease_until BIGINT NOT NULL,"
    " last_error TEXT,"
    " created BIGINT NOT NULL,"
    " updated BIGINT NOT NULL,"
    " PRIMARY KEY (id, sink),"
    " UNIQUE (next_at, id, sink),"
    " UNIQUE (domain, type, serial, id, sink))",

    /* On-demand issuance: the verdict on each name a proxy asked for
     * (cs_ondemand.h), until it expires. */
    "CREATE TABLE IF NOT EXISTS cs_ondemand ("
    " name VARCHAR(253) NOT NULL PRIMARY KEY,"
    " verdict VARCHAR(16) NOT NULL,"
    " expires BIGINT NOT NULL,"
    " reason VARCHAR(255),"
    " asked BIGINT NOT NULL,"
    " UNIQUE (expires, name))",
    /* ACME, several CAs: the health of each CA of the issuer, by the name
     * the configuration gives it, as every instance last saw it. */
    "CREATE TABLE IF NOT EXISTS cs_acme_cas ("
    " name VARCHAR(32) NOT NULL PRIMARY KEY,"
    " url VARCHAR(255) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " failures BIGINT NOT NULL,"
    " last_error TEXT,"
    " next_retry BIGINT NOT NULL,"
    " last_ok BIGINT NOT NULL,"
    " updated BIGINT NOT NULL)",

    /* Metrics: ACME orders tried, by CA and result, counted by every
     * instance in one place (cs_store_order_count()). */
    "CREATE TABLE IF NOT EXISTS cs_acme_order_counts ("
    " ca VARCHAR(32) NOT NULL,"
    " result VARCHAR(16) NOT NULL,"
    " count BIGINT NOT NULL,"
    " PRIMARY KEY (ca, result))",
    /* The pool's TLS session ticket keys (cs_store_tkeys.c): the secret
     * sealed to the wrapping certificates like a private key. */
    "CREATE TABLE IF NOT EXISTS cs_ticket_keys ("
    " issue_from BIGINT NOT NULL PRIMARY KEY,"
    " name VARCHAR(32) NOT NULL,"
    " issue_until BIGINT NOT NULL,"
    " accept_until BIGINT NOT NULL,"
    " key_cms TEXT NOT NULL,"
    " created BIGINT NOT NULL)",

    NULL
};

/* Columns added to a table after it was first released: the CREATE TABLE
 * above has them, a database made before gets them through ALTER TABLE
 * ... ADD COLUMN (the same statement on SQLite and MariaDB; neither's
 * "IF NOT EXISTS" is the other's, so a probe decides: a SELECT of the
 * column that fails means it is missing).  Nullable, without a default:
 * existing rows read NULL, which each column's users take as "not set". */
static const struct {
    const char *probe;
    const char *add;
} schema_columns[] = {
    /* cs_job_t.profile: the domain's ACME profile (NULL: the pool's). */
    { "SELECT profile FROM cs_acme_jobs WHERE 1 = 0",
      "ALTER TABLE cs_acme_jobs ADD COLUMN profile VARCHAR(64)" },
    /* cs_job_ca_t: the CA that issued the domain's certificate, the CAs
     * that refused the domain, and its place in the queue (a deadline:
     * NULL until the scheduler set one, then next_at counts). */
    { "SELECT ca FROM cs_acme_jobs WHERE 1 = 0",
      "ALTER TABLE cs_acme_jobs ADD COLUMN ca VARCHAR(32)" },
    { "SELECT ca_refused FROM cs_acme_jobs WHERE 1 = 0",
      "ALTER TABLE cs_acme_jobs ADD COLUMN ca_refused VARCHAR(255)" },
    { "SELECT prio FROM cs_acme_jobs WHERE 1 = 0",
      "ALTER TABLE cs_acme_jobs ADD COLUMN prio BIGINT" },
    { NULL, NULL }
};

/* ------------------------------------------------------------------ */
/* Statements, by id (cs_db.h); the labels are mod_dbd's names         */
/* ------------------------------------------------------------------ */

#define DOMAIN_COLS "name, seq, state, serial, not_before, not_after, " \
                    "key_type, last_error, updated"

static const cs_statement_t statements[CS_STMT_COUNT + 1] = {
    /* The sequence counter; its row lock orders all domain writes. */
    [CS_STMT_SEQ_NEXT] = { "cs_seq_next",
      "UPDATE cs_counter SET value = value + 1 WHERE name = 'seq'" },
    [CS_STMT_SEQ_GET] = { "cs_seq_get",
      "SELECT value FROM cs_counter WHERE name = 'seq'" },
    [CS_STMT_SEQ_LOCK] = { "cs_seq_lock",
      "UPDATE cs_counter SET value = value WHERE name = 'seq'" },

    [CS_STMT_DOM_GET] = { "cs_dom_get",
      "SELECT " DOMAIN_COLS ", chain_pem, key_cms"
      " FROM cs_domains WHERE name = %s" },
    [CS_STMT_DOM_SERIAL] = { "cs_dom_serial",
      "SELECT serial FROM cs_domains WHERE name = %s" },
    /* Same parameters, in the same order, as cs_dom_update. */
    [CS_STMT_DOM_INSERT] = { "cs_dom_insert",
      "INSERT INTO cs_domains (state, key_type, seq, serial, not_before,"
      " not_after, chain_pem, key_cms, last_error, updated, actor, name)"
      " VALUES (%s, %s, %lld, %s, %lld, %lld, %s, %s, %s, %lld, %s, %s)" },
    [CS_STMT_DOM_UPDATE] = { "cs_dom_update",
      "UPDATE cs_domains SET state = %s, key_type = %s, seq = %lld,"
      " serial = %s, not_before = %lld, not_after = %lld, chain_pem = %s,"
      " key_cms = %s, last_error = %s, updated = %lld, actor = %s"
      " WHERE name = %s" },
    [CS_STMT_DOM_ERROR] = { "cs_dom_error",
      "UPDATE cs_domains SET state = %s, last_error = %s, updated = %lld"
      " WHERE name = %s" },
    [CS_STMT_DOM_DELETE] = { "cs_dom_delete",
      "DELETE FROM cs_domains WHERE name = %s" },
    [CS_STMT_DOM_LIST] = { "cs_dom_list",
      "SELECT " DOMAIN_COLS " FROM cs_domains WHERE name > %s"
      " ORDER BY name LIMIT %d" },

    [CS_STMT_CHG_INSERT] = { "cs_chg_insert",
      "INSERT INTO cs_changes (seq, domain, op, serial, not_after, actor,"
      " at) VALUES (%lld, %s, %s, %s, %lld, %s, %lld)" },
    [CS_STMT_CHG_LIST] = { "cs_chg_list",
      "SELECT seq, domain, op, serial, not_after FROM cs_changes"
      " WHERE seq > %lld ORDER BY seq LIMIT %d" },

    /* A pool's row is the lock its lease decisions serialise on. */
    [CS_STMT_POOL_GET] = { "cs_pool_get",
      "SELECT gen FROM cs_pools WHERE name = %s" },
    [CS_STMT_POOL_INSERT] = { "cs_pool_insert",
      "INSERT INTO cs_pools (name, gen) VALUES (%s, 0)" },
    [CS_STMT_POOL_LOCK] = { "cs_pool_lock",
      "UPDATE cs_pools SET gen = gen + 1 WHERE name = %s" },

    [CS_STMT_LEASE_EXPIRE] = { "cs_lease_expire",
      "DELETE FROM cs_leases WHERE pool = %s AND expires <= %lld" },
    [CS_STMT_LEASE_COUNT] = { "cs_lease_count",
      "SELECT COUNT(*), MIN(expires) FROM cs_leases WHERE pool = %s" },
    [CS_STMT_LEASE_MINE] = { "cs_lease_mine",
      "SELECT id FROM cs_leases WHERE pool = %s AND host = %s"
      " ORDER BY expires DESC, id" },
    [CS_STMT_LEASE_RENEW] = { "cs_lease_renew",
      "UPDATE cs_leases SET expires = %lld WHERE id = %s" },
    [CS_STMT_LEASE_INSERT] = { "cs_lease_insert",
      "INSERT INTO cs_leases (id, pool, host, expires)"
      " VALUES (%s, %s, %s, %lld)" },
    [CS_STMT_LEASE_DELETE] = { "cs_lease_delete",
      "DELETE FROM cs_leases WHERE pool = %s AND id = %s AND expires > %lld" },
    [CS_STMT_LEASE_LIST] = { "cs_lease_list",
      "SELECT id, host, expires FROM cs_leases"
      " WHERE pool = %s AND expires > %lld ORDER BY expires, id" },

    [CS_STMT_HOST_COUNT] = { "cs_host_count",
      "SELECT COUNT(*) FROM cs_hosts WHERE host = %s" },
    [CS_STMT_HOST_INSERT] = { "cs_host_insert",
      "INSERT INTO cs_hosts (host, pool, seq, state, failed_json, reported)"
      " VALUES (%s, %s, %lld, %s, %s, %lld)" },
    [CS_STMT_HOST_UPDATE] = { "cs_host_update",
      "UPDATE cs_hosts SET pool = %s, seq = %lld, state = %s,"
      " failed_json = %s, reported = %lld WHERE host = %s" },
    /* The domain's latest change at or below each host's seq; a delete
     * has a NULL serial, which is the answer for it too. */
    [CS_STMT_HOST_SERVING] = { "cs_host_serving",
      "SELECT h.host, h.pool, h.seq, h.state, h.failed_json, h.reported,"
      " (SELECT c.serial FROM cs_changes c WHERE c.domain = %s"
      " AND c.seq <= h.seq ORDER BY c.seq DESC LIMIT 1)"
      " FROM cs_hosts h ORDER BY h.host" },

    /* ACME queue.  A claim is one UPDATE whose WHERE re-checks that the
     * job is due and unclaimed, so two workers (of any instance) never
     * both get it; its values always change, so the row count is right
     * on MySQL too. */
    [CS_STMT_JOB_GET] = { "cs_job_get",
      "SELECT domain, key_type, state, attempts, next_at, owner,"
      " lease_until, last_error, renew_at, updated, profile"
      " FROM cs_acme_jobs WHERE domain = %s" },
    /* With its deadline (prio) at once: a job without one would be
     * missed by cs_job_due_prio's bound. */
    [CS_STMT_JOB_INSERT] = { "cs_job_insert",
      "INSERT INTO cs_acme_jobs (domain, key_type, profile, state, attempts,"
      " next_at, owner, lease_until, last_error, renew_at, updated, prio)"
      " VALUES (%s, %s, %s, 'queued', 0, %lld, NULL, 0, NULL, 0, %lld,"
      " %lld)" },
    [CS_STMT_JOB_REQUEUE] = { "cs_job_requeue",
      "UPDATE cs_acme_jobs SET key_type = %s, profile = %s,"
      " state = 'queued', attempts = 0, next_at = %lld, last_error = NULL,"
      " updated = %lld WHERE domain = %s" },
    [CS_STMT_JOB_DUE] = { "cs_job_due",
      "SELECT domain FROM cs_acme_jobs WHERE next_at <= %lld"
      " AND lease_until < %lld ORDER BY next_at, domain LIMIT %d" },
    [CS_STMT_JOB_CLAIM] = { "cs_job_claim",
      "UPDATE cs_acme_jobs SET owner = %s, lease_until = %lld"
      " WHERE domain = %s AND next_at <= %lld AND lease_until < %lld" },
    [CS_STMT_JOB_FINISH] = { "cs_job_finish",
      "UPDATE cs_acme_jobs SET state = %s, attempts = %lld, next_at = %lld,"
      " owner = NULL, lease_until = 0, last_error = %s, renew_at = %lld,"
      " updated = %lld WHERE domain = %s AND owner = %s" },
    [CS_STMT_JOB_DELETE] = { "cs_job_delete",
      "DELETE FROM cs_acme_jobs WHERE domain = %s" },
    [CS_STMT_JOB_COUNT] = { "cs_job_count",
      "SELECT COUNT(*) FROM cs_acme_jobs WHERE state = %s" },

    [CS_STMT_CHAL_INSERT] = { "cs_chal_insert",
      "INSERT INTO cs_acme_challenges (token, domain, keyauth, expires)"
      " VALUES (%s, %s, %s, %lld)" },
    [CS_STMT_CHAL_GET] = { "cs_chal_get",
      "SELECT keyauth FROM cs_acme_challenges WHERE token = %s"
      " AND expires > %lld" },
    [CS_STMT_CHAL_DELETE] = { "cs_chal_delete",
      "DELETE FROM cs_acme_challenges WHERE token = %s OR expires <= %lld" },

    [CS_STMT_ALPN_INSERT] = { "cs_alpn_insert",
      "INSERT INTO cs_acme_tlsalpn (domain, cert_pem, key_cms, expires)"
      " VALUES (%s, %s, %s, %lld)" },
    [CS_STMT_ALPN_GET] = { "cs_alpn_get",
      "SELECT cert_pem, key_cms, expires FROM cs_acme_tlsalpn"
      " WHERE domain = %s AND expires > %lld" },
    [CS_STMT_ALPN_DELETE] = { "cs_alpn_delete",
      "DELETE FROM cs_acme_tlsalpn WHERE domain = %s OR expires <= %lld" },

    [CS_STMT_ACCT_GET] = { "cs_acct_get",
      "SELECT kid, key_cms FROM cs_acme_accounts WHERE directory = %s" },
    [CS_STMT_ACCT_INSERT] = { "cs_acct_insert",
      "INSERT INTO cs_acme_accounts (directory, kid, key_cms, updated)"
      " VALUES (%s, %s, %s, %lld)" },
    [CS_STMT_ACCT_UPDATE] = { "cs_acct_update",
      "UPDATE cs_acme_accounts SET kid = %s, key_cms = %s, updated = %lld"
      " WHERE directory = %s" },

    /* A limiter's row is its lock, like a pool's for leases. */
    [CS_STMT_LIM_GET] = { "cs_lim_get",
      "SELECT window_start, count, paused_until FROM cs_acme_limits"
      " WHERE name = %s" },
    [CS_STMT_LIM_INSERT] = { "cs_lim_insert",
      "INSERT INTO cs_acme_limits (name, window_start, count, paused_until)"
      " VALUES (%s, 0, 0, 0)" },
    [CS_STMT_LIM_LOCK] = { "cs_lim_lock",
      "UPDATE cs_acme_limits SET count = count WHERE name = %s" },
    [CS_STMT_LIM_SET] = { "cs_lim_set",
      "UPDATE cs_acme_limits SET window_start = %lld, count = %lld,"
      " paused_until = %lld WHERE name = %s" },

    /* Notifications: the outbox.  A claim re-checks in its WHERE that the
     * row is due and unclaimed, like a job's. */
    [CS_STMT_NTF_INSERT] = { "cs_ntf_insert",
      "INSERT INTO cs_notify_events (id, sink, type, domain, serial,"
      " not_after, body, state, attempts, next_at, owner, lease_until,"
      " last_error, created, updated) VALUES (%s, %s, %s, %s, %s, %lld,"
      " %s, 'pending', 0, %lld, NULL, 0, NULL, %lld, %lld)" },
    [CS_STMT_NTF_DUE] = { "cs_ntf_due",
      "SELECT id, sink FROM cs_notify_events WHERE state = 'pending'"
      " AND next_at <= %lld AND lease_until < %lld"
      " ORDER BY next_at, id, sink LIMIT %d" },
    [CS_STMT_NTF_CLAIM] = { "cs_ntf_claim",
      "UPDATE cs_notify_events SET owner = %s, lease_until = %lld"
      " WHERE id = %s AND sink = %s AND state = 'pending'"
      " AND next_at <= %lld AND lease_until < %lld" },
    [CS_STMT_NTF_GET] = { "cs_ntf_get",
      "SELECT id, sink, type, domain, serial, not_after, body, state,"
      " attempts, next_at, last_error, created FROM cs_notify_events"
      " WHERE id = %s AND sink = %s" },
    [CS_STMT_NTF_FINISH] = { "cs_ntf_finish",
      "UPDATE cs_notify_events SET state = %s, attempts = %lld,"
      " next_at = %lld, owner = NULL, lease_until = 0, last_error = %s,"
      " updated = %lld WHERE id = %s AND sink = %s AND owner = %s" },
    /* Certificates within the window (not_after <= now + window) or with
     * at most percent % of their lifetime left, not told yet. */
    [CS_STMT_NTF_EXPIRING] = { "cs_ntf_expiring",
      "SELECT d.name, d.serial, d.not_after FROM cs_domains d"
      " WHERE d.serial IS NOT NULL AND d.not_after > 0"
      " AND (d.not_after <= %lld"
      " OR 100 * (d.not_after - %lld) <= %lld * (d.not_after - d.not_before))"
      " AND NOT EXISTS (SELECT 1 FROM cs_notify_events e"
      " WHERE e.domain = d.name AND e.type = 'expiring'"
      " AND e.serial = d.serial)"
      " ORDER BY d.not_after, d.name LIMIT %d" },
    [CS_STMT_NTF_PURGE] = { "cs_ntf_purge",
      "DELETE FROM cs_notify_events WHERE state <> 'pending'"
      " AND updated < %lld AND not_after < %lld" },
    [CS_STMT_NTF_COUNT] = { "cs_ntf_count",
      "SELECT COUNT(*) FROM cs_notify_events WHERE state = %s" },

    [CS_STMT_OD_GET] = { "cs_od_get",
      "SELECT name, verdict, expires, reason, asked FROM cs_ondemand"
      " WHERE name = %s" },
    [CS_STMT_OD_INSERT] = { "cs_od_insert",
      "INSERT INTO cs_ondemand (verdict, expires, reason, asked, name)"
      " VALUES (%s, %lld, %s, %lld, %s)" },
    [CS_STMT_OD_UPDATE] = { "cs_od_update",
      "UPDATE cs_ondemand SET verdict = %s, expires = %lld, reason = %s,"
      " asked = %lld WHERE name = %s" },
    [CS_STMT_OD_PURGE] = { "cs_od_purge",
      "DELETE FROM cs_ondemand WHERE expires < %lld" },
    [CS_STMT_OD_COUNT] = { "cs_od_count",
      "SELECT COUNT(*) FROM cs_ondemand WHERE verdict = %s" },
    /* ACME, several CAs. */
    [CS_STMT_CA_GET] = { "cs_ca_get",
      "SELECT name, url, state, failures, last_error, next_retry, last_ok,"
      " updated FROM cs_acme_cas WHERE name = %s" },
    [CS_STMT_CA_INSERT] = { "cs_ca_insert",
      "INSERT INTO cs_acme_cas (url, state, failures, last_error,"
      " next_retry, last_ok, updated, name)"
      " VALUES (%s, %s, %lld, %s, %lld, %lld, %lld, %s)" },
    [CS_STMT_CA_UPDATE] = { "cs_ca_update",
      "UPDATE cs_acme_cas SET url = %s, state = %s, failures = %lld,"
      " last_error = %s, next_retry = %lld, last_ok = %lld, updated = %lld"
      " WHERE name = %s" },
    [CS_STMT_CA_LIST] = { "cs_ca_list",
      "SELECT name, url, state, failures, last_error, next_retry, last_ok,"
      " updated FROM cs_acme_cas ORDER BY name" },
    [CS_STMT_JOB_CA_GET] = { "cs_job_ca_get",
      "SELECT ca, ca_refused, prio FROM cs_acme_jobs WHERE domain = %s" },
    [CS_STMT_JOB_CA_SET] = { "cs_job_ca_set",
      "UPDATE cs_acme_jobs SET ca = %s, ca_refused = %s, prio = %lld"
      " WHERE domain = %s" },
    /* The scheduler's order: earliest deadline first (cs_sched_deadline),
     * along the index cs_acme_jobs_prio (a sort of every due job per
     * claim took 0.4 s with 100,000 queued), but only up to a deadline
     * that cs_store_job_due_prio() found among the due jobs (cs_job_due_
     * window): without that bound, when fewer jobs were due than asked
     * for, the walk went through every job's deadline, due or not (1M
     * jobs, nothing due: the whole index and a row lookup for each). */
    [CS_STMT_JOB_DUE_PRIO] = { "cs_job_due_prio",
      "SELECT domain FROM cs_acme_jobs WHERE prio <= %lld"
      " AND next_at <= %lld AND lease_until < %lld"
      " ORDER BY prio, domain LIMIT %d" },
    /* A job queued (again): its deadline is now. */
    [CS_STMT_JOB_PRIO_SET] = { "cs_job_prio_set",
      "UPDATE cs_acme_jobs SET prio = %lld WHERE domain = %s" },
    [CS_STMT_LIM_LIST] = { "cs_lim_list",
      "SELECT name, window_start, count, paused_until FROM cs_acme_limits"
      " ORDER BY name" },
    /* The first due jobs by due time, along the index (next_at, domain):
     * a range as long as what is due, and nothing at all read when
     * nothing is (cs_store_job_due_prio()). */
    [CS_STMT_JOB_DUE_WINDOW] = { "cs_job_due_window",
      "SELECT domain, prio, next_at FROM cs_acme_jobs WHERE next_at <= %lld"
      " AND lease_until < %lld ORDER BY next_at, domain LIMIT %d" },

    /* Metrics (cs_store_metrics.c). */
    [CS_STMT_ORD_ADD] = { "cs_ord_add",
      "UPDATE cs_acme_order_counts SET count = count + 1"
      " WHERE ca = %s AND result = %s" },
    [CS_STMT_ORD_INSERT] = { "cs_ord_insert",
      "INSERT INTO cs_acme_order_counts (ca, result, count)"
      " VALUES (%s, %s, 1)" },
    /* The pool's TLS session ticket keys: one per rotation period, by
     * the start of its issuing window (a racing instance's duplicate
     * fails on the primary key). */
    [CS_STMT_TK_LIST] = { "cs_tk_list",
      "SELECT issue_from, name, issue_until, accept_until, key_cms"
      " FROM cs_ticket_keys WHERE accept_until > %lld"
      " ORDER BY issue_from" },
    [CS_STMT_TK_INSERT] = { "cs_tk_insert",
      "INSERT INTO cs_ticket_keys (issue_from, name, issue_until,"
      " accept_until, key_cms, created) VALUES (%lld, %s, %lld, %lld, %s,"
      " %lld)" },
    [CS_STMT_TK_PURGE] = { "cs_tk_purge",
      "DELETE FROM cs_ticket_keys WHERE accept_until <= %lld" },

    [CS_STMT_COUNT] = { NULL, NULL }
};

const cs_statement_t *cs_store_statements(void)
{
    return statements;
}

/* ------------------------------------------------------------------ */
/* Creating the tables                                                 */
/* ------------------------------------------------------------------ */

/* Not through the prepared cs_seq_get: this runs while the tables may
 * still be changing under other processes. */
static apr_status_t counter_exists(int *exists, cs_db_t *db, apr_pool_t *p)
{
    apr_array_header_t *rows;
    apr_status_t status;

    *exists = 0;
    status = cs_db_select(&rows, db, p, "SELECT value FROM cs_counter"
                          " WHERE name = 'seq'", "schema: counter");
    if (status == APR_SUCCESS) {
        *exists = rows->nelts > 0;
    }
    return status;
}

/* Whether the probe of a column runs (the column exists). */
static int column_exists(cs_db_t *db, apr_pool_t *p, const char *probe)
{
    apr_array_header_t *rows;

    if (cs_db_select(&rows, db, p, probe, "schema: column") == APR_SUCCESS) {
        return 1;
    }
    cs_db_forget(db);
    return 0;
}

/* The columns of schema_columns a database made by an older version
 * lacks.  Idempotent, and safe to race: when another process added the
 * column first, the ALTER fails and the second probe finds it. */
static apr_status_t add_columns(cs_db_t *db, apr_pool_t *p)
{
    int i, rv;

    for (i = 0; schema_columns[i].probe; i++) {
        if (column_exists(db, p, schema_columns[i].probe)) {
            continue;
        }
        if ((rv = cs_db_run(db, schema_columns[i].add)) != 0
            && !column_exists(db, p, schema_columns[i].probe)) {
            return cs_db_driver_fail(db, rv, schema_columns[i].add);
        }
    }
    return APR_SUCCESS;
}

/* Indexes on columns added later (schema_columns), which the CREATE
 * TABLE cannot declare for a table that exists: CREATE INDEX, the same on
 * SQLite and MariaDB; it fails when the index exists (or another process
 * made it first), which is fine: the queries only run slower without
 * it.  Jobs from before the scheduler get a deadline: their due time. */
static const char *const schema_indexes[] = {
    "CREATE INDEX cs_acme_jobs_prio ON cs_acme_jobs (prio, domain)",
    /* The scheduler's window (cs_job_due_window) read from the index
     * alone: with the row lookups, 257 due jobs cost 12 ms on a MariaDB
     * of 1M jobs whose buffer pool held a fraction of the table.  Built
     * on the first start of a version that has it (a minute or so at 1M
     * jobs). */
    "CREATE INDEX cs_acme_jobs_due ON cs_acme_jobs"
    " (next_at, domain, lease_until, prio)",
    "UPDATE cs_acme_jobs SET prio = next_at WHERE prio IS NULL",
    /* Metrics (cs_store_metrics.c): domains by state, certificates by
     * expiry, the jobs not valid, each counted along its index. */
    "CREATE INDEX cs_domains_state ON cs_domains (state)",
    "CREATE INDEX cs_domains_not_after ON cs_domains (not_after)",
    "CREATE INDEX cs_acme_jobs_state ON cs_acme_jobs (state)",
    NULL
};

static void add_indexes(cs_db_t *db, apr_pool_t *p)
{
    int i;

    for (i = 0; schema_indexes[i]; i++) {
        cs_db_run(db, schema_indexes[i]);
    }
    cs_db_forget(db);
}

apr_status_t cs_store_schema(cs_db_t *db, apr_pool_t *p)
{
    apr_status_t status;
    int i, rv = 0, attempt, exists;

    if ((status = cs_db_enter(db, p)) != APR_SUCCESS) {
        return status;
    }
    cs_db_setup_file(db);
    /* Another process creating the same tables at the same moment can
     * make a statement fail once (SQLite: the schema changed under it);
     * the next attempt finds the tables there. */
    for (attempt = 0; attempt < 3; attempt++) {
        for (i = 0; schema_ddl[i]; i++) {
            if ((rv = cs_db_run(db, schema_ddl[i])) != 0) {
                break;
            }
        }
        if (!schema_ddl[i]) {
            break;
        }
        apr_sleep(apr_time_from_msec(50 * (attempt + 1)));
    }
    if (rv) {
        return cs_db_driver_fail(db, rv, "schema");
    }
    if ((status = add_columns(db, p)) != APR_SUCCESS) {
        return status;
    }
    add_indexes(db, p);
    if ((status = counter_exists(&exists, db, p)) != APR_SUCCESS) {
        return status;
    }
    if (!exists && (rv = cs_db_run(db, "INSERT INTO cs_counter"
                                   " (name, value) VALUES ('seq', 0)"))) {
        /* Fine if a racing process inserted it first. */
        if ((status = counter_exists(&exists, db, p)) != APR_SUCCESS) {
            return status;
        }
        if (!exists) {
            cs_db_forget(db);
            return cs_db_driver_fail(db, rv, "schema: seeding the counter");
        }
    }
    cs_db_forget(db);
    return APR_SUCCESS;
}
