/*
 * mg_expand.c: MacroGenerate's generated lines and their reader.
 *
 * With 100,000 entries, anything per line must be O(1): the lines are
 * rendered once into one buffer, and reading moves a cursor through it.
 */
#include <string.h>

#include <apr_strings.h>

#include "mg_expand.h"
#include "cs_manifest.h"
#include "cs_name.h"

#define MG_USE  "Use "

char *mg_expand_use_lines(apr_size_t *len, apr_pool_t *p, const char *macro,
                          const char *extra,
                          const apr_array_header_t *entries)
{
    const cs_manifest_entry_t *e =
        (const cs_manifest_entry_t *)entries->elts;
    apr_size_t mlen = strlen(macro);
    apr_size_t xlen = extra ? strlen(extra) : 0;
    apr_size_t total = 0;
    char *buf, *o;
    int i;

    /* "Use " macro ' ' domain ' ' certdir [' ' extra] '\n' */
    for (i = 0; i < entries->nelts; i++) {
        total += sizeof(MG_USE) - 1 + mlen + 1 + strlen(e[i].domain) + 1
                 + strlen(e[i].certdir) + (xlen ? 1 + xlen : 0) + 1;
    }
    o = buf = apr_palloc(p, total + 1);
    for (i = 0; i < entries->nelts; i++) {
        apr_size_t n;

        memcpy(o, MG_USE, sizeof(MG_USE) - 1);
        o += sizeof(MG_USE) - 1;
        memcpy(o, macro, mlen);
        o += mlen;
        *o++ = ' ';
        n = strlen(e[i].domain);
        memcpy(o, e[i].domain, n);
        o += n;
        *o++ = ' ';
        n = strlen(e[i].certdir);
        memcpy(o, e[i].certdir, n);
        o += n;
        if (xlen) {
            *o++ = ' ';
            memcpy(o, extra, xlen);
            o += xlen;
        }
        *o++ = '\n';
    }
    *o = '\0';
    *len = total;
    return buf;
}

const char *mg_server_names(const char **name, const char **alias,
                            apr_pool_t *p, const char *domain)
{
    const char *why;
    char *lower;

    *name = *alias = NULL;
    why = cs_name_check(p, domain, strlen(domain), CS_NAME_ANY_CASE);
    if (why) {
        return why;
    }
    lower = apr_palloc(p, CS_NAME_MAX + 1);
    cs_name_lower(lower, domain);       /* passes: checked above */
    if (lower[0] == '*') {
        *alias = lower;
        *name = apr_pstrcat(p, "_", lower + 1, NULL);
    }
    else {
        *name = lower;
    }
    return NULL;
}

void mg_reader_init(mg_reader_t *r, const char *buf, apr_size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->line = -1;
}

static void mg_reader_start(mg_reader_t *r)
{
    if (r->pos == 0 || r->buf[r->pos - 1] == '\n') {
        r->line++;
    }
}

apr_status_t mg_reader_gets(char *out, apr_size_t size, mg_reader_t *r)
{
    const char *nl;
    apr_size_t n;

    if (size < 2) {
        return APR_EINVAL;
    }
    if (r->pos >= r->len) {
        return APR_EOF;
    }
    mg_reader_start(r);
    n = r->len - r->pos;
    if (n > size - 1) {
        n = size - 1;
    }
    if ((nl = memchr(r->buf + r->pos, '\n', n)) != NULL) {
        n = (apr_size_t)(nl - (r->buf + r->pos)) + 1;
    }
    memcpy(out, r->buf + r->pos, n);
    out[n] = '\0';
    r->pos += n;
    return APR_SUCCESS;
}

apr_status_t mg_reader_getc(char *ch, mg_reader_t *r)
{
    if (r->pos >= r->len) {
        return APR_EOF;
    }
    mg_reader_start(r);
    *ch = r->buf[r->pos++];
    return APR_SUCCESS;
}
