/*
 * pp_private.h: definitions private to mod_proxy_protocol's httpd glue.
 */
#ifndef PP_PRIVATE_H
#define PP_PRIVATE_H

/*
 * Log tags: every message carries "PPnnnnn: ", grep-able from the log to the
 * line in the code.  Numbers are never reused: take one above every one in
 * use (t/lint/logtags.pl checks).
 */
#define PPLOGNO(n) "PP" #n ": "

#define PP_DEFAULT_TIMEOUT      apr_time_from_sec(5)
#define PP_MAX_TIMEOUT          apr_time_from_sec(3600)
#define PP_DEFAULT_MAX_HEADER   16384
#define PP_MIN_MAX_HEADER       52      /* fixed part + an IPv6 block */

#endif /* PP_PRIVATE_H */
