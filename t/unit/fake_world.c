/*
 * fake_world.c: what t/unit/test_csy_rollout.c and
 * t/fuzz/fuzz_store_files.c fake alike under a csy_rollout machine (see
 * fake_world.h).  Nothing here checks anything: the drivers do.
 */
#include <string.h>

#include "fake_world.h"

void fake_world_agent_asked(fake_world_t *w)
{
    w->told++;
    if (w->health && strcmp(w->health, "ready") == 0) {
        w->told_ready++;
    }
}

apr_time_t fake_world_now(void *b)
{
    fake_world_t *w = b;

    return w->now;
}

apr_time_t fake_world_wall(void *b)
{
    fake_world_t *w = b;

    return w->now + w->wall_step;
}

void fake_world_graceful(void *b)
{
    fake_world_t *w = b;

    w->gracefuls++;
    if (w->graceful_stops) {
        w->running = 0;
    }
}

json_t *fake_world_read_json(void *b, apr_pool_t *p, const char *name)
{
    fake_world_t *w = b;
    json_t *j = json_object_get(w->files, name);

    return j ? json_deep_copy(j) : NULL;
}

void fake_world_remove(void *b, apr_pool_t *p, const char *name)
{
    fake_world_t *w = b;

    w->removes++;
    json_object_del(w->files, name);
}

int fake_world_agent(void *b, apr_uint32_t *told, apr_uint32_t *told_ready)
{
    fake_world_t *w = b;

    *told = w->told;
    *told_ready = w->told_ready;
    return w->agent_on;
}
