/*
 * cs_manifest.c: read and write the certsync manifest.  See
 * cs_manifest.h and docs/manifest.md.
 *
 * The format is deliberately narrow: the fields end up as arguments of
 * generated configuration lines (mod_macro_gen) and as paths (the store),
 * so anything that the configuration reader could interpret (quotes,
 * "${", whitespace) is refused here rather than escaped.
 *
 * The reader holds CS_MANIFEST_READ_BUF bytes of the file at a time and
 * hands out one line at a time; a line longer than CS_MANIFEST_LINE_MAX
 * is skipped without being held.  The in-memory parse goes through the
 * same reader, so the fuzzer's chunked reads and the whole-buffer parse
 * are one code path.
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "cs_manifest.h"
#include "cs_name.h"

/* Both headers have this length. */
#define HEADER_LEN      (sizeof(CS_MANIFEST_HEADER_V2) - 1)
/* What every version's header starts with, to tell "other version" from
 * "not a manifest at all". */
#define HEADER_STEM     "# certsync manifest v"
/* The characters refused in a certdir besides whitespace, controls and
 * non-ASCII: quoting and escapes of the configuration reader, "${" of
 * variable expansion, and the section brackets. */
#define CERTDIR_REFUSED "\"'\\$<>"
/* The reader's buffer: many lines per read(), and more than one line. */
#define CS_MANIFEST_READ_BUF    (64 * 1024)

struct cs_manifest_reader_t {
    apr_pool_t *p;              /* the duplicate index, when there is one */
    apr_pool_t *scratch;        /* what one cs_manifest_next returns */
    cs_manifest_read_fn *read;
    cs_manifest_seek_fn *seek;
    void *baton;
    apr_off_t consumed;         /* bytes read from the source */
    const char *base;           /* for relative certdirs, or NULL */
    int version;
    /* The duplicate rule without a name per line in memory: while the
     * names come in increasing order (as mod_certsync writes them) a
     * duplicate can only be the previous name.  The first name out of
     * order builds the index of every name before it (a second pass over
     * that part, through seek), and from then on every name goes in. */
    char prev[CS_NAME_MAX + 1]; /* the last accepted name */
    int prev_line;              /* its line; 0: none yet */
    apr_hash_t *seen;           /* lower-case name -> first line, or NULL
                                 * while the names are in order */
    int index_to;               /* building the index: stop after this
                                 * line (0: not) */
    char *buf;
    apr_size_t start, end;      /* unread bytes: buf[start, end) */
    int eof;
    int line;                   /* of the line last read */
    cs_manifest_entry_t e;
    cs_manifest_problem_t pr;
};

/* One line as the reader found it. */
typedef struct {
    const char *s;
    apr_size_t len;             /* without LF and one CR before it */
    int too_long;               /* s holds only the first LINE_MAX bytes */
    int long_blank;             /* too long, and only spaces and tabs (and
                                 * a CR at its end) */
} line_t;

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

const char *cs_manifest_certdir_check(apr_pool_t *p, const char *s,
                                      apr_size_t len, int relative_ok)
{
    apr_size_t i;

    if (len == 0) {
        return "empty certdir";
    }
    if (s[0] != '/' && !relative_ok) {
        return "certdir is not an absolute path";
    }
    if (len > CS_MANIFEST_CERTDIR_MAX) {
        return "certdir longer than 1024 bytes";
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x21 || c > 0x7e || strchr(CERTDIR_REFUSED, c)) {
            return apr_psprintf(p, "character '%s' is not allowed in a "
                                "certdir", cs_printable(p, s + i, 1, 1));
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Lines                                                               */
/* ------------------------------------------------------------------ */

static apr_status_t fill(cs_manifest_reader_t *r)
{
    apr_size_t n;
    apr_status_t rv;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    n = CS_MANIFEST_READ_BUF - r->end;
    if ((rv = r->read(r->baton, r->buf + r->end, &n)) != APR_SUCCESS) {
        return rv;
    }
    if (n == 0) {
        r->eof = 1;
    }
    r->end += n;
    r->consumed += (apr_off_t)n;
    return APR_SUCCESS;
}

/* Whether a line is blank, over its pieces: spaces and tabs, and one CR
 * at its very end (as for a short line, whose CR before the LF is
 * dropped).  *cr: the last byte seen was a CR. */
static void blank_scan(const char *s, apr_size_t n, int *blank, int *cr)
{
    apr_size_t i;

    for (i = 0; *blank && i < n; i++) {
        if (*cr || (!is_space(s[i]) && s[i] != '\r')) {
            *blank = 0;
        }
        *cr = s[i] == '\r';
    }
}

/* The rest of a line too long to hold: read up to its LF (or the end),
 * noting whether it is blank. */
static apr_status_t skip_rest(cs_manifest_reader_t *r, int *blank, int *cr)
{
    apr_status_t rv;
    char *lf;
    apr_size_t stop;

    for (;;) {
        lf = memchr(r->buf + r->start, '\n', r->end - r->start);
        stop = lf ? (apr_size_t)(lf - r->buf) : r->end;
        blank_scan(r->buf + r->start, stop - r->start, blank, cr);
        if (lf) {
            r->start = stop + 1;
            return APR_SUCCESS;
        }
        r->start = r->end;
        if (r->eof) {
            return APR_SUCCESS;
        }
        if ((rv = fill(r)) != APR_SUCCESS) {
            return rv;
        }
    }
}

/* The next line into *l; APR_EOF when there is none. */
static apr_status_t get_line(line_t *l, cs_manifest_reader_t *r)
{
    apr_status_t rv;
    char *lf;
    apr_size_t n;
    int cr = 0;

    for (;;) {
        n = r->end - r->start;
        lf = memchr(r->buf + r->start, '\n', n);
        if (lf && (apr_size_t)(lf - (r->buf + r->start))
                  <= CS_MANIFEST_LINE_MAX) {
            l->s = r->buf + r->start;
            l->len = (apr_size_t)(lf - l->s);
            r->start += l->len + 1;
            break;
        }
        if (lf || n > CS_MANIFEST_LINE_MAX) {
            /* Too long: its first LINE_MAX bytes, the rest skipped.  The
             * prefix stays in the buffer until the next call: skip_rest
             * only moves it when it reads more, so copy it first. */
            char *prefix = apr_pmemdup(r->scratch, r->buf + r->start,
                                       CS_MANIFEST_LINE_MAX);

            l->s = prefix;
            l->len = CS_MANIFEST_LINE_MAX;
            l->too_long = 1;
            l->long_blank = 1;
            blank_scan(prefix, l->len, &l->long_blank, &cr);
            r->start += CS_MANIFEST_LINE_MAX;
            r->line++;
            return skip_rest(r, &l->long_blank, &cr);
        }
        if (r->eof) {
            if (n == 0) {
                return APR_EOF;
            }
            /* A last line without LF. */
            l->s = r->buf + r->start;
            l->len = n;
            r->start = r->end;
            break;
        }
        if ((rv = fill(r)) != APR_SUCCESS) {
            return rv;
        }
    }
    if (l->len > 0 && l->s[l->len - 1] == '\r') {
        l->len--;
    }
    l->too_long = 0;
    l->long_blank = 0;
    r->line++;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Entries                                                             */
/* ------------------------------------------------------------------ */

static const cs_manifest_problem_t *problem(cs_manifest_reader_t *r,
                                            const char *domain,
                                            apr_size_t dlen,
                                            const char *reason)
{
    r->pr.line = r->line;
    r->pr.domain = domain ? cs_printable(r->scratch, domain, dlen, 80)
                          : NULL;
    r->pr.reason = reason;
    return &r->pr;
}

/* A line longer than CS_MANIFEST_LINE_MAX: ignored if a comment or
 * blank, else skipped with the first field's start as its domain. */
static const cs_manifest_problem_t *long_line(cs_manifest_reader_t *r,
                                              const line_t *l)
{
    apr_size_t dlen;

    if (l->s[0] == '#' || l->long_blank) {
        return NULL;
    }
    if (is_space(l->s[0])) {
        return problem(r, NULL, 0, "leading whitespace");
    }
    for (dlen = 0; dlen < l->len && !is_space(l->s[dlen]); dlen++) {
    }
    return problem(r, l->s, dlen, "line longer than 4096 bytes");
}

/*
 * One line after the header: an entry (r->e, returns 1), a problem (*pr,
 * returns 0) or nothing (blank, comment: returns 0, *pr NULL).
 */
static apr_status_t build_index(cs_manifest_reader_t *r);

static int parse_line(const cs_manifest_problem_t **pr,
                      cs_manifest_reader_t *r, const line_t *l)
{
    const char *s = l->s, *rest, *why;
    apr_size_t i, dlen, rlen, len = l->len;
    apr_pool_t *p = r->scratch;
    apr_status_t rv;
    char *key;
    void *first;

    *pr = NULL;
    if (l->too_long) {
        *pr = long_line(r, l);
        return 0;
    }
    for (i = 0; i < len && is_space(s[i]); i++) {
    }
    if (i == len || s[0] == '#') {
        return 0;               /* blank or comment */
    }
    if (memchr(s, '\0', len)) {
        *pr = problem(r, NULL, 0, "NUL byte in the line");
        return 0;
    }
    if (i > 0) {
        *pr = problem(r, NULL, 0, "leading whitespace");
        return 0;
    }
    for (dlen = 0; dlen < len && !is_space(s[dlen]); dlen++) {
    }
    if (dlen == len) {
        *pr = problem(r, s, dlen,
                      "no certdir (expected '<domain> <certdir>')");
        return 0;
    }
    rest = s + dlen + 1;
    rlen = len - dlen - 1;
    if (rlen == 0) {
        *pr = problem(r, s, dlen, "trailing whitespace");
        return 0;
    }
    if (is_space(rest[0])) {
        *pr = problem(r, s, dlen,
                      "more than one space or tab between the fields");
        return 0;
    }
    for (i = 0; i < rlen && !is_space(rest[i]); i++) {
    }
    if (i < rlen) {
        apr_size_t j = i;

        while (j < rlen && is_space(rest[j])) {
            j++;
        }
        *pr = problem(r, s, dlen, j == rlen
                      ? "trailing whitespace"
                      : "extra fields after the certdir");
        return 0;
    }
    if ((why = cs_name_check(p, s, dlen, CS_NAME_ANY_CASE)) != NULL
        || (why = cs_manifest_certdir_check(p, rest, rlen,
                                            r->version >= 2)) != NULL) {
        *pr = problem(r, s, dlen, why);
        return 0;
    }
    /* Names are case-insensitive; a second vhost for the same name would
     * never be chosen, so only the first line counts. */
    key = apr_pstrmemdup(p, s, dlen);
    for (i = 0; i < dlen; i++) {
        if (key[i] >= 'A' && key[i] <= 'Z') {
            key[i] = (char)(key[i] - 'A' + 'a');
        }
    }
    if (r->seen == NULL && r->prev_line && strcmp(key, r->prev) < 0
        && (rv = build_index(r)) != APR_SUCCESS) {
        *pr = problem(r, s, dlen, apr_psprintf(p, "cannot check for an "
                                               "earlier line of this domain: "
                                               "%pm", &rv));
        return 0;
    }
    first = r->seen ? apr_hash_get(r->seen, key, (apr_ssize_t)dlen)
          : (r->prev_line && strcmp(key, r->prev) == 0)
            ? (void *)(apr_uintptr_t)r->prev_line : NULL;
    if (first != NULL) {
        *pr = problem(r, s, dlen,
                      apr_psprintf(p, "duplicate domain, first listed on "
                                   "line %d", (int)(apr_uintptr_t)first));
        return 0;
    }
    /* After the duplicate rule, so that a line's reason does not depend
     * on the base (fuzz_manifest compares the two). */
    r->e.certdir = apr_pstrmemdup(p, rest, rlen);
    if (rest[0] != '/' && r->base) {
        r->e.certdir = apr_pstrcat(p, r->base,
                                   r->base[strlen(r->base) - 1] == '/'
                                   ? "" : "/", r->e.certdir, NULL);
        if (strlen(r->e.certdir) > CS_MANIFEST_CERTDIR_MAX) {
            *pr = problem(r, s, dlen, "certdir longer than 1024 bytes "
                          "once made absolute");
            return 0;
        }
    }
    if (r->seen) {
        apr_hash_set(r->seen, apr_pstrmemdup(r->p, key, dlen),
                     (apr_ssize_t)dlen, (void *)(apr_uintptr_t)r->line);
    }
    memcpy(r->prev, key, dlen + 1);
    r->prev_line = r->line;
    r->e.domain = apr_pstrmemdup(p, s, dlen);
    r->e.name = key;
    r->e.line = r->line;
    return 1;
}

/*
 * The first name out of order: index every accepted name before this
 * line with a second reader over the same source from its start (the
 * same parse, so the same names), then put the source back where this
 * reader was.
 */
static apr_status_t build_index(cs_manifest_reader_t *r)
{
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *sub;
    const char *why;
    apr_status_t rv, rv2;

    if ((rv = r->seek(r->baton, 0)) != APR_SUCCESS) {
        return rv;
    }
    /* In r's pool: the index stays when sub's scratch goes. */
    /* The same base: a line it makes too long is not an entry. */
    rv = cs_manifest_reader_create(&sub, &why, r->p, r->read, NULL,
                                   r->baton, r->base);
    if (rv == APR_SUCCESS) {
        sub->index_to = r->line - 1;
        while ((rv = cs_manifest_next(&e, &pr, sub)) == APR_SUCCESS) {
        }
        apr_pool_destroy(sub->scratch);
        if (rv == APR_EOF) {
            r->seen = sub->seen;
            rv = APR_SUCCESS;
        }
    }
    rv2 = r->seek(r->baton, r->consumed);
    return rv != APR_SUCCESS ? rv : rv2;
}

apr_status_t cs_manifest_next(const cs_manifest_entry_t **e,
                              const cs_manifest_problem_t **pr,
                              cs_manifest_reader_t *r)
{
    apr_status_t rv;
    line_t l;

    *e = NULL;
    *pr = NULL;
    apr_pool_clear(r->scratch);
    for (;;) {
        if (r->index_to && r->line >= r->index_to) {
            return APR_EOF;
        }
        if ((rv = get_line(&l, r)) != APR_SUCCESS) {
            return rv;
        }
        if (parse_line(pr, r, &l)) {
            *e = &r->e;
            return APR_SUCCESS;
        }
        if (*pr) {
            return APR_SUCCESS;
        }
    }
}

int cs_manifest_version(const cs_manifest_reader_t *r)
{
    return r->version;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

apr_status_t cs_manifest_reader_create(cs_manifest_reader_t **pr,
                                       const char **why, apr_pool_t *p,
                                       cs_manifest_read_fn *read,
                                       cs_manifest_seek_fn *seek,
                                       void *baton, const char *base)
{
    cs_manifest_reader_t *r = apr_pcalloc(p, sizeof(*r));
    apr_status_t rv;
    line_t l;

    *pr = NULL;
    *why = NULL;
    r->p = p;
    apr_pool_create(&r->scratch, p);
    r->read = read;
    r->seek = seek;
    r->baton = baton;
    r->base = (base && *base) ? apr_pstrdup(p, base) : NULL;
    /* Without seek, no second pass: the index from the start. */
    r->seen = seek ? NULL : apr_hash_make(p);
    r->buf = apr_palloc(p, CS_MANIFEST_READ_BUF);

    rv = get_line(&l, r);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return rv;
    }
    if (rv == APR_SUCCESS && !l.too_long && l.len == HEADER_LEN
        && memcmp(l.s, CS_MANIFEST_HEADER_V2, HEADER_LEN) == 0) {
        r->version = 2;
    }
    else if (rv == APR_SUCCESS && !l.too_long && l.len == HEADER_LEN
             && memcmp(l.s, CS_MANIFEST_HEADER_V1, HEADER_LEN) == 0) {
        r->version = 1;
    }
    else if (rv == APR_EOF) {
        *why = "empty file (a manifest starts with the line '"
               CS_MANIFEST_HEADER "')";
        return APR_EINVAL;
    }
    else if (l.len > sizeof(HEADER_STEM) - 1
             && memcmp(l.s, HEADER_STEM, sizeof(HEADER_STEM) - 1) == 0) {
        *why = apr_psprintf(p, "unsupported manifest version '%s' (this "
                            "module reads '" CS_MANIFEST_HEADER_V1 "' and '"
                            CS_MANIFEST_HEADER_V2 "')",
                            cs_printable(p, l.s, l.len, 80));
        return APR_EINVAL;
    }
    else {
        *why = "not a certsync manifest (the first line must be '"
               CS_MANIFEST_HEADER_V2 "' or '" CS_MANIFEST_HEADER_V1 "')";
        return APR_EINVAL;
    }
    *pr = r;
    return APR_SUCCESS;
}

/* A file: notices one that changes size while it is read (written in
 * place rather than replaced), as cs_file_read does. */
typedef struct {
    apr_file_t *f;
    apr_off_t size;
    apr_off_t got;
} file_src_t;

static apr_status_t file_read(void *baton, char *buf, apr_size_t *len)
{
    file_src_t *src = baton;
    apr_status_t rv = apr_file_read(src->f, buf, len);

    if (APR_STATUS_IS_EOF(rv)) {
        *len = 0;
        rv = APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    src->got += (apr_off_t)*len;
    if (src->got > src->size || (*len == 0 && src->got != src->size)) {
        return APR_EAGAIN;
    }
    return APR_SUCCESS;
}

static apr_status_t file_seek(void *baton, apr_off_t offset)
{
    file_src_t *src = baton;
    apr_off_t at = offset;
    apr_status_t rv = apr_file_seek(src->f, APR_SET, &at);

    if (rv == APR_SUCCESS && at != offset) {
        rv = APR_EAGAIN;
    }
    src->got = offset;
    return rv;
}

apr_status_t cs_manifest_open(cs_manifest_reader_t **r, const char **why,
                              apr_pool_t *p, const char *path)
{
    file_src_t *src = apr_pcalloc(p, sizeof(*src));
    apr_finfo_t fi;
    apr_status_t rv;
    const char *slash;

    *r = NULL;
    *why = NULL;
    rv = apr_file_open(&src->f, path, APR_FOPEN_READ | APR_FOPEN_BINARY,
                       APR_FPROT_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if ((rv = apr_file_info_get(&fi, APR_FINFO_TYPE | APR_FINFO_SIZE,
                                src->f)) != APR_SUCCESS) {
        return rv;
    }
    if (fi.filetype != APR_REG) {
        return APR_EINVAL;
    }
    src->size = fi.size;
    slash = strrchr(path, '/');
    return cs_manifest_reader_create(r, why, p, file_read, file_seek, src,
                                     slash == NULL ? "."
                                     : slash == path ? "/"
                                     : apr_pstrmemdup(p, path,
                                                      slash - path));
}

/* Memory: the whole buffer at once. */
typedef struct {
    const char *buf;
    apr_size_t len;
    apr_size_t pos;
} mem_src_t;

static apr_status_t mem_read(void *baton, char *buf, apr_size_t *len)
{
    mem_src_t *src = baton;
    apr_size_t n = src->len - src->pos;

    if (n > *len) {
        n = *len;
    }
    memcpy(buf, src->buf + src->pos, n);
    src->pos += n;
    *len = n;
    return APR_SUCCESS;
}

static apr_status_t mem_seek(void *baton, apr_off_t offset)
{
    mem_src_t *src = baton;

    if (offset < 0 || (apr_uint64_t)offset > src->len) {
        return APR_EINVAL;
    }
    src->pos = (apr_size_t)offset;
    return APR_SUCCESS;
}

const char *cs_manifest_parse(cs_manifest_t **pm, apr_pool_t *p,
                              const char *buf, apr_size_t len)
{
    cs_manifest_t *m = apr_palloc(p, sizeof(*m));
    const cs_manifest_entry_t *e;
    const cs_manifest_problem_t *pr;
    cs_manifest_reader_t *r;
    mem_src_t src;
    const char *why;
    apr_pool_t *rp;

    m->entries = apr_array_make(p, 64, sizeof(cs_manifest_entry_t));
    m->problems = apr_array_make(p, 4, sizeof(cs_manifest_problem_t));
    *pm = m;
    src.buf = buf;
    src.len = len;
    src.pos = 0;
    apr_pool_create(&rp, p);
    if (cs_manifest_reader_create(&r, &why, rp, mem_read, mem_seek, &src,
                                  NULL)
        != APR_SUCCESS) {
        why = apr_pstrdup(p, why);
        apr_pool_destroy(rp);
        return why;
    }
    while (cs_manifest_next(&e, &pr, r) == APR_SUCCESS) {
        if (e) {
            cs_manifest_entry_t *x = apr_array_push(m->entries);

            x->domain = apr_pstrdup(p, e->domain);
            x->certdir = apr_pstrdup(p, e->certdir);
            x->name = apr_pstrdup(p, e->name);
            x->line = e->line;
        }
        else {
            cs_manifest_problem_t *x = apr_array_push(m->problems);

            x->line = pr->line;
            x->domain = pr->domain ? apr_pstrdup(p, pr->domain) : NULL;
            x->reason = apr_pstrdup(p, pr->reason);
        }
    }
    apr_pool_destroy(rp);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

typedef apr_status_t sink_fn(void *baton, const char *s, apr_size_t len);

/* One entry's line, checked first (the writer never writes what a reader
 * would skip). */
static apr_status_t emit_entry(const char **why, sink_fn *sink, void *baton,
                               apr_pool_t *p, const char *domain,
                               const char *certdir)
{
    apr_status_t rv;

    *why = NULL;
    if (!domain || !certdir) {
        *why = "no domain or certdir";
        return APR_EINVAL;
    }
    if ((*why = cs_name_check(p, domain, strlen(domain), CS_NAME_ANY_CASE))
        != NULL
        || (*why = cs_manifest_certdir_check(p, certdir, strlen(certdir), 1))
           != NULL) {
        return APR_EINVAL;
    }
    if ((rv = sink(baton, domain, strlen(domain)))
        || (rv = sink(baton, " ", 1))
        || (rv = sink(baton, certdir, strlen(certdir)))) {
        return rv;
    }
    return sink(baton, "\n", 1);
}

static apr_status_t emit(const char **why, sink_fn *sink, void *baton,
                         apr_pool_t *p, const apr_array_header_t *entries)
{
    const cs_manifest_entry_t *e;
    apr_pool_t *one;
    apr_status_t rv;
    int i;

    *why = NULL;
    if ((rv = sink(baton, CS_MANIFEST_HEADER "\n", HEADER_LEN + 1))) {
        return rv;
    }
    apr_pool_create(&one, p);
    for (i = 0; rv == APR_SUCCESS && i < entries->nelts; i++) {
        e = &APR_ARRAY_IDX(entries, i, cs_manifest_entry_t);
        apr_pool_clear(one);
        rv = emit_entry(why, sink, baton, one, e->domain, e->certdir);
        if (rv == APR_EINVAL && *why) {
            *why = apr_psprintf(p, "entry %d ('%s'): %s", i + 1,
                                e->domain ? cs_printable(p, e->domain,
                                                         strlen(e->domain),
                                                         80) : "", *why);
        }
    }
    apr_pool_destroy(one);
    return rv;
}

static apr_status_t file_sink(void *baton, const char *s, apr_size_t len)
{
    return apr_file_write_full(baton, s, len, NULL);
}

apr_status_t cs_manifest_write_header(apr_file_t *f)
{
    return file_sink(f, CS_MANIFEST_HEADER "\n", HEADER_LEN + 1);
}

apr_status_t cs_manifest_write_entry(const char **why, apr_file_t *f,
                                     apr_pool_t *p, const char *domain,
                                     const char *certdir)
{
    return emit_entry(why, file_sink, f, p, domain, certdir);
}

apr_status_t cs_manifest_write(const char **why, apr_file_t *f,
                               apr_pool_t *p,
                               const apr_array_header_t *entries)
{
    return emit(why, file_sink, f, p, entries);
}

typedef struct {
    apr_pool_t *p;
    char *buf;
    apr_size_t len, cap;
} text_t;

static apr_status_t text_sink(void *baton, const char *s, apr_size_t len)
{
    text_t *t = baton;

    if (t->len + len + 1 > t->cap) {
        apr_size_t cap = t->cap ? t->cap : 256;
        char *nb;

        while (t->len + len + 1 > cap) {
            cap *= 2;
        }
        nb = apr_palloc(t->p, cap);
        if (t->len) {
            memcpy(nb, t->buf, t->len);
        }
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, len);
    t->len += len;
    t->buf[t->len] = '\0';
    return APR_SUCCESS;
}

const char *cs_manifest_text(const char **why, apr_pool_t *p,
                             const apr_array_header_t *entries)
{
    text_t t = { p, NULL, 0, 0 };

    return emit(why, text_sink, &t, p, entries) == APR_SUCCESS ? t.buf
                                                               : NULL;
}

const char *cs_manifest_problem_text(apr_pool_t *p, const char *path,
                                     const cs_manifest_problem_t *pr)
{
    return apr_psprintf(p, "skipping line %d of %s%s%s%s: %s", pr->line,
                        path, pr->domain ? " (domain '" : "",
                        pr->domain ? pr->domain : "",
                        pr->domain ? "')" : "", pr->reason);
}

/* ------------------------------------------------------------------ */
/* The sorted form: lookups by binary search                           */
/* ------------------------------------------------------------------ */

/* strcmp's order for names that are not NUL-terminated. */
static int name_order(const char *a, apr_size_t alen, const char *b,
                      apr_size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

const char *cs_manifest_sorted_check(const char *buf, apr_size_t len,
                                     const char *prefix, const char *suffix)
{
    apr_size_t plen = strlen(prefix), slen = strlen(suffix);
    apr_size_t off, nlen, prev_len = 0;
    const char *line, *sp, *nl, *dir, *prev = NULL;

    if (len < HEADER_LEN + 1
        || memcmp(buf, CS_MANIFEST_HEADER_V2 "\n", HEADER_LEN + 1) != 0) {
        return "the first line is not the version 2 header";
    }
    for (off = HEADER_LEN + 1; off < len; off = (apr_size_t)(nl - buf) + 1) {
        line = buf + off;
        if ((nl = memchr(line, '\n', len - off)) == NULL) {
            return "the last line has no line end";
        }
        if ((sp = memchr(line, ' ', (apr_size_t)(nl - line))) == NULL) {
            return "a line is not a name and a certdir";
        }
        nlen = (apr_size_t)(sp - line);
        if (nlen > CS_NAME_MAX || cs_name_check(NULL, line, nlen, 0)) {
            return "a name is not a lower-case domain name";
        }
        dir = sp + 1;
        if ((apr_size_t)(nl - dir) != plen + nlen + slen
            || memcmp(dir, prefix, plen) != 0
            || memcmp(dir + plen, line, nlen) != 0
            || memcmp(dir + plen + nlen, suffix, slen) != 0) {
            return "a certdir is not the store's for its name";
        }
        if (prev && name_order(prev, prev_len, line, nlen) >= 0) {
            return "the names are not in increasing order";
        }
        prev = line;
        prev_len = nlen;
    }
    return NULL;
}

apr_size_t cs_manifest_sorted_find(int *found, const char *buf,
                                   apr_size_t len, const char *name)
{
    apr_size_t nlen = strlen(name), lo = HEADER_LEN + 1, hi = len;
    apr_size_t mid, ls, le;
    const char *nl, *sp;
    int c;

    *found = 0;
    if (len < lo) {
        return len;
    }
    /* lo and hi are line starts (or len): the lines before lo hold
     * smaller names, those from hi on larger ones. */
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        for (ls = mid; ls > lo && buf[ls - 1] != '\n'; ls--) {
        }
        nl = memchr(buf + ls, '\n', hi - ls);
        le = nl ? (apr_size_t)(nl - buf) + 1 : hi;
        sp = memchr(buf + ls, ' ', le - ls);
        c = name_order(buf + ls, sp ? (apr_size_t)(sp - buf) - ls : le - ls,
                       name, nlen);
        if (c == 0) {
            *found = 1;
            return ls;
        }
        if (c < 0) {
            lo = le;
        }
        else {
            hi = ls;
        }
    }
    return lo;
}
