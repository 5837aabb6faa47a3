/*
 * cs_log.h: the one log callback of the suite's pure code.
 *
 * Pure code reports through a cs_log_fn and a baton; the glue hands the
 * message to ap_log_error at the same level and adds its own tag.  The
 * levels are syslog's (<syslog.h>), which are also httpd's APLOG_* on
 * every Unix (http_log.h defines them so), so no glue needs a mapping;
 * configure checks the equality against the target httpd's headers.
 * A NULL function means: do not log.
 *
 * The levels run from the most to the least severe, as syslog's do, so
 * that "level <= CS_LOG_WARN" means "a warning or worse".  CRIT is for
 * what needs an operator now (a failed rollout), NOTICE for the
 * milestones of normal operation (a rollout complete).
 */
#ifndef CS_LOG_H
#define CS_LOG_H

#include <syslog.h>

typedef enum {
    CS_LOG_CRIT = LOG_CRIT,
    CS_LOG_ERR = LOG_ERR,
    CS_LOG_WARN = LOG_WARNING,
    CS_LOG_NOTICE = LOG_NOTICE,
    CS_LOG_INFO = LOG_INFO,
    CS_LOG_DEBUG = LOG_DEBUG
} cs_log_level_t;

typedef void cs_log_fn(void *baton, cs_log_level_t level, const char *msg);

/*
 * The log tags of the two modules whose pure code logs through cs_log_fn:
 * glue and pure code spell a tag with the same macro and share one
 * numbering, never reused (the next free number is in each module's
 * private header; t/lint/logtags.pl fails on a tag used twice).
 */
#define CSLOGNO(n) "CS" #n ": "         /* mod_certservice */
#define CYLOGNO(n) "CY" #n ": "         /* mod_certsync */

#endif /* CS_LOG_H */
