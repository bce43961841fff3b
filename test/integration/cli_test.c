/* The command line as a new user meets it, through the real binary:
 * --check-config reports every error of a file (file:line:col each, exit 2),
 * the man page and --help name the same options and signals, and the
 * example in docs/getting-started.md gives the error the doc shows. */
#include "support/proc.h"

#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sg_proc_t tmp;

static void setup(void)
{
    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.dir, sizeof(tmp.dir), "/tmp/sgtest.XXXXXX");
    cr_assert(mkdtemp(tmp.dir));
}

static void teardown(void)
{
    if (tmp.dir[0])
        sg_proc_cleanup(&tmp);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 30);

static size_t count_lines(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

Test(cli, check_config_reports_every_error)
{
    char path[256], out[8192];
    sg_proc_write_file(&tmp, "bad.yaml",
                       "workers: lots\n"
                       "listeners: [{name: api, address: \"127.0.0.1:0\", mode: sideways}]\n"
                       "upstreams: {app: {servers: [\"127.0.0.1:1\"]}}\n"
                       "routes: [{upstream: nope}]\n"
                       "shutdown: {drain_delay: soon}\n",
                       path, sizeof(path));
    const char *args[] = {"--check-config", path, NULL};
    cr_assert_eq(sg_proc_run(args, out, sizeof(out), 5000), 2, "%s", out);
    const char *want[] = {
        ":1:10: workers:", ":2:55: listeners[0].mode:", ":4:21: routes[0].upstream:", ":5:25: shutdown.drain_delay:"};
    const char *at = out;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[300];
        snprintf(line, sizeof(line), "swarmgate: %s%s", path, want[i]);
        const char *p = strstr(at, line);
        cr_assert(p, "no line starting %s (in file order) in:\n%s", line, out);
        at = p + 1;
    }
    cr_assert_eq(count_lines(out, "\n"), 4, "one line per error:\n%s", out);
    cr_assert_null(strstr(out, "OK"), "%s", out);
}

/* Options (-x, --long) and signal names in text, each once, into a list. */
static size_t collect(const char *text, const char *re_src, char list[][40], size_t cap)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, re_src, REG_EXTENDED), 0);
    size_t n = 0;
    regmatch_t m[2];
    for (const char *p = text; regexec(&re, p, 2, m, 0) == 0; p += m[0].rm_eo) {
        size_t len = (size_t)(m[1].rm_eo - m[1].rm_so);
        char w[40];
        snprintf(w, sizeof(w), "%.*s", (int)len, p + m[1].rm_so);
        bool seen = false;
        for (size_t i = 0; i < n; i++)
            seen |= strcmp(list[i], w) == 0;
        if (!seen && n < cap)
            snprintf(list[n++], 40, "%s", w);
    }
    regfree(&re);
    return n;
}

static bool has(char list[][40], size_t n, const char *w)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], w) == 0)
            return true;
    return false;
}

/* The man page source with the roff escapes a reader does not see removed:
 * "\-" is "-", font changes (\fB, \fI, \fR, \fP) go. */
static char *man_text(void)
{
    char *src = sg_proc_read_file(SG_SOURCE_DIR "/packaging/swarmgate.8");
    cr_assert(src && *src, "packaging/swarmgate.8");
    char *o = src;
    for (const char *p = src; *p;) {
        if (p[0] == '\\' && p[1] == '-') {
            *o++ = '-';
            p += 2;
        } else if (p[0] == '\\' && p[1] == 'f' && p[2]) {
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return src;
}

/* The part of the man page from ".SH from" to the next ".SH". */
static char *man_section(char *man, const char *from)
{
    char head[64];
    snprintf(head, sizeof(head), "\n.SH %s\n", from);
    char *s = strstr(man, head);
    cr_assert(s, "man page has no section %s", from);
    s += strlen(head);
    char *e = strstr(s, "\n.SH ");
    if (e)
        *e = '\0';
    return s;
}

Test(cli, man_page_and_help_name_the_same_options)
{
    char help[4096];
    const char *args[] = {"--help", NULL};
    cr_assert_eq(sg_proc_run(args, help, sizeof(help), 5000), 0, "%s", help);

    char hopt[32][40], mopt[32][40], hsig[16][40], msig[16][40];
    /* collect() takes the first group: wrap the option itself. */
    size_t nh = collect(help, "[^A-Za-z0-9-](-[a-z]\\b|--[a-z][a-z-]*)", hopt, 32);
    char *man = man_text();
    char *opts = strdup(man_section(man, "OPTIONS"));
    free(man);
    man = man_text();
    char *syn = strdup(man_section(man, "SYNOPSIS"));
    free(man);
    man = man_text();
    char *sigs = strdup(man_section(man, "SIGNALS"));
    free(man);

    char both[8192];
    snprintf(both, sizeof(both), " %s\n%s", syn, opts);
    size_t nm = collect(both, "[^A-Za-z0-9-](-[a-z]\\b|--[a-z][a-z-]*)", mopt, 32);
    cr_assert_geq(nh, 6, "options in --help: %zu", nh);
    for (size_t i = 0; i < nh; i++)
        cr_expect(has(mopt, nm, hopt[i]), "--help names %s, the man page's SYNOPSIS/OPTIONS do not", hopt[i]);
    for (size_t i = 0; i < nm; i++)
        cr_expect(has(hopt, nh, mopt[i]), "the man page names %s, --help does not", mopt[i]);

    size_t nhs = collect(help, "(SIG[A-Z0-9]+)", hsig, 16);
    size_t nms = collect(sigs, "(SIG[A-Z0-9]+)", msig, 16);
    cr_assert_geq(nhs, 4);
    for (size_t i = 0; i < nhs; i++)
        cr_expect(has(msig, nms, hsig[i]), "--help names %s, the man page's SIGNALS do not", hsig[i]);
    for (size_t i = 0; i < nms; i++)
        cr_expect(has(hsig, nhs, msig[i]), "the man page's SIGNALS name %s, --help does not", msig[i]);
    free(opts);
    free(syn);
    free(sigs);
}

Test(cli, getting_started_error_example_is_what_the_binary_says)
{
    char *doc = sg_proc_read_file(SG_SOURCE_DIR "/docs/getting-started.md");
    cr_assert(doc && *doc);
    /* The first config of the doc: the first ```yaml block after "## A first config". */
    char *sec = strstr(doc, "## A first config");
    cr_assert(sec, "the doc has no \"A first config\" section");
    char *y = strstr(sec, "```yaml\n");
    cr_assert(y);
    y += strlen("```yaml\n");
    char *ye = strstr(y, "```");
    cr_assert(ye);
    *ye = '\0';
    char *rest = ye + 3;

    /* The doc's broken variant and its error line:
     * "With `upstream: platfrom` in the route above:" then a `swarmgate.yaml:L:C: ...` line. */
    char *w = strstr(rest, "With `");
    cr_assert(w, "the doc names no broken variant (\"With `...` in ...\")");
    w += strlen("With `");
    char *we = strchr(w, '`');
    cr_assert(we);
    *we = '\0';
    const char *bad = w; /* e.g. "upstream: platfrom" */
    char *el = strstr(we + 1, "swarmgate: swarmgate.yaml:");
    cr_assert(el, "the doc shows no error line");
    el += strlen("swarmgate: swarmgate.yaml");
    char *ee = strchr(el, '\n');
    cr_assert(ee);
    *ee = '\0';
    const char *want = el; /* ":8:40: routes[0].upstream: ..." */

    /* Apply the variant: the one line of the config with the same key. */
    char key[64];
    const char *colon = strchr(bad, ':');
    cr_assert(colon && (size_t)(colon - bad) < sizeof(key) - 1);
    snprintf(key, sizeof(key), "%.*s:", (int)(colon - bad), bad);
    char *k = strstr(y, key);
    cr_assert(k, "the config has no %s", key);
    cr_assert_null(strstr(k + 1, key), "the config has %s more than once", key);
    size_t vlen = strcspn(k, "},\n");
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), "%.*s%s%s", (int)(k - y), y, bad, k + vlen);

    char path[256], out[4096];
    sg_proc_write_file(&tmp, "swarmgate.yaml", yaml, path, sizeof(path));
    const char *args[] = {"--check-config", path, NULL};
    cr_assert_eq(sg_proc_run(args, out, sizeof(out), 5000), 2, "%s\n%s", yaml, out);
    char line[1024];
    snprintf(line, sizeof(line), "swarmgate: %s%s\n", path, want);
    cr_assert_str_eq(out, line, "the doc's error differs from the binary's for:\n%s", yaml);

    /* And the doc's config itself is valid. */
    sg_proc_write_file(&tmp, "good.yaml", y, path, sizeof(path));
    cr_assert_eq(sg_proc_run(args, out, sizeof(out), 5000), 0, "%s\n%s", y, out);
    free(doc);
}
