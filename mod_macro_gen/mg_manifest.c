/*
 * mg_manifest.c: check that a manifest entry's files can be served (see
 * mg_manifest.h; the grammar is lib/cs_manifest.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>

#include "cs_layout.h"
#include "mg_manifest.h"

/* Check one file of a certdir. */
static const char *mg_check_file(const char **path, apr_pool_t *p,
                                 const char *dir, const char *name)
{
    char buf[CS_MANIFEST_CERTDIR_MAX + 64];
    const char *why = NULL;
    char err[128];
    struct stat st;
    int fd;

    if (strlen(dir) + strlen(name) + 2 > sizeof(buf)) {
        *path = apr_pstrcat(p, dir, "/", name, NULL);
        return "path too long";
    }
    apr_snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    /* O_NONBLOCK: a FIFO in place of the file must not hang the start. */
    fd = open(buf, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        why = apr_pstrdup(p, apr_strerror(APR_FROM_OS_ERROR(errno), err,
                                          sizeof(err)));
    }
    else {
        if (fstat(fd, &st) != 0) {
            why = apr_pstrdup(p, apr_strerror(APR_FROM_OS_ERROR(errno), err,
                                              sizeof(err)));
        }
        else if (!S_ISREG(st.st_mode)) {
            why = "not a regular file";
        }
        else if (st.st_size == 0) {
            why = "empty file";
        }
        close(fd);
    }
    if (why) {
        *path = apr_pstrdup(p, buf);
    }
    return why;
}

const char *mg_entry_check_files(const char **path, apr_pool_t *p,
                                 const cs_manifest_entry_t *e)
{
    const char *why;

    if ((why = mg_check_file(path, p, e->certdir, CS_LAYOUT_CHAIN)) != NULL) {
        return why;
    }
    return mg_check_file(path, p, e->certdir, CS_LAYOUT_KEY);
}
