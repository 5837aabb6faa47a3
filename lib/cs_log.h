/*
 * cs_log.h: the one log callback of the suite's pure code.
 *
 * Pure code reports through a cs_log_fn and a baton; the glue maps the
 * level onto ap_log_error's (ERR, WARNING, INFO, DEBUG) and adds its own
 * tag.  A NULL function means: do not log.
 */
#ifndef CS_LOG_H
#define CS_LOG_H

typedef enum {
    CS_LOG_ERR,
    CS_LOG_WARN,
    CS_LOG_INFO,
    CS_LOG_DEBUG
} cs_log_level_t;

typedef void cs_log_fn(void *baton, cs_log_level_t level, const char *msg);

#endif /* CS_LOG_H */
