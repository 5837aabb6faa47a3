/*
 * mod_macro_gen: expand a mod_macro <Macro> once per entry of a certsync
 * manifest (docs/manifest.md), at configuration time.
 *
 *     MacroGenerate TLSHost /var/lib/certsync/manifest [args...]
 *
 * acts as if the configuration held, in its place, one line
 *
 *     Use TLSHost <domain> <certdir> [args...]
 *
 * per usable manifest entry.  Like mod_macro's Use, the directive runs while
 * the configuration is read (EXEC_ON_READ): it renders those lines into one
 * buffer (mg_expand.c) and puts a configuration "file" reading that buffer
 * in front of the file being read.  The reader goes on through the
 * generated lines, mod_macro expands each Use, and when the buffer is
 * exhausted reading resumes after the MacroGenerate line.  So whatever a
 * hand-written list of Use lines could do, the generated one does too.
 *
 * An entry whose certificate or key is missing or unreadable, or whose line
 * is malformed, is skipped with one warning: one broken domain must never
 * take the others offline.
 *
 * Messages are logged without a server, like mod_macro's: while the
 * configuration is being read its LogLevel is not in force yet, and the
 * startup level (httpd -e) is the one that applies.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"

#include "apr_file_io.h"
#include "apr_strings.h"

#include "cs_file.h"
#include "mg_expand.h"
#include "mg_manifest.h"
#include "mg_private.h"

module AP_MODULE_DECLARE_DATA macro_gen_module;

/* ------------------------------------------------------------------ */
/* The generated lines as a configuration file                         */
/* ------------------------------------------------------------------ */

typedef struct {
    mg_reader_t reader;
    const cs_manifest_entry_t *entries;  /* one per generated line */
    int nentries;
    ap_configfile_t *cfg;       /* this stream */
    ap_configfile_t *next;      /* the file that held MacroGenerate */
    ap_configfile_t **upper;    /* where the reader keeps its current file */
    int resumed;                /* next has been put back */
} mg_stream_t;

/*
 * At the end of the generated lines, put the file that held MacroGenerate
 * back in the reader's hands and answer one empty line (which the reader
 * skips).  Handing back a line of our own, rather than reading on into
 * next as mod_macro does, leaves next's line counting to the reader itself,
 * so errors further down that file keep their exact line numbers.
 */
static void mg_stream_resume(mg_stream_t *st)
{
    *st->upper = st->next;
    st->resumed = 1;
}

/* Only reached through a stale pointer to this stream (none is expected):
 * read on from next, as if this stream had been removed. */
static apr_status_t mg_next_getstr(mg_stream_t *st, char *buf,
                                   apr_size_t bufsize)
{
    apr_status_t rv = APR_SUCCESS;
    apr_size_t i = 0;
    char c = '\0';

    if (st->next->getstr) {
        return st->next->getstr(buf, bufsize, st->next->param);
    }
    while (i + 1 < bufsize && c != LF
           && (rv = st->next->getch(&c, st->next->param)) == APR_SUCCESS) {
        buf[i++] = c;
    }
    buf[i] = '\0';
    return (rv == APR_EOF && i > 0) ? APR_SUCCESS : rv;
}

static apr_status_t mg_cfg_getstr(void *buf, apr_size_t bufsize, void *param)
{
    mg_stream_t *st = param;
    apr_status_t rv;

    if (st->resumed) {
        return mg_next_getstr(st, buf, bufsize);
    }
    rv = mg_reader_gets(buf, bufsize, &st->reader);
    if (rv == APR_SUCCESS) {
        /* Error messages and mod_macro's "used on line N of" then name the
         * manifest's line; the reader has already counted this one. */
        if (st->reader.line < st->nentries) {
            st->cfg->line_number = st->entries[st->reader.line].line;
        }
        return rv;
    }
    if (rv == APR_EOF && bufsize >= 2) {
        mg_stream_resume(st);
        memcpy(buf, "\n", 2);
        return APR_SUCCESS;
    }
    return rv;
}

static apr_status_t mg_cfg_getch(char *ch, void *param)
{
    mg_stream_t *st = param;
    apr_status_t rv;

    if (st->resumed) {
        return st->next->getch(ch, st->next->param);
    }
    rv = mg_reader_getc(ch, &st->reader);
    if (rv == APR_EOF) {
        mg_stream_resume(st);
        *ch = LF;
        return APR_SUCCESS;
    }
    return rv;
}

static apr_status_t mg_cfg_close(void *param)
{
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* MacroGenerate                                                       */
/* ------------------------------------------------------------------ */

/*
 * Check, before any entry is expanded, that mod_macro is loaded and that
 * "Use <macro> <domain> <certdir> [args]" is a valid use of the macro, by
 * running mod_macro's own Use on a copy of cmd with placeholder values.
 * Otherwise an empty manifest would let a configuration with an undefined
 * macro pass "httpd -t", only to fail at the restart that brings the first
 * certificate.  The expansion the trial produces goes to the copy and is
 * never read.
 */
static const char *mg_check_macro(cmd_parms *cmd, void *mconfig,
                                  const char *macro, const char *extra)
{
    module *mod = ap_find_linked_module("mod_macro.c");
    const command_rec *use;
    cmd_parms trial;
    const char *err;

    if (!mod) {
        return apr_psprintf(cmd->pool, "%s needs mod_macro: load it "
                            "(LoadModule macro_module "
                            "modules/mod_macro.so) and define the macro "
                            "before %s", cmd->cmd->name, cmd->cmd->name);
    }
    use = mod->cmds ? ap_find_command("Use", mod->cmds) : NULL;
    if (!use || use->args_how != RAW_ARGS) {
        return apr_psprintf(cmd->pool, "%s: the loaded mod_macro has no "
                            "Use directive it can call", cmd->cmd->name);
    }
    trial = *cmd;
    err = use->AP_RAW_ARGS(&trial, mconfig,
                           apr_pstrcat(cmd->temp_pool, macro,
                                       " " MG_PROBE_ARGS, *extra ? " " : "",
                                       extra, NULL));
    if (err) {
        return apr_psprintf(cmd->pool, "%s: macro '%s' cannot be used as "
                            "'Use %s <domain> <certdir>%s': %s",
                            cmd->cmd->name, macro, macro,
                            *extra ? " <extra args>" : "", err);
    }
    return NULL;
}

/*
 * The entries whose files can be served, in manifest order, read as a
 * stream (lib/cs_manifest.h: no size limit, one buffer of the file in
 * memory).  Malformed lines and entries with unusable files are logged
 * once each, in line order.  A manifest that does not exist yields no
 * entries with a warning, so that a new proxy, before mod_certsync's
 * first run, starts; one that exists but cannot be read (or is refused
 * as a whole) is an error, since going on would silently drop every
 * domain it lists.
 */
static const char *mg_read_manifest(apr_array_header_t **usable,
                                    int *skipped, cmd_parms *cmd,
                                    const char *path)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    cs_manifest_entry_t *x;
    const char *why, *file;
    apr_status_t rv;

    *usable = apr_array_make(cmd->temp_pool, 64,
                             sizeof(cs_manifest_entry_t));
    *skipped = 0;
    rv = cs_manifest_open(&r, &why, cmd->temp_pool, path);
    if (APR_STATUS_IS_ENOENT(rv)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, NULL,
                     MGLOGNO(00001) "%s: manifest %s does not exist: no "
                     "entries (line %d of %s)", cmd->cmd->name, path,
                     cmd->config_file->line_number, cmd->config_file->name);
        return NULL;
    }
    if (rv == APR_EINVAL && why) {
        return apr_psprintf(cmd->pool, "%s: manifest %s refused: %s",
                            cmd->cmd->name, path, why);
    }
    if (rv == APR_EINVAL) {
        return apr_psprintf(cmd->pool, "%s: manifest %s is not a regular "
                            "file", cmd->cmd->name, path);
    }
    while (rv == APR_SUCCESS
           && (rv = cs_manifest_next(&e, &pr, r)) == APR_SUCCESS) {
        if (pr) {
            /* docs/manifest.md: each skipped line once, in line order,
             * and counted in MG00004. */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, NULL,
                         MGLOGNO(00002) "%s: %s", cmd->cmd->name,
                         cs_manifest_problem_text(cmd->temp_pool, path,
                                                  pr));
            ++*skipped;
        }
        else if ((why = mg_entry_check_files(&file, cmd->temp_pool, e))
                 != NULL) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, NULL,
                         MGLOGNO(00003) "%s: skipping %s (line %d of %s): "
                         "%s: %s", cmd->cmd->name, e->domain, e->line,
                         path, file, why);
            ++*skipped;
        }
        else {
            /* The reader's strings last until its next line. */
            x = apr_array_push(*usable);
            *x = *e;
            x->domain = apr_pstrdup(cmd->temp_pool, e->domain);
            x->certdir = apr_pstrdup(cmd->temp_pool, e->certdir);
            x->name = apr_pstrdup(cmd->temp_pool, e->name);
        }
    }
    if (rv != APR_EOF) {
        return apr_psprintf(cmd->pool, "%s: cannot read manifest %s: %pm",
                            cmd->cmd->name, path, &rv);
    }
    return NULL;
}

/* -t -D DUMP_MACRO_GEN: print what is generated, as configuration (the
 * header is a comment), like -D DUMP_VHOSTS prints the virtual hosts. */
static void mg_dump(cmd_parms *cmd, const char *macro, const char *path,
                    int used, int skipped, const char *lines,
                    apr_size_t len)
{
    apr_file_t *out = NULL;

    if (apr_file_open_stdout(&out, cmd->temp_pool) != APR_SUCCESS) {
        return;
    }
    apr_file_printf(out, "# %s %s %s (line %d of %s): %d entries, "
                    "%d skipped\n", cmd->cmd->name, macro, path,
                    cmd->config_file->line_number, cmd->config_file->name,
                    used, skipped);
    apr_file_write_full(out, lines, len, NULL);
}

static const char *mg_generate(cmd_parms *cmd, void *mconfig,
                               const char *args)
{
    const char *macro, *path, *extra, *err;
    apr_array_header_t *usable;
    mg_stream_t *st;
    apr_size_t llen = 0;
    char *lines;
    int skipped = 0;

    macro = ap_getword_conf(cmd->temp_pool, &args);
    path = ap_getword_conf(cmd->temp_pool, &args);
    extra = args;               /* the reader has trimmed the line's end */
    if (!*macro || !*path) {
        return apr_psprintf(cmd->pool, "%s takes a macro name and a "
                            "manifest path: %s MacroName /path/to/manifest "
                            "[args...]", cmd->cmd->name, cmd->cmd->name);
    }
    if (strpbrk(macro, " \t\"'")) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a macro name (one "
                            "word, no quotes)", cmd->cmd->name, macro);
    }
    if ((err = mg_check_macro(cmd, mconfig, macro, extra)) != NULL) {
        return err;
    }
    if (!(path = ap_server_root_relative(cmd->temp_pool, path))) {
        return apr_psprintf(cmd->pool, "%s: invalid manifest path",
                            cmd->cmd->name);
    }

    if ((err = mg_read_manifest(&usable, &skipped, cmd, path)) != NULL) {
        return err;
    }
    lines = mg_expand_use_lines(&llen, cmd->temp_pool, macro, extra, usable);

    ap_log_error(APLOG_MARK, APLOG_INFO, 0, NULL, MGLOGNO(00004)
                 "%s %s %s: %d entries, %d skipped", cmd->cmd->name, macro,
                 path, usable->nelts, skipped);
    if (ap_exists_config_define(MG_DUMP_DEFINE)
        && ap_state_query(AP_SQ_RUN_MODE) != AP_SQ_RM_NORMAL) {
        mg_dump(cmd, macro, path, usable->nelts, skipped, lines, llen);
    }
    if (!usable->nelts) {
        return NULL;
    }

    st = apr_palloc(cmd->temp_pool, sizeof(*st));
    mg_reader_init(&st->reader, lines, llen);
    st->entries = (const cs_manifest_entry_t *)usable->elts;
    st->nentries = usable->nelts;
    st->next = cmd->config_file;
    st->upper = &cmd->config_file;
    st->resumed = 0;
    /* The name carries the enclosing file's, so mod_macro's recursion check
     * (it looks for "macro 'name'" in it) still sees a MacroGenerate inside
     * the macro it expands. */
    st->cfg = ap_pcfg_open_custom(cmd->temp_pool,
                                  apr_psprintf(cmd->temp_pool,
                                               "%s (%s on line %d of %s)",
                                               path, cmd->cmd->name,
                                               st->next->line_number,
                                               st->next->name),
                                  st, mg_cfg_getch, mg_cfg_getstr,
                                  mg_cfg_close);
    cmd->config_file = st->cfg;
    return NULL;
}

/*
 * MacroGenerateServerName domain: in a <VirtualHost>, ServerName and, for a
 * wildcard, ServerAlias for the certificate of domain (mg_server_names).
 * A macro that named its virtual host with "ServerAlias $domain" (httpd
 * refuses a wildcard ServerName) left it the main server's name, or the
 * reverse lookup of its address, and mod_ssl warned at every start, once
 * per virtual host, that the certificate does not match it (AH01909).
 * Sets the fields core's ServerName and ServerAlias set.
 */
static const char *mg_server_name(cmd_parms *cmd, void *mconfig,
                                  const char *domain)
{
    server_rec *s = cmd->server;
    const char *name, *alias, *why;

    if (!s->is_virtual || !s->wild_names) {
        return apr_psprintf(cmd->pool, "%s only used in <VirtualHost>",
                            cmd->cmd->name);
    }
    why = mg_server_names(&name, &alias, cmd->pool, domain);
    if (why) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a domain name: %s",
                            cmd->cmd->name, domain, why);
    }
    s->server_hostname = apr_pstrdup(cmd->pool, name);
    if (alias) {
        *(const char **)apr_array_push(s->wild_names) = alias;
    }
    return NULL;
}

static const command_rec mg_cmds[] = {
    AP_INIT_RAW_ARGS("MacroGenerate", mg_generate, NULL,
                     EXEC_ON_READ | RSRC_CONF,
                     "A mod_macro macro and a certsync manifest: "
                     "'Use macro <domain> <certdir> [args...]' for each "
                     "entry"),
    AP_INIT_TAKE1("MacroGenerateServerName", mg_server_name, NULL,
                  RSRC_CONF,
                  "A domain: the virtual host's ServerName (for a "
                  "wildcard *.parent, _.parent, with the wildcard as "
                  "ServerAlias)"),
    { NULL }
};

AP_DECLARE_MODULE(macro_gen) = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* create per-directory config */
    NULL,                       /* merge per-directory config */
    NULL,                       /* create per-server config */
    NULL,                       /* merge per-server config */
    mg_cmds,
    NULL                        /* register hooks */
};
