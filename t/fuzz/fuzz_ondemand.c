/*
 * fuzz_ondemand.c: libFuzzer harness for on-demand issuance's two parsers
 * and the proxy's table they feed: the body of POST /v1/on-demand as
 * CertService reads it (mod_certservice/cs_ondemand.c), and CertService's
 * answer as a proxy's sync daemon reads it and writes the verdicts into
 * its shared table (mod_certsync/csy_ondemand.c).
 *
 * Each input is used whole as both.  Beyond "no crash", it aborts when
 *   - the request parser answers anything but 0, 400 or 413, or a reason
 *     that is not printable ASCII; or accepts more than the limit; or
 *     hands on a name that is not normalised (normalising it again
 *     changes it, cs_name_check refuses it), is a wildcard, comes twice,
 *     or a refused name without a reason, or a name or echo that is not
 *     printable;
 *   - the answer parser accepts what is not {"results": [{"domain":
 *     string, "status": string, "retry_after": integer}]}, gives a verdict
 *     outside the four, a negative retry_after, or a name longer than a
 *     domain;
 *   - the table, after the names of the answer were noted, taken and given
 *     their verdicts, holds a slot in an unknown state, a name that is not
 *     NUL-terminated, or more names than were noted; or a name given
 *     "accepted" is not pending, one given "refused" not refused (while
 *     the table is far from full).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>

#include "cs_name.h"
#include "cs_ondemand.h"
#include "csy_ondemand.h"

#include "fuzz.h"

static void printable(const char *s)
{
    for (; *s; s++) {
        REQUIRE((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
    }
}

static void fuzz_request(apr_pool_t *p, const char *buf, size_t len)
{
    apr_array_header_t *items;
    apr_hash_t *seen = apr_hash_make(p);
    const char *host, *err = NULL, *again;
    int rc, i;

    rc = cs_od_parse_request(&items, &host, p, buf, len, 8, &err);
    REQUIRE(rc == 0 || rc == 400 || rc == 413);
    if (rc) {
        REQUIRE(err != NULL && *err);
        printable(err);
        return;
    }
    REQUIRE(items->nelts <= 8);
    if (host) {
        printable(host);
    }
    for (i = 0; i < items->nelts; i++) {
        const cs_od_item_t *it = &APR_ARRAY_IDX(items, i, cs_od_item_t);

        REQUIRE(it->raw != NULL);
        printable(it->raw);
        if (!it->name) {
            REQUIRE(it->why != NULL && *it->why);
            continue;
        }
        REQUIRE(it->name[0] != '*');
        REQUIRE(strlen(it->name) <= CS_NAME_MAX);
        REQUIRE(cs_name_check(NULL, it->name, strlen(it->name), 0) == NULL);
        REQUIRE(cs_name_normalize(&again, p, it->name) == NULL);
        REQUIRE(strcmp(again, it->name) == 0);
        REQUIRE(apr_hash_get(seen, it->name, APR_HASH_KEY_STRING) == NULL);
        apr_hash_set(seen, it->name, APR_HASH_KEY_STRING, "");
        /* The ask URL carries it as it is (LDH and dots need no escape). */
        REQUIRE(strcmp(cs_od_ask_url(p, "http://a.test/x", it->name)
                       + strlen("http://a.test/x?domain="), it->name) == 0);
    }
}

static void fuzz_answer(apr_pool_t *p, const char *buf, size_t len)
{
    static csy_od_t *od;
    apr_array_header_t *answers, *names;
    const char *err = NULL;
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, 0, &jerr), *r;
    apr_time_t now = apr_time_from_sec(1700000000);
    int i, noted = 0, slots = 0;
    apr_status_t rv;

    /* One table for every input (csy_od_init clears its 1 MiB): each
     * input leaves it empty again, checked below. */
    if (!od) {
        if (!(od = malloc(sizeof(*od)))) {
            abort();
        }
        REQUIRE(csy_od_init(od, 1000000, 1000000) == APR_SUCCESS);
    }
    od->tokens = od->burst;
    rv = csy_od_parse_answer(&answers, p, j, &err);
    if (rv) {
        REQUIRE(rv == APR_EINVAL && err != NULL);
        json_decref(j);
        return;
    }
    /* Accepted: the shape must really be the documented one. */
    r = json_object_get(j, "results");
    REQUIRE(json_is_array(r));
    REQUIRE((size_t)answers->nelts == json_array_size(r));
    json_decref(j);
    for (i = 0; i < answers->nelts; i++) {
        const csy_od_answer_t *a = &APR_ARRAY_IDX(answers, i,
                                                  csy_od_answer_t);

        REQUIRE(a->verdict >= CSY_OD_V_ACCEPTED
                && a->verdict <= CSY_OD_V_UNKNOWN);
        REQUIRE(a->retry_after >= 0);
        REQUIRE(strlen(a->name) <= CS_NAME_MAX);
        noted += csy_od_note(od, a->name, now) == CSY_OD_NOTED;
    }
    names = apr_array_make(p, 8, sizeof(const char *));
    while (csy_od_take(od, names, p, CSY_OD_BATCH, now) > 0) {
    }
    REQUIRE(names->nelts == noted);
    for (i = 0; i < answers->nelts; i++) {
        const csy_od_answer_t *a = &APR_ARRAY_IDX(answers, i,
                                                  csy_od_answer_t);
        csy_od_state_t before = csy_od_state(od, a->name, now);

        csy_od_apply(od, a->name, a->verdict, a->retry_after, now);
        if (before != CSY_OD_SENT || noted > CSY_OD_PROBE) {
            continue;   /* a name seen twice; or slots may be shared */
        }
        if (a->verdict == CSY_OD_V_ACCEPTED) {
            REQUIRE(csy_od_state(od, a->name, now) == CSY_OD_PENDING);
        }
        else if (a->verdict == CSY_OD_V_REFUSED) {
            REQUIRE(csy_od_state(od, a->name, now) == CSY_OD_REFUSED);
        }
        else {
            REQUIRE(csy_od_state(od, a->name, now) == CSY_OD_QUEUED);
        }
    }
    for (i = 0; i < CSY_OD_SLOTS; i++) {
        REQUIRE(od->e[i].state <= CSY_OD_REFUSED);
        if (od->e[i].state != CSY_OD_FREE) {
            REQUIRE(memchr(od->e[i].name, '\0', sizeof(od->e[i].name)));
            slots++;
        }
    }
    REQUIRE(slots <= noted);
    /* Served (as the daemon frees a name the store got): empty again. */
    for (i = 0; i < answers->nelts; i++) {
        csy_od_served(od, APR_ARRAY_IDX(answers, i, csy_od_answer_t).name);
    }
    for (i = 0; i < CSY_OD_SLOTS; i++) {
        REQUIRE(od->e[i].state == CSY_OD_FREE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    apr_pool_create(&p, NULL);
    fuzz_request(p, (const char *)data, size);
    fuzz_answer(p, (const char *)data, size);
    apr_pool_destroy(p);
    return 0;
}
