/*
 * csy_agent.c: what the sync daemon's agent-check listener answers, and
 * how it takes its port (csy_agent.h).  Pure code.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_strings.h>

#include "csy_agent.h"

const char *csy_agent_answer(const char *health)
{
    return health && strcmp(health, "ready") == 0 ? "ready\n" : "drain\n";
}

const char *csy_agent_line(char *buf, apr_size_t size, const char *health,
                           const char *desc)
{
    const char *word = csy_agent_answer(health);
    apr_size_t n = 0, room;

    if (!desc || !*desc) {
        apr_cpystrn(buf, word, size);
        return buf;
    }
    n = apr_snprintf(buf, size, "%s #certsync degraded: ",
                     strcmp(word, "ready\n") == 0 ? "ready up" : "drain");
    room = size - 2;            /* the newline and the NUL */
    if (n > room) {
        n = room;
    }
    for (; *desc && n < room; desc++) {
        unsigned char c = (unsigned char)*desc;

        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[n++] = '\n';
    buf[n] = '\0';
    return buf;
}

int csy_agent_answer_is_ready(const char *answer)
{
    return strncmp(answer, "ready", 5) == 0
           && (answer[5] == '\n' || answer[5] == ' ');
}

int csy_agent_listen(const apr_sockaddr_t *sa)
{
    int one = 1, e;
    int fd = socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0
        && bind(fd, (const struct sockaddr *)&sa->sa, sa->salen) == 0
        && listen(fd, 16) == 0) {
        return fd;
    }
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

void csy_agent_retry_init(csy_agent_retry_t *st, apr_time_t now)
{
    st->since = now;
    st->told = 0;
}

apr_interval_time_t csy_agent_retry(csy_agent_retry_t *st, int e,
                                    apr_time_t now, int *log_now)
{
    *log_now = !st->told && (e != EADDRINUSE || now - st->since
                             >= apr_time_from_sec(CSY_AGENT_GRACE));
    if (*log_now) {
        st->told = 1;
    }
    /* Taken: free in a moment.  Anything else (no such address, a
     * privileged port) will hardly change: tried again now and then. */
    return apr_time_from_msec(e == EADDRINUSE ? 100 : 5000);
}

int csy_agent_listening_late(const csy_agent_retry_t *st, apr_time_t now,
                             int *notice)
{
    *notice = st->told;
    return now - st->since >= apr_time_from_msec(100);
}
