/*
 * test_csc.c: the certsuite command's arguments, configuration file and
 * output (certsuite/csc.c).  No network.
 */
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "csc.h"
#include "unit.h"

static apr_pool_t *pool;

/* Parse a command line given as one string of space-separated words. */
static int parse(csc_args_t *a, const char *line, const char **err)
{
    const char *argv[32];
    char *copy = apr_pstrdup(pool, line), *last, *w;
    int argc = 0;

    argv[argc++] = "certsuite";
    for (w = apr_strtok(copy, " ", &last); w && argc < 31;
         w = apr_strtok(NULL, " ", &last)) {
        argv[argc++] = w;
    }
    argv[argc] = NULL;
    *err = NULL;
    return csc_args_parse(a, pool, argc, argv, err);
}

static void test_args(void)
{
    csc_args_t a;
    const char *err;

    UNIT_CASE("args: commands");
    CHECK_EQ_INT(parse(&a, "domain list", &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.cmd, CSC_CMD_DOMAIN_LIST);
    CHECK_EQ_INT(a.json, 0);
    CHECK_EQ_INT(parse(&a, "--json domain show Shop.Example.COM.", &err),
                 CSC_EXIT_OK);
    CHECK_EQ_INT(a.cmd, CSC_CMD_DOMAIN_SHOW);
    CHECK_EQ_INT(a.json, 1);
    CHECK_STR(a.domain, "shop.example.com");
    CHECK_EQ_INT(parse(&a, "domain add b\xc3\xbc" "cher.example --json",
                       &err), CSC_EXIT_OK);
    CHECK_STR(a.domain, "xn--bcher-kva.example");
    CHECK_EQ_INT(a.json, 1);
    CHECK_EQ_INT(parse(&a, "domain add *.example.com --key-type rsa-2048 "
                       "--profile shortlived", &err), CSC_EXIT_OK);
    CHECK_STR(a.domain, "*.example.com");
    CHECK_STR(a.key_type, "rsa-2048");
    CHECK_STR(a.profile, "shortlived");
    CHECK_EQ_INT(parse(&a, "-c /tmp/x.conf import a.example c.pem k.pem",
                       &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.cmd, CSC_CMD_IMPORT);
    CHECK_STR(a.config, "/tmp/x.conf");
    CHECK_STR(a.cert_file, "c.pem");
    CHECK_STR(a.key_file, "k.pem");
    CHECK_EQ_INT(parse(&a, "pool status", &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.days, 14);
    CHECK_EQ_INT(parse(&a, "pool status --days 30", &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.days, 30);
    CHECK_EQ_INT(parse(&a, "wrap-key rotate --new w.crt --dry-run", &err),
                 CSC_EXIT_OK);
    CHECK_STR(a.new_wrap, "w.crt");
    CHECK_EQ_INT(a.dry_run, 1);
    CHECK_EQ_INT(parse(&a, "acme account --url https://cs:8443", &err),
                 CSC_EXIT_OK);
    CHECK_STR(a.url, "https://cs:8443");
    CHECK_EQ_INT(parse(&a, "", &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.cmd, CSC_CMD_HELP);
    CHECK_EQ_INT(parse(&a, "domain list --help", &err), CSC_EXIT_OK);
    CHECK_EQ_INT(a.cmd, CSC_CMD_HELP);
    /* "--" ends the options: a name may then start with '-' (and be
     * refused as a name, not as an option). */
    CHECK_EQ_INT(parse(&a, "domain show -- -x.example", &err),
                 CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "invalid domain name '-x.example'"));

    UNIT_CASE("args: usage errors");
    CHECK_EQ_INT(parse(&a, "domain", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "needs a subcommand"));
    CHECK_EQ_INT(parse(&a, "frobnicate", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "unknown command 'frobnicate'"));
    CHECK_EQ_INT(parse(&a, "domain show", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "missing arguments"));
    CHECK_EQ_INT(parse(&a, "domain show a.example b.example", &err),
                 CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "too many arguments"));
    CHECK_EQ_INT(parse(&a, "import a.example c.pem", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "DOMAIN CERT-FILE KEY-FILE"));
    CHECK_EQ_INT(parse(&a, "domain show localhost", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "invalid domain name 'localhost'"));
    CHECK_EQ_INT(parse(&a, "domain show 10.0.0.1", &err), CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "domain list --bogus", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "unknown option '--bogus'"));
    CHECK_EQ_INT(parse(&a, "domain list -c", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "needs a value"));
    CHECK_EQ_INT(parse(&a, "domain list --days 3", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "does not apply to domain list"));
    CHECK_EQ_INT(parse(&a, "domain add a.example --key-type dsa", &err),
                 CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "domain add a.example --profile a/b", &err),
                 CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "domain list --state gone", &err),
                 CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "pool status --days 0", &err), CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "pool status --days 7x", &err), CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "pool status --days -7", &err), CSC_EXIT_USAGE);
    CHECK_EQ_INT(parse(&a, "wrap-key rotate", &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "--new"));
    CHECK_EQ_INT(parse(&a, "domain list --url http://cs", &err),
                 CSC_EXIT_USAGE);
    /* What the user typed is echoed without control characters. */
    CHECK_EQ_INT(parse(&a, "x\x1b[31m", &err), CSC_EXIT_USAGE);
    CHECK(err && !strchr(err, '\x1b'));
}

static void test_conf(void)
{
    csc_conf_t c;
    const char *err = NULL, *t;

    UNIT_CASE("conf: a good file");
    t = "# certsuite\n"
        "service_url = https://cs.internal:8443/\n"
        "  client_cert=admin.crt  \n"
        "client_key = /etc/certsuite/admin.key\r\n"
        "\n"
        "ca = ca.crt\n"
        "wrap_cert = wrap1.crt\n"
        "wrap_cert = /w/wrap2.crt\n"
        "timeout = 5\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", "/etc/cs",
                                &err), CSC_EXIT_OK);
    CHECK_STR(c.url, "https://cs.internal:8443");
    CHECK_STR(c.cert, "/etc/cs/admin.crt");
    CHECK_STR(c.key, "/etc/certsuite/admin.key");
    CHECK_STR(c.ca, "/etc/cs/ca.crt");
    CHECK_EQ_INT(c.wrap->nelts, 2);
    CHECK_STR(APR_ARRAY_IDX(c.wrap, 0, const char *), "/etc/cs/wrap1.crt");
    CHECK_STR(APR_ARRAY_IDX(c.wrap, 1, const char *), "/w/wrap2.crt");
    CHECK_EQ_INT(c.timeout, 5);
    CHECK(csc_conf_check(&c, pool) == NULL);

    UNIT_CASE("conf: errors name the file and line");
    t = "service_url = https://a\nbogus = 1\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "f.conf line 2: unknown setting 'bogus'"));
    t = "service_url = http://a\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "line 1: service_url must be an https://"));
    t = "ca = a\nca = b\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "line 2: ca is set twice"));
    t = "just words\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "expected 'name = value'"));
    t = "ca =\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "ca has no value"));
    t = "timeout = 0\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK_EQ_INT(csc_conf_parse(&c, pool, "ca = a\0b", 8, "f.conf", NULL,
                                &err), CSC_EXIT_USAGE);
    CHECK(err && strstr(err, "NUL"));

    UNIT_CASE("conf: what is missing");
    t = "ca = x\n";
    CHECK_EQ_INT(csc_conf_parse(&c, pool, t, strlen(t), "f.conf", NULL,
                                &err), CSC_EXIT_OK);
    CHECK(csc_conf_check(&c, pool) != NULL
          && strstr(csc_conf_check(&c, pool), "service_url"));
    c.url = "https://x";
    CHECK(csc_conf_check(&c, pool) != NULL
          && strstr(csc_conf_check(&c, pool), "client_cert"));
}

static void test_output(void)
{
    csc_table_t *t;

    UNIT_CASE("table");
    t = csc_table_make(pool, 3, "DOMAIN", "STATE", "ERROR");
    csc_table_add(t, "a.example", "active", NULL);
    csc_table_add(t, "xn--bcher-kva.example", "error", "bad\x1b[2Jthing");
    csc_table_add(t, "b\xc3\xbc.example", "", "x");
    CHECK_STR(csc_table_render(t),
              "DOMAIN                 STATE   ERROR\n"
              "a.example              active  -\n"
              "xn--bcher-kva.example  error   bad?[2Jthing\n"
              "b\xc3\xbc.example             -       x\n");

    UNIT_CASE("times");
    CHECK_STR(csc_fmt_time(pool, 0), "-");
    CHECK_STR(csc_fmt_time(pool, 1796211526), "2026-12-02 11:38");
    CHECK_STR(csc_fmt_span(pool, 45), "45s");
    CHECK_STR(csc_fmt_span(pool, 119), "119s");
    CHECK_STR(csc_fmt_span(pool, 720), "12m");
    CHECK_STR(csc_fmt_span(pool, 5 * 3600), "5h");
    CHECK_STR(csc_fmt_span(pool, 47 * 86400 + 5), "47d");
    CHECK_STR(csc_fmt_expiry(pool, 0, 1000), "-");
    CHECK_STR(csc_fmt_expiry(pool, 1000 + 47 * 86400, 1000), "in 47d");
    CHECK_STR(csc_fmt_expiry(pool, 1000, 1000 + 3 * 86400),
              "expired 3d ago");
    CHECK_STR(csc_fmt_expiry(pool, 1000, 1000), "expired 0s ago");

    UNIT_CASE("expiring");
    CHECK_EQ_INT(csc_expiring(0, 1000, 14), 0);
    CHECK_EQ_INT(csc_expiring(1000 + 14 * 86400, 1000, 14), 1);
    CHECK_EQ_INT(csc_expiring(1000 + 14 * 86400 + 1, 1000, 14), 0);
    CHECK_EQ_INT(csc_expiring(500, 1000, 14), 1);
    CHECK_STR(csc_safe(pool, NULL), "-");
    CHECK_STR(csc_safe(pool, "a\tb\x7f"), "a?b?");
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_args();
    test_conf();
    test_output();
    apr_pool_destroy(pool);
    apr_terminate();
    return unit_summary();
}
