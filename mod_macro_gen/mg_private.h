/*
 * mg_private.h: definitions private to mod_macro_gen's httpd glue.
 */
#ifndef MG_PRIVATE_H
#define MG_PRIVATE_H

/*
 * Log tags: every message carries "MGnnnnn: ", grep-able from the log to the
 * line in the code.  Numbers are never reused; the next free one is 00005.
 */
#define MGLOGNO(n) "MG" #n ": "

/* The define that makes MacroGenerate print what it generates (with -t). */
#define MG_DUMP_DEFINE  "DUMP_MACRO_GEN"

/* Arguments of the trial Use that checks the macro before any entry is
 * expanded; never read as configuration. */
#define MG_PROBE_ARGS   "probe.macro-gen.invalid /nonexistent/macro-gen"

#endif /* MG_PRIVATE_H */
