/*
 * csc.c: the certsuite command's arguments, configuration and output.
 * See csc.h.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <apr_strings.h>

#include "cs_name.h"
#include "csc.h"

/* ------------------------------------------------------------------ */
/* Arguments                                                           */
/* ------------------------------------------------------------------ */

const char *csc_usage(void)
{
    return
"usage: certsuite [-c FILE] [--url URL] [--json] COMMAND ...\n"
"\n"
"  domain list [--state active|pending|error]\n"
"  domain show DOMAIN\n"
"  domain add DOMAIN [--key-type ec-p256|rsa-2048] [--profile NAME]\n"
"  domain remove DOMAIN\n"
"  import DOMAIN CERT-FILE KEY-FILE [--no-seal]\n"
"  pool status [--days N]\n"
"  wrap-key rotate --new WRAP-CERT [--dry-run]\n"
"  acme account\n"
"  help | version\n"
"\n"
"The configuration (-c, else $CERTSUITE_CONFIG, else "
CSC_DEFAULT_CONFIG ")\n"
"names service_url, client_cert, client_key, ca and wrap_cert.\n"
"See certsuite(1).\n";
}

typedef struct {
    const char *words[2];
    int nwords;
    csc_cmd_t cmd;
    int npos;                   /* positional arguments after the words */
    const char *pos_names;      /* for the error message */
} cmd_spec_t;

static const cmd_spec_t cmd_specs[] = {
    { { "domain", "list" }, 2, CSC_CMD_DOMAIN_LIST, 0, "" },
    { { "domain", "show" }, 2, CSC_CMD_DOMAIN_SHOW, 1, "DOMAIN" },
    { { "domain", "add" }, 2, CSC_CMD_DOMAIN_ADD, 1, "DOMAIN" },
    { { "domain", "remove" }, 2, CSC_CMD_DOMAIN_REMOVE, 1, "DOMAIN" },
    { { "import", NULL }, 1, CSC_CMD_IMPORT, 3,
      "DOMAIN CERT-FILE KEY-FILE" },
    { { "pool", "status" }, 2, CSC_CMD_POOL_STATUS, 0, "" },
    { { "wrap-key", "rotate" }, 2, CSC_CMD_WRAP_ROTATE, 0, "" },
    { { "acme", "account" }, 2, CSC_CMD_ACME_ACCOUNT, 0, "" },
    { { "help", NULL }, 1, CSC_CMD_HELP, 0, "" },
    { { "version", NULL }, 1, CSC_CMD_VERSION, 0, "" },
    { { NULL, NULL }, 0, CSC_CMD_NONE, 0, NULL }
};

/* Options and which commands take them (0: every command). */
typedef struct {
    const char *name;
    int has_value;
    csc_cmd_t only;
} opt_spec_t;

static const opt_spec_t opt_specs[] = {
    { "--json", 0, 0 },
    { "-c", 1, 0 },
    { "--config", 1, 0 },
    { "--url", 1, 0 },
    { "--key-type", 1, CSC_CMD_DOMAIN_ADD },
    { "--profile", 1, CSC_CMD_DOMAIN_ADD },
    { "--state", 1, CSC_CMD_DOMAIN_LIST },
    { "--days", 1, CSC_CMD_POOL_STATUS },
    { "--new", 1, CSC_CMD_WRAP_ROTATE },
    { "--dry-run", 0, CSC_CMD_WRAP_ROTATE },
    { "--no-seal", 0, CSC_CMD_IMPORT },
    { "-h", 0, 0 },
    { "--help", 0, 0 },
    { NULL, 0, 0 }
};

static int usage_error(const char **err, apr_pool_t *p, const char *fmt,
                       ...)
{
    va_list ap;

    va_start(ap, fmt);
    *err = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    return CSC_EXIT_USAGE;
}

static const char *cmd_name(const cmd_spec_t *c, apr_pool_t *p)
{
    return c->nwords == 2 ? apr_pstrcat(p, c->words[0], " ", c->words[1],
                                        NULL)
                          : c->words[0];
}

static int parse_days(int *out, const char *v)
{
    char *end;
    long n;

    if (!*v || *v == '-' || *v == '+') {
        return 0;
    }
    n = strtol(v, &end, 10);
    if (*end || n < 1 || n > 3650) {
        return 0;
    }
    *out = (int)n;
    return 1;
}

int csc_args_parse(csc_args_t *a, apr_pool_t *p, int argc,
                   const char *const *argv, const char **err)
{
    apr_array_header_t *words = apr_array_make(p, 4, sizeof(const char *));
    apr_array_header_t *opts = apr_array_make(p, 4, sizeof(const char *));
    const cmd_spec_t *c;
    int i, j, end_of_opts = 0;

    memset(a, 0, sizeof(*a));
    a->days = 14;
    /* Split words from options first: options may be anywhere. */
    for (i = 1; i < argc; i++) {
        const char *s = argv[i];
        const opt_spec_t *o;

        if (end_of_opts || s[0] != '-' || s[1] == '\0') {
            APR_ARRAY_PUSH(words, const char *) = s;
            continue;
        }
        if (!strcmp(s, "--")) {
            end_of_opts = 1;
            continue;
        }
        for (o = opt_specs; o->name; o++) {
            if (!strcmp(o->name, s)) {
                break;
            }
        }
        if (!o->name) {
            return usage_error(err, p, "unknown option '%s'",
                               csc_safe(p, s));
        }
        APR_ARRAY_PUSH(opts, const char *) = s;
        if (o->has_value) {
            if (i + 1 >= argc) {
                return usage_error(err, p, "option %s needs a value", s);
            }
            APR_ARRAY_PUSH(opts, const char *) = argv[++i];
        }
        else {
            APR_ARRAY_PUSH(opts, const char *) = NULL;
        }
    }

    if (words->nelts == 0) {
        a->cmd = CSC_CMD_HELP;
        for (i = 0; i < opts->nelts; i += 2) {
            const char *o = APR_ARRAY_IDX(opts, i, const char *);
            if (strcmp(o, "-h") && strcmp(o, "--help")) {
                return usage_error(err, p, "no command given");
            }
        }
        return CSC_EXIT_OK;
    }
    for (c = cmd_specs; c->nwords; c++) {
        if (words->nelts >= c->nwords
            && !strcmp(APR_ARRAY_IDX(words, 0, const char *), c->words[0])
            && (c->nwords == 1
                || !strcmp(APR_ARRAY_IDX(words, 1, const char *),
                           c->words[1]))) {
            break;
        }
    }
    if (!c->nwords) {
        const char *w0 = APR_ARRAY_IDX(words, 0, const char *);
        for (c = cmd_specs; c->nwords; c++) {
            if (c->nwords == 2 && !strcmp(w0, c->words[0])) {
                return usage_error(err, p, "'%s' needs a subcommand "
                                   "(e.g. '%s')", csc_safe(p, w0),
                                   cmd_name(c, p));
            }
        }
        return usage_error(err, p, "unknown command '%s'",
                           csc_safe(p, w0));
    }
    a->cmd = c->cmd;
    if (words->nelts - c->nwords != c->npos) {
        return usage_error(err, p, "%s takes %s%s", cmd_name(c, p),
                           c->npos ? c->pos_names : "no arguments",
                           words->nelts - c->nwords > c->npos
                           ? " (too many arguments)"
                           : " (missing arguments)");
    }
    j = c->nwords;
    if (c->npos >= 1) {
        const char *raw = APR_ARRAY_IDX(words, j, const char *);
        const char *why = cs_name_normalize(&a->domain, p, raw);
        if (why) {
            return usage_error(err, p, "invalid domain name '%s': %s",
                               csc_safe(p, raw), why);
        }
    }
    if (c->npos == 3) {
        a->cert_file = APR_ARRAY_IDX(words, j + 1, const char *);
        a->key_file = APR_ARRAY_IDX(words, j + 2, const char *);
    }

    for (i = 0; i < opts->nelts; i += 2) {
        const char *o = APR_ARRAY_IDX(opts, i, const char *);
        const char *v = APR_ARRAY_IDX(opts, i + 1, const char *);
        const opt_spec_t *os;

        for (os = opt_specs; strcmp(os->name, o); os++) {
        }
        if (os->only && os->only != a->cmd) {
            return usage_error(err, p, "option %s does not apply to %s", o,
                               cmd_name(c, p));
        }
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            a->cmd = CSC_CMD_HELP;
        }
        else if (!strcmp(o, "--json")) {
            a->json = 1;
        }
        else if (!strcmp(o, "-c") || !strcmp(o, "--config")) {
            a->config = v;
        }
        else if (!strcmp(o, "--url")) {
            if (strncmp(v, "https://", 8) || !v[8]) {
                return usage_error(err, p, "--url must be an https:// URL, "
                                   "not '%s'", csc_safe(p, v));
            }
            a->url = v;
        }
        else if (!strcmp(o, "--key-type")) {
            if (strcmp(v, "ec-p256") && strcmp(v, "rsa-2048")) {
                return usage_error(err, p, "--key-type must be ec-p256 or "
                                   "rsa-2048, not '%s'", csc_safe(p, v));
            }
            a->key_type = v;
        }
        else if (!strcmp(o, "--profile")) {
            const char *s;
            if (!*v || strlen(v) > 64) {
                return usage_error(err, p, "--profile must be 1 to 64 "
                                   "characters");
            }
            for (s = v; *s; s++) {
                if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                            "vwxyz0123456789._-", *s)) {
                    return usage_error(err, p, "--profile '%s' is not a "
                                       "profile name (A-Z a-z 0-9 . _ -)",
                                       csc_safe(p, v));
                }
            }
            a->profile = v;
        }
        else if (!strcmp(o, "--state")) {
            if (strcmp(v, "active") && strcmp(v, "pending")
                && strcmp(v, "error")) {
                return usage_error(err, p, "--state must be active, "
                                   "pending or error, not '%s'",
                                   csc_safe(p, v));
            }
            a->state = v;
        }
        else if (!strcmp(o, "--days")) {
            if (!parse_days(&a->days, v)) {
                return usage_error(err, p, "--days must be a number of days "
                                   "from 1 to 3650, not '%s'",
                                   csc_safe(p, v));
            }
        }
        else if (!strcmp(o, "--new")) {
            a->new_wrap = v;
        }
        else if (!strcmp(o, "--dry-run")) {
            a->dry_run = 1;
        }
        else if (!strcmp(o, "--no-seal")) {
            a->plain_key = 1;
        }
    }
    if (a->cmd == CSC_CMD_WRAP_ROTATE && !a->new_wrap) {
        return usage_error(err, p, "wrap-key rotate needs --new WRAP-CERT "
                           "(the new wrapping certificate, already added "
                           "to CertService)");
    }
    return CSC_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Configuration file                                                  */
/* ------------------------------------------------------------------ */

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        *--e = '\0';
    }
    return s;
}

static const char *conf_path(apr_pool_t *p, const char *dir, const char *v)
{
    if (v[0] == '/' || !dir) {
        return v;
    }
    return apr_pstrcat(p, dir, "/", v, NULL);
}

int csc_conf_parse(csc_conf_t *c, apr_pool_t *p, const char *text,
                   apr_size_t len, const char *file, const char *dir,
                   const char **err)
{
    char *buf = apr_pstrmemdup(p, text, len);
    char *line, *next;
    int lineno = 0;

    memset(c, 0, sizeof(*c));
    c->wrap = apr_array_make(p, 2, sizeof(const char *));
    c->timeout = 30;
    if (memchr(text, '\0', len)) {
        *err = apr_psprintf(p, "%s: not a text file (a NUL byte)", file);
        return CSC_EXIT_USAGE;
    }
    for (line = buf; line; line = next) {
        char *eq, *name, *value;
        const char **slot = NULL;

        lineno++;
        if ((next = strchr(line, '\n'))) {
            *next++ = '\0';
        }
        name = trim(line);
        if (!*name || *name == '#') {
            continue;
        }
        if (!(eq = strchr(name, '='))) {
            *err = apr_psprintf(p, "%s line %d: expected 'name = value'",
                                file, lineno);
            return CSC_EXIT_USAGE;
        }
        *eq = '\0';
        name = trim(name);
        value = trim(eq + 1);
        if (!*value) {
            *err = apr_psprintf(p, "%s line %d: %s has no value", file,
                                lineno, csc_safe(p, name));
            return CSC_EXIT_USAGE;
        }
        if (!strcmp(name, "service_url")) {
            if (strncmp(value, "https://", 8) || !value[8]) {
                *err = apr_psprintf(p, "%s line %d: service_url must be an "
                                    "https:// URL", file, lineno);
                return CSC_EXIT_USAGE;
            }
            slot = &c->url;
            value = apr_pstrdup(p, value);
            /* One form: no trailing slash (paths start with one). */
            while (value[strlen(value) - 1] == '/') {
                value[strlen(value) - 1] = '\0';
            }
        }
        else if (!strcmp(name, "client_cert")) {
            slot = &c->cert;
        }
        else if (!strcmp(name, "client_key")) {
            slot = &c->key;
        }
        else if (!strcmp(name, "ca")) {
            slot = &c->ca;
        }
        else if (!strcmp(name, "wrap_cert")) {
            APR_ARRAY_PUSH(c->wrap, const char *) = conf_path(p, dir,
                                                              value);
            continue;
        }
        else if (!strcmp(name, "timeout")) {
            char *end;
            long t = strtol(value, &end, 10);
            if (*end || t < 1 || t > 3600) {
                *err = apr_psprintf(p, "%s line %d: timeout must be 1 to "
                                    "3600 seconds", file, lineno);
                return CSC_EXIT_USAGE;
            }
            c->timeout = (int)t;
            continue;
        }
        else {
            *err = apr_psprintf(p, "%s line %d: unknown setting '%s' "
                                "(service_url, client_cert, client_key, ca, "
                                "wrap_cert, timeout)", file, lineno,
                                csc_safe(p, name));
            return CSC_EXIT_USAGE;
        }
        if (*slot) {
            *err = apr_psprintf(p, "%s line %d: %s is set twice", file,
                                lineno, name);
            return CSC_EXIT_USAGE;
        }
        *slot = slot == &c->url ? apr_pstrdup(p, value)
                                : conf_path(p, dir, apr_pstrdup(p, value));
    }
    return CSC_EXIT_OK;
}

const char *csc_conf_check(const csc_conf_t *c, apr_pool_t *p)
{
    if (!c->url) {
        return "no service_url (CertService's https:// URL) in the "
               "configuration, and no --url";
    }
    if (!c->cert || !c->key) {
        return "client_cert and client_key (the admin client certificate) "
               "are both needed in the configuration";
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

const char *csc_safe(apr_pool_t *p, const char *s)
{
    char *out, *o;

    if (!s) {
        return "-";
    }
    out = apr_pstrdup(p, s);
    for (o = out; *o; o++) {
        if ((unsigned char)*o < 0x20 || *o == 0x7f) {
            *o = '?';
        }
    }
    return out;
}

/* Characters (not bytes) in s: UTF-8 continuation bytes do not count. */
static apr_size_t width(const char *s)
{
    apr_size_t n = 0;

    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

csc_table_t *csc_table_make(apr_pool_t *p, int ncols, ...)
{
    csc_table_t *t = apr_pcalloc(p, sizeof(*t));
    const char **row = apr_pcalloc(p, ncols * sizeof(*row));
    va_list ap;
    int i;

    t->p = p;
    t->ncols = ncols;
    t->rows = apr_array_make(p, 16, sizeof(const char **));
    va_start(ap, ncols);
    for (i = 0; i < ncols; i++) {
        row[i] = va_arg(ap, const char *);
    }
    va_end(ap);
    APR_ARRAY_PUSH(t->rows, const char **) = row;
    return t;
}

void csc_table_add(csc_table_t *t, ...)
{
    const char **row = apr_pcalloc(t->p, t->ncols * sizeof(*row));
    va_list ap;
    int i;

    va_start(ap, t);
    for (i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        row[i] = csc_safe(t->p, s && *s ? s : NULL);
    }
    va_end(ap);
    APR_ARRAY_PUSH(t->rows, const char **) = row;
}

const char *csc_table_render(const csc_table_t *t)
{
    apr_size_t *w = apr_pcalloc(t->p, t->ncols * sizeof(*w));
    apr_array_header_t *out = apr_array_make(t->p, 256, 1);
    int r, i;
    apr_size_t k;

    for (r = 0; r < t->rows->nelts; r++) {
        const char **row = APR_ARRAY_IDX(t->rows, r, const char **);
        for (i = 0; i < t->ncols; i++) {
            if (width(row[i]) > w[i]) {
                w[i] = width(row[i]);
            }
        }
    }
    for (r = 0; r < t->rows->nelts; r++) {
        const char **row = APR_ARRAY_IDX(t->rows, r, const char **);
        apr_size_t pending = 0;     /* spaces owed before the next cell */

        for (i = 0; i < t->ncols; i++) {
            const char *s = row[i];
            for (k = 0; k < pending; k++) {
                APR_ARRAY_PUSH(out, char) = ' ';
            }
            for (; *s; s++) {
                APR_ARRAY_PUSH(out, char) = *s;
            }
            pending = w[i] - width(row[i]) + 2;
        }
        APR_ARRAY_PUSH(out, char) = '\n';
    }
    APR_ARRAY_PUSH(out, char) = '\0';
    return out->elts;
}

const char *csc_fmt_time(apr_pool_t *p, apr_int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    char buf[32];

    if (t <= 0 || !gmtime_r(&tt, &tm)) {
        return "-";
    }
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
    return apr_pstrdup(p, buf);
}

const char *csc_fmt_span(apr_pool_t *p, apr_int64_t s)
{
    if (s < 0) {
        s = -s;
    }
    if (s < 120) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "s", s);
    }
    if (s < 7200) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "m", s / 60);
    }
    if (s < 2 * 86400) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "h", s / 3600);
    }
    return apr_psprintf(p, "%" APR_INT64_T_FMT "d", s / 86400);
}

const char *csc_fmt_expiry(apr_pool_t *p, apr_int64_t not_after,
                           apr_int64_t now)
{
    if (not_after <= 0) {
        return "-";
    }
    if (not_after <= now) {
        return apr_pstrcat(p, "expired ", csc_fmt_span(p, now - not_after),
                           " ago", NULL);
    }
    return apr_pstrcat(p, "in ", csc_fmt_span(p, not_after - now), NULL);
}

int csc_expiring(apr_int64_t not_after, apr_int64_t now, int days)
{
    return not_after > 0 && not_after - now <= (apr_int64_t)days * 86400;
}
