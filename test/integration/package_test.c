/* Packaging: `cmake --install` of the build tree that made SG_BINARY into a
 * temporary root (DESTDIR, never the real one), `cpack -G DEB` into a
 * temporary directory, and the .deb inspected with dpkg-deb, extracted, and
 * its binary run on the packaged example config.
 *
 * Builds nothing: the build tree is the directory holding SG_BINARY (the
 * top-level build dir). Needs cmake, cpack and dpkg-deb on PATH (Debian 12);
 * systemd-analyze and groff are used when present. */
#include "sg/common.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PKG_TIMEOUT 60
#define OUT_MAX (1u << 20)

static char g_tmp[256];       /* per-test scratch directory */
static char g_builddir[4096]; /* build tree of SG_BINARY */

/* Static, so that a failed assertion (which longjmps out) leaks nothing. */
static char g_out[OUT_MAX + 1];
static char g_file[2][OUT_MAX + 1];

typedef struct run_res {
    int code;  /* exit code, or -1 when killed / not run */
    char *out; /* stdout + stderr, NUL-terminated; g_out, valid until the next run() */
} run_res_t;

/* Single-quote s for sh into dst. */
static const char *shq(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    dst[n++] = '\'';
    for (; *s && n + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(dst + n, "'\\''", 4);
            n += 4;
        } else {
            dst[n++] = *s;
        }
    }
    cr_assert(*s == '\0', "path too long to quote");
    dst[n++] = '\'';
    dst[n] = '\0';
    return dst;
}

/* Runs a shell command line, capturing stdout and stderr. */
static run_res_t run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static run_res_t run(const char *fmt, ...)
{
    static const char pre[] = "exec 2>&1; ";
    char cmd[16384];
    memcpy(cmd, pre, sizeof(pre));
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd + sizeof(pre) - 1, sizeof(cmd) - sizeof(pre), fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && (size_t)n < sizeof(cmd) - sizeof(pre), "command too long");

    run_res_t r = {.code = -1, .out = g_out};
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen(%s): %s", cmd, strerror(errno));
    /* Read to EOF (keeping the first OUT_MAX bytes) so the child never blocks on a full pipe. */
    char chunk[8192];
    size_t len = 0, got;
    while ((got = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        size_t keep = SG_MIN(got, OUT_MAX - len);
        memcpy(r.out + len, chunk, keep);
        len += keep;
    }
    r.out[len] = '\0';
    int st = pclose(p);
    if (st != -1 && WIFEXITED(st))
        r.code = WEXITSTATUS(st);
    return r;
}

static bool have_program(const char *name)
{
    return run("command -v %s >/dev/null", name).code == 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    char bin[4096];
    snprintf(bin, sizeof(bin), "%s", SG_BINARY);
    snprintf(g_builddir, sizeof(g_builddir), "%s", dirname(bin));
    char probe[4200];
    snprintf(probe, sizeof(probe), "%s/cmake_install.cmake", g_builddir);
    cr_assert(access(probe, R_OK) == 0, "no build tree at %s (SG_BINARY=%s)", g_builddir, SG_BINARY);
    snprintf(probe, sizeof(probe), "%s/CPackConfig.cmake", g_builddir);
    cr_assert(access(probe, R_OK) == 0, "no CPackConfig.cmake in %s", g_builddir);

    snprintf(g_tmp, sizeof(g_tmp), "/tmp/sg_pkg_test_XXXXXX");
    cr_assert_not_null(mkdtemp(g_tmp), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    if (g_tmp[0] && strncmp(g_tmp, "/tmp/sg_pkg_test_", 17) == 0)
        nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(package, .init = setup, .fini = teardown, .timeout = PKG_TIMEOUT);

/* ---- helpers over the scratch dir ---- */

static const char *tpath(char *dst, size_t cap, const char *rel)
{
    snprintf(dst, cap, "%s/%s", g_tmp, rel);
    return dst;
}

/* Reads a file into g_file[slot], NUL-terminated. */
static char *slurp(const char *path, int slot, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    char *buf = g_file[slot];
    size_t len = fread(buf, 1, OUT_MAX, f);
    buf[len] = '\0';
    fclose(f);
    if (len_out)
        *len_out = len;
    return buf;
}

static void assert_file(const char *root, const char *rel, mode_t want_bits)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    struct stat st;
    cr_assert(stat(p, &st) == 0, "missing %s: %s", rel, strerror(errno));
    cr_assert(S_ISREG(st.st_mode), "%s is not a regular file", rel);
    cr_assert((st.st_mode & want_bits) == want_bits, "%s mode %o lacks %o", rel, st.st_mode & 07777, want_bits);
}

/* `make package` and `make install` print what cmake and cpack say: a warning there is a bug
 * (packaging/package.cmake once wrote regexes with invalid escapes into CPackConfig.cmake). */
static void assert_no_cmake_warning(const run_res_t *r, const char *what)
{
    cr_assert_null(strstr(r->out, "CMake Warning"), "%s printed a CMake warning:\n%s", what, r->out);
    cr_assert_null(strstr(r->out, "CMake Deprecation Warning"), "%s printed a CMake warning:\n%s", what, r->out);
}

/* DESTDIR=<tmp>/<rootname> cmake --install <build> --prefix <prefix>; returns the root. */
static const char *install_into(char *root, size_t cap, const char *rootname, const char *prefix)
{
    char qroot[4400], qbuild[8300], qprefix[600];
    tpath(root, cap, rootname);
    run_res_t r = run("DESTDIR=%s cmake --install %s --prefix %s", shq(qroot, sizeof(qroot), root),
                      shq(qbuild, sizeof(qbuild), g_builddir), shq(qprefix, sizeof(qprefix), prefix));
    cr_assert_eq(r.code, 0, "cmake --install failed (%d):\n%s", r.code, r.out);
    assert_no_cmake_warning(&r, "cmake --install");
    return root;
}

/* cpack -G DEB with its output and scratch under <tmp>/deb; returns the .deb path. */
static const char *build_deb(char *deb, size_t cap)
{
    char outdir[600], qout[1300], qcfg[8300], cfg[4200];
    tpath(outdir, sizeof(outdir), "deb");
    snprintf(cfg, sizeof(cfg), "%s/CPackConfig.cmake", g_builddir);
    run_res_t r = run("cpack -G DEB --config %s -B %s", shq(qcfg, sizeof(qcfg), cfg), shq(qout, sizeof(qout), outdir));
    cr_assert_eq(r.code, 0, "cpack failed (%d):\n%s", r.code, r.out);
    assert_no_cmake_warning(&r, "cpack");
    snprintf(deb, cap, "%s/swarmgate_%s-1_", outdir, SG_VERSION);
    r = run("ls %s/*.deb", qout);
    cr_assert_eq(r.code, 0, "no .deb in %s:\n%s", outdir, r.out);
    char *nl = strchr(r.out, '\n');
    if (nl)
        *nl = '\0';
    cr_assert(strncmp(r.out, deb, strlen(deb)) == 0, "unexpected package file name %s (want %s<arch>.deb)", r.out, deb);
    snprintf(deb, cap, "%s", r.out);
    return deb;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* A Depends field entry "pkg" or "pkg (...)" is present. */
static bool depends_on(const char *depends, const char *pkg)
{
    size_t n = strlen(pkg);
    for (const char *p = depends; (p = strstr(p, pkg)) != NULL; p += n) {
        bool start = p == depends || p[-1] == ' ' || p[-1] == ',' || p[-1] == '|';
        bool end = p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\n';
        if (start && end)
            return true;
    }
    return false;
}

static const char *const k_hardening[] = {
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=",
    "LimitNOFILE=65536",
    "Restart=on-failure",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=45s",
    "Type=simple",
    "User=swarmgate",
    "Group=swarmgate",
    "WantedBy=multi-user.target",
};

/* ---- install ---- */

Test(package, install_places_every_file)
{
    char root[600];
    install_into(root, sizeof(root), "root", "/usr");

    assert_file(root, "/usr/sbin/swarmgate", S_IXUSR | S_IXGRP | S_IXOTH);
    assert_file(root, "/lib/systemd/system/swarmgate.service", S_IRUSR | S_IRGRP | S_IROTH);
    assert_file(root, "/usr/share/man/man8/swarmgate.8.gz", S_IRUSR | S_IRGRP | S_IROTH);
    assert_file(root, "/etc/swarmgate/swarmgate.yaml", S_IRUSR);
    assert_file(root, "/usr/share/swarmgate/swarmgate.yaml", S_IRUSR | S_IRGRP | S_IROTH);

    /* The installed example is the repository's config, byte for byte. */
    char p[700];
    size_t a_len, b_len;
    snprintf(p, sizeof(p), "%s/etc/swarmgate/swarmgate.yaml", root);
    char *a = slurp(p, 0, &a_len);
    char *b = slurp(SG_SOURCE_DIR "/config/swarmgate.yaml", 1, &b_len);
    cr_assert(a_len == b_len && memcmp(a, b, a_len) == 0, "installed config differs from config/swarmgate.yaml");

    /* Every file under config/ (sql, examples, alerts, dashboards) is shipped in share. */
    char qsrc[8300], qdst[1500], dst[700];
    snprintf(dst, sizeof(dst), "%s/usr/share/swarmgate", root);
    run_res_t r = run("diff -r %s %s", shq(qsrc, sizeof(qsrc), SG_SOURCE_DIR "/config"), shq(qdst, sizeof(qdst), dst));
    cr_assert_eq(r.code, 0, "share/swarmgate differs from config/:\n%s", r.out);

    /* The unit runs the installed binary on the installed config, hardened. */
    snprintf(p, sizeof(p), "%s/lib/systemd/system/swarmgate.service", root);
    char *unit = slurp(p, 0, NULL);
    cr_assert(has_line(unit, "ExecStart=/usr/sbin/swarmgate --config /etc/swarmgate/swarmgate.yaml"), "%s", unit);
    for (size_t i = 0; i < sizeof(k_hardening) / sizeof(k_hardening[0]); i++)
        cr_expect(has_line(unit, k_hardening[i]), "unit lacks the line %s", k_hardening[i]);
    cr_expect(!has_line(unit, "AmbientCapabilities=CAP_NET_BIND_SERVICE"), "capability must be opt-in");

    /* The installed binary runs. */
    r = run("%s/usr/sbin/swarmgate --version", root);
    cr_assert_eq(r.code, 0, "--version exit %d: %s", r.code, r.out);
    cr_assert(strstr(r.out, "swarmgate " SG_VERSION) != NULL, "--version said: %s", r.out);
}

Test(package, man_page_renders_without_warnings)
{
    if (!have_program("groff"))
        cr_skip_test("groff not installed");
    char root[600], qman[1500], man[700];
    install_into(root, sizeof(root), "root", "/usr");
    snprintf(man, sizeof(man), "%s/usr/share/man/man8/swarmgate.8.gz", root);
    shq(qman, sizeof(qman), man);

    run_res_t r = run("gzip -dc %s | groff -man -Tutf8 -ww -z", qman);
    cr_assert_eq(r.code, 0, "groff failed (%d): %s", r.code, r.out);
    cr_assert_str_empty(r.out, "groff warnings:\n%s", r.out);

    r = run("gzip -dc %s | groff -man -Tascii -P-c -P-b -P-u", qman);
    cr_assert_eq(r.code, 0);
    const char *want[] = {"SYNOPSIS",    "OPTIONS", "--config", "--check-config", "--version", "--help",
                          "EXIT STATUS", "SIGNALS", "SIGTERM",  "SIGHUP",         "FILES",     "SEE ALSO"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect(strstr(r.out, want[i]) != NULL, "man page lacks %s", want[i]);
}

Test(package, install_keeps_an_existing_config)
{
    char root[600], conf[700];
    tpath(root, sizeof(root), "root");
    snprintf(conf, sizeof(conf), "%s/etc/swarmgate", root);
    char q[1500];
    run_res_t r = run("mkdir -p %s && printf 'workers: 1\\n' > %s/swarmgate.yaml", shq(q, sizeof(q), conf), q);
    cr_assert_eq(r.code, 0, "%s", r.out);

    install_into(root, sizeof(root), "root", "/usr");
    strcat(conf, "/swarmgate.yaml");
    char *got = slurp(conf, 0, NULL);
    cr_assert_str_eq(got, "workers: 1\n", "an operator's config was overwritten");
}

Test(package, install_honours_the_prefix)
{
    char root[600];
    install_into(root, sizeof(root), "root", "/opt/sg");
    assert_file(root, "/opt/sg/sbin/swarmgate", S_IXUSR);
    assert_file(root, "/opt/sg/share/man/man8/swarmgate.8.gz", S_IRUSR);
    assert_file(root, "/opt/sg/lib/systemd/system/swarmgate.service", S_IRUSR);
    assert_file(root, "/etc/swarmgate/swarmgate.yaml", S_IRUSR);

    char p[700];
    snprintf(p, sizeof(p), "%s/opt/sg/lib/systemd/system/swarmgate.service", root);
    char *unit = slurp(p, 0, NULL);
    cr_assert(has_line(unit, "ExecStart=/opt/sg/sbin/swarmgate --config /etc/swarmgate/swarmgate.yaml"), "%s", unit);
}

Test(package, unit_passes_systemd_analyze_verify)
{
    if (!have_program("systemd-analyze"))
        cr_skip_test("systemd-analyze not installed: unit not verified");
    char root[600];
    install_into(root, sizeof(root), "root", "/usr");

    /* verify checks that ExecStart exists, so point it at the staged binary;
     * the unit must keep its name. MANPATH lets it find swarmgate(8). */
    char src[700], dir[700], dst[800], qsrc[1500], qdst[1700], qroot[1300], qman[1500], man[700];
    snprintf(src, sizeof(src), "%s/lib/systemd/system/swarmgate.service", root);
    tpath(dir, sizeof(dir), "verify");
    snprintf(dst, sizeof(dst), "%s/swarmgate.service", dir);
    snprintf(man, sizeof(man), "%s/usr/share/man", root);
    cr_assert_eq(mkdir(dir, 0755), 0);
    shq(qroot, sizeof(qroot), root);
    run_res_t r = run("sed 's#^ExecStart=/usr/sbin/swarmgate#ExecStart='%s'/usr/sbin/swarmgate#' %s > %s", qroot,
                      shq(qsrc, sizeof(qsrc), src), shq(qdst, sizeof(qdst), dst));
    cr_assert_eq(r.code, 0, "%s", r.out);

    r = run("MANPATH=%s systemd-analyze verify %s", shq(qman, sizeof(qman), man), qdst);
    cr_assert_eq(r.code, 0, "systemd-analyze verify failed (%d):\n%s", r.code, r.out);
    cr_assert_str_empty(r.out, "systemd-analyze verify complained:\n%s", r.out);
}

/* ---- Debian package ---- */

Test(package, deb_has_fields_files_and_scripts)
{
    char deb[1200], qdeb[2500];
    build_deb(deb, sizeof(deb));
    shq(qdeb, sizeof(qdeb), deb);

    run_res_t r = run("dpkg-deb -f %s Package Version Maintainer Section Architecture Depends Description", qdeb);
    cr_assert_eq(r.code, 0, "dpkg-deb -f: %s", r.out);
    const char *f = r.out;
    cr_assert(has_line(f, "Package: swarmgate"), "%s", f);
    cr_assert(has_line(f, "Version: " SG_VERSION "-1"), "%s", f);
    cr_assert(strstr(f, "\nMaintainer: ") && strchr(strstr(f, "\nMaintainer: "), '<'), "maintainer: %s", f);
    cr_assert(has_line(f, "Section: net"), "%s", f);
    cr_assert(strstr(f, "\nDescription: reverse HTTP proxy") != NULL, "%s", f);
    const char *dep = strstr(f, "\nDepends: ");
    cr_assert_not_null(dep, "no Depends: %s", f);
    char depends[2048];
    snprintf(depends, sizeof(depends), "%.*s", (int)strcspn(dep + 10, "\n"), dep + 10);
    cr_expect(depends_on(depends, "adduser"), "Depends: %s", depends);
    cr_expect(depends_on(depends, "libc6"), "Depends: %s", depends);
    /* The runtime libraries swarmgate is built on. dpkg-shlibdeps lists a
     * library only once the binary links it (--as-needed). */
    const char *libs[] = {"libuv1", "libpq5", "libyaml-0-2", "libuuid1"};
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++)
        cr_expect(depends_on(depends, libs[i]), "Depends lacks %s: %s", libs[i], depends);

    r = run("dpkg-deb -c %s", qdeb);
    cr_assert_eq(r.code, 0, "dpkg-deb -c: %s", r.out);
    const char *files[] = {" ./usr/sbin/swarmgate\n", " ./lib/systemd/system/swarmgate.service\n",
                           " ./usr/share/man/man8/swarmgate.8.gz\n", " ./etc/swarmgate/swarmgate.yaml\n",
                           " ./usr/share/swarmgate/swarmgate.yaml\n"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        cr_expect(strstr(r.out, files[i]) != NULL, "package lacks%s", files[i]);
    cr_expect(strstr(r.out, "-rwxr-xr-x root/root") != NULL, "no root-owned executable in:\n%s", r.out);

    /* Control area: maintainer scripts (executable, valid sh) and conffiles. */
    char ctl[700], qctl[1500];
    tpath(ctl, sizeof(ctl), "control");
    shq(qctl, sizeof(qctl), ctl);
    r = run("dpkg-deb -e %s %s", qdeb, qctl);
    cr_assert_eq(r.code, 0, "dpkg-deb -e: %s", r.out);
    const char *scripts[] = {"postinst", "prerm", "postrm"};
    for (size_t i = 0; i < 3; i++) {
        char p[800];
        snprintf(p, sizeof(p), "%s/%s", ctl, scripts[i]);
        assert_file("", p, S_IXUSR | S_IXGRP | S_IXOTH);
        r = run("sh -n %s/%s", qctl, scripts[i]);
        cr_expect_eq(r.code, 0, "%s is not valid sh: %s", scripts[i], r.out);
    }
    char p[800];
    snprintf(p, sizeof(p), "%s/conffiles", ctl);
    char *conffiles = slurp(p, 0, NULL);
    cr_expect(has_line(conffiles, "/etc/swarmgate/swarmgate.yaml"), "conffiles: %s", conffiles);

    snprintf(p, sizeof(p), "%s/postinst", ctl);
    char *postinst = slurp(p, 0, NULL);
    cr_expect(strstr(postinst, "getent passwd swarmgate") != NULL, "postinst must create the user only once");
    cr_expect(strstr(postinst, "adduser --system") != NULL, "postinst must create a system user");
    cr_expect(strstr(postinst, "systemctl enable") == NULL && strstr(postinst, "systemctl start") == NULL &&
                  strstr(postinst, "deb-systemd-helper enable") == NULL,
              "postinst must not enable or start the service");
    snprintf(p, sizeof(p), "%s/postrm", ctl);
    char *postrm = slurp(p, 0, NULL);
    cr_expect(strstr(postrm, "deluser") == NULL && strstr(postrm, "userdel") == NULL, "postrm must keep the user");
}

Test(package, deb_binary_accepts_the_packaged_config)
{
    char deb[1200], qdeb[2500], x[700], qx[1500];
    build_deb(deb, sizeof(deb));
    tpath(x, sizeof(x), "extract");
    run_res_t r = run("dpkg-deb -x %s %s", shq(qdeb, sizeof(qdeb), deb), shq(qx, sizeof(qx), x));
    cr_assert_eq(r.code, 0, "dpkg-deb -x: %s", r.out);
    assert_file(x, "/usr/sbin/swarmgate", S_IXUSR);

    r = run("%s/usr/sbin/swarmgate --version", qx);
    cr_assert_eq(r.code, 0, "--version exit %d: %s", r.code, r.out);
    cr_assert(strstr(r.out, "swarmgate " SG_VERSION) != NULL, "--version said: %s", r.out);

    /* The packaged example must validate as shipped (its ${VAR:-} defaults
     * keep it loadable without any environment). */
    r = run("env -u SWARM_PG_DSN -u SWARM_OTLP_URL %s/usr/sbin/swarmgate --check-config --config "
            "%s/etc/swarmgate/swarmgate.yaml",
            qx, qx);
    cr_assert_eq(r.code, 0, "--check-config of the packaged config: exit %d:\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "OK") != NULL, "--check-config printed no OK:\n%s", r.out);
}

/* The maintainer scripts, run for real, but inside a private mount namespace
 * where /etc is a copy and /run and /var/log are empty tmpfs: the host's
 * users, systemd and logs are never touched. Needs root and unshare(1). */
Test(package, maintainer_scripts_create_the_user_once_and_keep_it)
{
    if (geteuid() != 0)
        cr_skip_test("needs root for a private mount namespace");
    if (run("unshare -m true").code != 0)
        cr_skip_test("unshare -m not permitted here: %s", g_out);

    char deb[1200], qdeb[2500], x[700], qx[1500], ctl[700], qctl[1500], ns[700], qns[1500];
    build_deb(deb, sizeof(deb));
    shq(qdeb, sizeof(qdeb), deb);
    shq(qx, sizeof(qx), tpath(x, sizeof(x), "extract"));
    shq(qctl, sizeof(qctl), tpath(ctl, sizeof(ctl), "control"));
    shq(qns, sizeof(qns), tpath(ns, sizeof(ns), "ns"));
    run_res_t r = run("dpkg-deb -x %s %s && dpkg-deb -e %s %s && mkdir %s", qdeb, qx, qdeb, qctl, qns);
    cr_assert_eq(r.code, 0, "%s", r.out);

    /* The marker proves /etc is the copy before any script runs (set -e stops otherwise). */
    r = run("unshare -m sh -ec '"
            "ns=$1; x=$2; ctl=$3;"
            "cp -a /etc \"$ns/etc\"; touch \"$ns/etc/.sg_pkg_test_copy\";"
            "mkdir -p \"$ns/etc/swarmgate\"; cp \"$x/etc/swarmgate/swarmgate.yaml\" \"$ns/etc/swarmgate/\";"
            "mount --bind \"$ns/etc\" /etc; test -e /etc/.sg_pkg_test_copy;"
            "mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/log;"
            "had=$(getent passwd swarmgate || true); echo \"before=[$had]\";"
            "\"$ctl/postinst\" configure \"\"; \"$ctl/postinst\" configure \"\";"
            "echo \"passwd=$(getent passwd swarmgate | cut -d: -f3- )\";"
            "echo \"group=$(id -gn swarmgate)\"; echo \"count=$(grep -c ^swarmgate: /etc/passwd)\";"
            "echo \"conf=$(stat -c %%U:%%G:%%a /etc/swarmgate/swarmgate.yaml)\";"
            "\"$ctl/postinst\" configure " SG_VERSION "-1;"
            "\"$ctl/prerm\" remove; \"$ctl/postrm\" remove; \"$ctl/postrm\" purge;"
            "echo \"after_purge=$(getent passwd swarmgate | cut -d: -f1)\"' sg %s %s %s",
            qns, qx, qctl);
    cr_assert_eq(r.code, 0, "maintainer scripts failed (%d):\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "before=[]\n") != NULL, "a swarmgate user already existed; cannot test creation:\n%s",
              r.out);
    /* A system user (uid < 1000) without a login shell or a home. */
    const char *pw = strstr(r.out, "passwd=");
    cr_assert_not_null(pw, "%s", r.out);
    unsigned uid = 1000;
    cr_assert(sscanf(pw, "passwd=%u:", &uid) == 1 && uid > 0 && uid < 1000, "not a system uid:\n%s", r.out);
    cr_expect(strstr(pw, ":/nonexistent:/usr/sbin/nologin\n") != NULL, "home/shell:\n%s", r.out);
    cr_expect(strstr(r.out, "group=swarmgate\n") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "count=1\n") != NULL, "user created more than once:\n%s", r.out);
    cr_expect(strstr(r.out, "conf=root:swarmgate:640\n") != NULL, "config permissions:\n%s", r.out);
    cr_expect(strstr(r.out, "after_purge=swarmgate\n") != NULL, "purge removed the user:\n%s", r.out);
}
