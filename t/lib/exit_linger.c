/*
 * exit_linger.c: a test library, LD_PRELOADed into httpd by
 * t/acme/exit.sh, that makes a rare race at a child's exit happen every
 * time and says when it did.
 *
 * A child of httpd ends with exit() while threads it never joins
 * (mod_watchdog's, in httpd 2.4) may still run.  exit() first runs the
 * atexit handlers, OpenSSL's OPENSSL_cleanup among them; an OpenSSL or
 * libcurl object freed by another thread after that frees into a library
 * that is gone, and may corrupt the heap (CI saw "malloc_consolidate():
 * unaligned fastbin chunk detected").  The window is a few milliseconds.
 *
 * This library registers an atexit handler before anything else does, so
 * that it runs last, after OpenSSL's: it notes that the process is past
 * its exit handlers and lingers EXIT_LINGER_MS milliseconds [500], long
 * enough for every such thread to do what it does then.  Meanwhile each
 * call of the functions below that free OpenSSL or libcurl objects is
 * reported on stderr (httpd's error log) as
 *
 *   exit_linger: <function> after OpenSSL's cleanup (pid N)
 *
 * and then performed.  Without EXIT_LINGER_MS in the environment the
 * library does nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile int exited;
static long linger_ms;

static void report(const char *fn)
{
    char line[128];
    int n;

    if (!exited) {
        return;
    }
    n = snprintf(line, sizeof(line),
                 "exit_linger: %s after OpenSSL's cleanup (pid %ld)\n", fn,
                 (long)getpid());
    if (n > 0 && write(2, line, (size_t)n) < 0) {
        /* nothing to do: stderr is gone */
    }
}

static void linger(void)
{
    struct timespec ts;

    exited = 1;
    ts.tv_sec = linger_ms / 1000;
    ts.tv_nsec = (linger_ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

__attribute__((constructor))
static void exit_linger_init(void)
{
    const char *ms = getenv("EXIT_LINGER_MS");

    if (ms) {
        linger_ms = strtol(ms, NULL, 10);
        if (linger_ms <= 0 || linger_ms > 10000) {
            linger_ms = 500;
        }
        atexit(linger);
    }
}

/* A wrapper that reports, then calls the real function. */
#define WRAP(name)                                              \
    void name(void *obj);                                       \
    void name(void *obj)                                        \
    {                                                           \
        static void (*real)(void *);                            \
                                                                \
        if (!real) {                                            \
            *(void **)&real = dlsym(RTLD_NEXT, #name);          \
        }                                                       \
        if (obj) {                                              \
            report(#name);                                      \
        }                                                       \
        if (real) {                                             \
            real(obj);                                          \
        }                                                       \
    }

WRAP(EVP_PKEY_free)
WRAP(X509_free)
WRAP(SSL_free)
WRAP(SSL_CTX_free)
WRAP(curl_easy_cleanup)
