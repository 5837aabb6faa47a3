/*
 * csy_clock.h: the clock that intervals run on.  Pure code.
 *
 * Waits, deadlines and retry times are taken on CLOCK_MONOTONIC: the wall
 * clock (apr_time_now) can be stepped, by NTP or by hand, and a deadline
 * on it then comes as much too late as the clock went back (a sync loop
 * that stalls for the step) or at once.  Wall-clock times are for people
 * (state.json's last_sync, next_sync, last_restart) and for what other
 * hosts see (certificate validity, HTTP dates).
 */
#ifndef CSY_CLOCK_H
#define CSY_CLOCK_H

#include <time.h>

#include <apr_time.h>

/** Now on the monotonic clock, in apr_time_t units (microseconds); its
 * origin is arbitrary: only differences mean anything. */
static APR_INLINE apr_time_t csy_clock_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return apr_time_from_sec(ts.tv_sec) + ts.tv_nsec / 1000;
}

#endif /* CSY_CLOCK_H */
