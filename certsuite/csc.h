/*
 * csc.h: the certsuite command's pure part: its arguments, its
 * configuration file, and what it prints (tables, times).  No network
 * and no httpd types: t/unit/test_csc.c links it directly.
 *
 * certsuite.c holds main() and the requests to CertService; this file
 * decides nothing about HTTP.
 */
#ifndef CSC_H
#define CSC_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

/* Exit codes (docs/certsuite.1). */
#define CSC_EXIT_OK      0
#define CSC_EXIT_FAIL    1      /* CertService refused, a check failed */
#define CSC_EXIT_USAGE   2      /* bad arguments or configuration */
#define CSC_EXIT_CONNECT 3      /* no answer from CertService */

/* Where the configuration is read when neither -c nor CERTSUITE_CONFIG
 * names one. */
#define CSC_DEFAULT_CONFIG "/etc/certsuite/certsuite.conf"

typedef enum {
    CSC_CMD_NONE = 0,
    CSC_CMD_HELP,
    CSC_CMD_VERSION,
    CSC_CMD_DOMAIN_ADD,
    CSC_CMD_DOMAIN_REMOVE,
    CSC_CMD_DOMAIN_LIST,
    CSC_CMD_DOMAIN_SHOW,
    CSC_CMD_IMPORT,
    CSC_CMD_POOL_STATUS,
    CSC_CMD_WRAP_ROTATE,
    CSC_CMD_ACME_ACCOUNT
} csc_cmd_t;

typedef struct {
    csc_cmd_t cmd;
    int json;                   /* --json */
    const char *config;         /* -c FILE */
    const char *url;            /* --url: overrides the file's */
    const char *domain;         /* normalised (A-labels, lower case) */
    const char *cert_file;      /* import */
    const char *key_file;
    const char *key_type;       /* domain add --key-type */
    const char *profile;        /* domain add --profile */
    const char *state;          /* domain list --state */
    int days;                   /* pool status --days (default 14) */
    const char *new_wrap;       /* wrap-key rotate --new CERT */
    int dry_run;                /* wrap-key rotate --dry-run */
    int plain_key;              /* import --no-seal */
} csc_args_t;

/**
 * Parse argv (argv[0] is the program).  Options may come before or after
 * the command words.  Domain names are normalised with cs_name_normalize.
 * @return CSC_EXIT_OK, or CSC_EXIT_USAGE with *err saying what is wrong
 */
int csc_args_parse(csc_args_t *a, apr_pool_t *p, int argc,
                   const char *const *argv, const char **err);

/** The usage text (static). */
const char *csc_usage(void);

typedef struct {
    const char *url;            /* service_url */
    const char *cert;           /* client_cert */
    const char *key;            /* client_key */
    const char *ca;             /* ca: trust for CertService's certificate */
    apr_array_header_t *wrap;   /* wrap_cert (const char *), repeatable */
    int timeout;                /* seconds, default 30 */
} csc_conf_t;

/**
 * Parse a configuration file's text: "name = value" lines, '#' comments,
 * blank lines.  Relative paths are taken from dir (the file's directory).
 * An unknown name, a line without '=', a repeated single name, or a
 * bad value is an error naming the file and line.
 */
int csc_conf_parse(csc_conf_t *c, apr_pool_t *p, const char *text,
                   apr_size_t len, const char *file, const char *dir,
                   const char **err);

/** What is missing for talking to CertService, or NULL. */
const char *csc_conf_check(const csc_conf_t *c, apr_pool_t *p);

/* --- output ------------------------------------------------------------ */

typedef struct {
    int ncols;
    apr_array_header_t *rows;   /* const char ** of ncols cells; row 0:
                                 * the headings */
    apr_pool_t *p;
} csc_table_t;

csc_table_t *csc_table_make(apr_pool_t *p, int ncols, ...);
/** Add a row of ncols cells (NULL shows "-"); each is copied with
 *  control characters replaced, so nothing from the server can drive
 *  the terminal. */
void csc_table_add(csc_table_t *t, ...);
/** The table as text: columns padded to their widest cell (counted in
 *  characters, UTF-8 aware), two spaces apart, no trailing blanks. */
const char *csc_table_render(const csc_table_t *t);

/** Text safe for a terminal: control characters and DEL become '?'. */
const char *csc_safe(apr_pool_t *p, const char *s);

/** A UTC date and time "2026-12-05 21:30"; "-" for 0. */
const char *csc_fmt_time(apr_pool_t *p, apr_int64_t t);
/** A duration, coarse: "45s", "12m", "5h", "47d". */
const char *csc_fmt_span(apr_pool_t *p, apr_int64_t seconds);
/** An expiry relative to now: "in 47d", "expired 3d ago", "-" for 0. */
const char *csc_fmt_expiry(apr_pool_t *p, apr_int64_t not_after,
                           apr_int64_t now);

/** Whether a certificate expiring at not_after expires within days of
 *  now (expired ones included; 0: no certificate, never). */
int csc_expiring(apr_int64_t not_after, apr_int64_t now, int days);

#endif /* CSC_H */
