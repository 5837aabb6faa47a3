/*
 * unit.h: a header-only harness for the suite's C unit tests.
 *
 *     int main(void)
 *     {
 *         UNIT_CASE("v1 TCP4");
 *         CHECK(x == 1);
 *         CHECK_EQ_INT(hdr.src_port, 443);
 *         CHECK_STR(value, "h2");
 *         return unit_summary();
 *     }
 *
 * Every check counts once.  A failure prints the case, the file and line,
 * and what differed; unit_summary() prints the one line "N passed, M failed"
 * that the build's check target and people read, and returns non-zero when
 * anything failed.
 *
 * Everything is static inline so a test that uses only part of the harness
 * still builds with -Wall -Wextra -Werror.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

typedef struct {
    int passed;
    int failed;
    const char *name;           /* the current case, for failure messages */
} unit_state_t;

/* One state per test program: each program is a single translation unit. */
static inline unit_state_t *unit_state(void)
{
    static unit_state_t state;

    return &state;
}

static inline void unit_case(const char *name)
{
    unit_state()->name = name;
}

static inline int unit_result(int ok, const char *file, int line)
{
    unit_state_t *s = unit_state();

    if (ok) {
        s->passed++;
        return 1;
    }
    s->failed++;
    printf("FAIL [%s] %s:%d: ", s->name ? s->name : "-", file, line);
    return 0;
}

static inline int unit_check(int ok, const char *file, int line,
                             const char *expr)
{
    if (!unit_result(ok, file, line)) {
        printf("%s\n", expr);
    }
    return ok;
}

static inline int unit_check_int(long long got, long long want,
                                 const char *file, int line,
                                 const char *expr)
{
    int ok = got == want;

    if (!unit_result(ok, file, line)) {
        printf("%s is %lld, expected %lld\n", expr, got, want);
    }
    return ok;
}

static inline int unit_check_str(const char *got, const char *want,
                                 const char *file, int line,
                                 const char *expr)
{
    int ok = (got == NULL || want == NULL) ? got == want
                                           : strcmp(got, want) == 0;

    if (!unit_result(ok, file, line)) {
        printf("%s is %s%s%s, expected %s%s%s\n", expr,
               got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
               want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
    }
    return ok;
}

static inline int unit_check_mem(const void *got, const void *want,
                                 size_t len, const char *file, int line,
                                 const char *expr)
{
    int ok = memcmp(got, want, len) == 0;

    if (!unit_result(ok, file, line)) {
        printf("%s: %lu bytes differ\n", expr, (unsigned long)len);
    }
    return ok;
}

/** Print the summary line; the value to return from main(). */
static inline int unit_summary(void)
{
    unit_state_t *s = unit_state();

    fflush(stdout);
    printf("%d passed, %d failed\n", s->passed, s->failed);
    fflush(stdout);
    return s->failed ? 1 : 0;
}

/* Each macro evaluates to 1 when the check passed, so a test can stop
 * early: if (!CHECK(p != NULL)) return; */
#define UNIT_CASE(name)     unit_case(name)
#define CHECK(cond) \
    unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(got, want) \
    unit_check_int((long long)(got), (long long)(want), __FILE__, __LINE__, \
                   #got " == " #want)
#define CHECK_STR(got, want) \
    unit_check_str((got), (want), __FILE__, __LINE__, #got " == " #want)
#define CHECK_MEM(got, want, len) \
    unit_check_mem((got), (want), (len), __FILE__, __LINE__, \
                   #got " == " #want)

#endif /* UNIT_H */
