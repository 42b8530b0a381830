/* cfg.c - table-driven command-line flags with SLUICE_* environment equivalents.
 *
 * Precedence per option: the last `--name value` / `--name=value` on the
 * command line, then SLUICE_NAME from the environment, then the table's
 * default. Every value goes through the same parser, so a bad default is
 * reported the same way as a bad flag. Errors print one line on stderr and
 * exit 2; --help / -h (anywhere) prints the option list on stdout and exits 0.
 *
 * A CFG_SECRET option also takes `--name-file FILE` / SLUICE_NAME_FILE: the
 * value is then the file's content (sl/secfile.h: read whole, permissions
 * checked, one trailing newline removed), so a deployment can mount a
 * secret as a file instead of putting it in the environment or on the
 * command line, where /proc shows it to the process's neighbours.
 *
 * Deliberately not here: config files, positional arguments, short options
 * other than -h, k/M suffixes. Strings are not copied: they point into argv,
 * environ or the table's default, which all outlive main(); only a secret
 * read from a file is held in memory this file owns, for the same life. */
#define _GNU_SOURCE
#include "sl/cfg.h"
#include "sl/secfile.h"
#include "sl/version.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENV_NAME_MAX 96
#define SECRET_MAX   65536 /* bytes of a secret file */
#define FILE_SUFFIX  "-file"

/* Secrets read from files, kept for the life of the process (reachable from
 * here, so a leak checker does not report them). */
static char *g_secrets[32];
static int g_nsecrets;

static const char *prog_name(int argc, char **argv)
{
    if (argc < 1 || !argv[0])
        return "sluice";
    const char *s = strrchr(argv[0], '/');
    return s ? s + 1 : argv[0];
}

static void env_name(const char *name, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "SLUICE_");
    for (const char *p = name; *p && o + 1 < cap; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
}

/* 1 = true, 0 = false, -1 = not a boolean literal. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static const char *type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_STR: return "str";
    case CFG_INT: return "int";
    case CFG_BOOL: return "bool";
    case CFG_DOUBLE: return "num";
    case CFG_SECRET: return "secret";
    }
    return "?";
}

/* The option called name[0..len), or a CFG_SECRET option's "<name>-file"
 * form (then *file is set). -1 if none. */
static int find_opt_file(const struct cfg_opt *opts, int nopts, const char *name, size_t len, bool *file)
{
    *file = false;
    for (int i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return i;
    const size_t sl = sizeof FILE_SUFFIX - 1;
    if (len <= sl || strncmp(name + len - sl, FILE_SUFFIX, sl) != 0)
        return -1;
    for (int i = 0; i < nopts; i++)
        if (opts[i].type == CFG_SECRET && strlen(opts[i].name) == len - sl &&
            strncmp(opts[i].name, name, len - sl) == 0) {
            *file = true;
            return i;
        }
    return -1;
}

static int find_opt(const struct cfg_opt *opts, int nopts, const char *name, size_t len)
{
    bool file;
    return find_opt_file(opts, nopts, name, len, &file);
}

static void __attribute__((noreturn, format(printf, 2, 3))) die(const char *prog, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (try --help)\n", prog, msg);
    exit(2);
}

/* Look at argv[i]. On a known option sets *opt and *val (NULL for a bare
 * boolean), *file for the "-file" form of a CFG_SECRET, and returns how
 * many argv slots it used (1 or 2). Anything else exits 2. */
static int scan_arg(const struct cfg_opt *opts, int nopts, int argc, char **argv, int i, int *opt,
                    const char **val, bool *file)
{
    const char *prog = prog_name(argc, argv);
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
        die(prog, "unexpected argument '%s'", a);
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    int k = find_opt_file(opts, nopts, name, nlen, file);
    if (k < 0)
        die(prog, "unknown option '--%.*s'", (int)nlen, name);
    *opt = k;
    if (eq) {
        *val = eq + 1;
        return 1;
    }
    if (opts[k].type == CFG_BOOL) {
        /* "--flag" alone is true; "--flag false" is accepted too, but only a
         * boolean literal is taken as the value so a following flag is not
         * swallowed. */
        if (i + 1 < argc && parse_bool(argv[i + 1]) >= 0) {
            *val = argv[i + 1];
            return 2;
        }
        *val = NULL;
        return 1;
    }
    if (i + 1 >= argc)
        die(prog, "option '--%s%s' needs a value", opts[k].name, *file ? FILE_SUFFIX : "");
    *val = argv[i + 1];
    return 2;
}

static void store(const struct cfg_opt *o, const char *val, const char *src, const char *prog)
{
    switch (o->type) {
    case CFG_STR:
    case CFG_SECRET: *(const char **)o->dst = val ? val : ""; return;
    case CFG_BOOL: {
        int b = val ? parse_bool(val) : 1;
        if (b < 0)
            die(prog, "%s: '%s' is not a boolean (true/false/1/0/yes/no)", src, val);
        *(bool *)o->dst = b == 1;
        return;
    }
    case CFG_INT: {
        if (!val || !*val)
            die(prog, "%s: empty value, expected an integer", src);
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        int e = errno;
        if (e != 0 || *end != '\0' || end == val)
            die(prog, "%s: '%s' is not an integer", src, val);
        if (o->min < o->max && (v < o->min || v > o->max))
            die(prog, "%s: %lld is out of range [%lld, %lld]", src, v, (long long)o->min, (long long)o->max);
        *(int64_t *)o->dst = (int64_t)v;
        return;
    }
    case CFG_DOUBLE: {
        if (!val || !*val)
            die(prog, "%s: empty value, expected a number", src);
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        int e = errno;
        if (e != 0 || *end != '\0' || end == val || !isfinite(v))
            die(prog, "%s: '%s' is not a number", src, val);
        *(double *)o->dst = v;
        return;
    }
    }
}

/* The content of the secret file `path` named by src (a flag or variable);
 * exits 2 if it cannot be read. */
static const char *read_secret(const char *prog, const char *src, const char *path)
{
    if (!path || !*path)
        die(prog, "%s: empty file name", src);
    if (g_nsecrets == (int)(sizeof g_secrets / sizeof g_secrets[0]))
        die(prog, "%s: too many secret files", src);
    char *s = secfile_read(path, src, SECRET_MAX, NULL);
    if (!s) {
        int e = errno;
        die(prog, "%s: %s: %s", src, path, e == ENODATA ? "empty" : e == EFBIG ? "too big" : strerror(e));
    }
    g_secrets[g_nsecrets++] = s;
    return s;
}

void cfg_print_version(const char *prog)
{
    printf("%s %s (commit %s)\n", prog, sl_version, sl_commit);
}

void cfg_print_help(const struct cfg_opt *opts, int nopts, const char *prog, const char *usage)
{
    printf("Usage: %s [options]\n", prog ? prog : "sluice");
    if (usage && *usage)
        printf("%s\n", usage);
    printf("\nOptions (each also read from its environment variable; a flag wins over the variable):\n");
    for (int i = 0; i < nopts; i++) {
        const struct cfg_opt *o = &opts[i];
        char env[ENV_NAME_MAX];
        env_name(o->name, env, sizeof env);
        const bool secret = o->type == CFG_SECRET;
        printf("  --%s <%s>", o->name, type_name(o->type));
        if (secret)
            printf(" or --%s%s <file>", o->name, FILE_SUFFIX);
        printf("\n      %s\n", o->help ? o->help : "");
        const char *def = o->def ? o->def : (o->type == CFG_BOOL ? "false" : o->type == CFG_INT ? "0" : "");
        if (secret)
            printf("      env %s or %s_FILE (the file's content; keep it mode 600), default \"%s\"", env, env,
                   def);
        else
            printf("      env %s, default \"%s\"", env, def);
        if (o->type == CFG_INT && o->min < o->max)
            printf(", range [%lld, %lld]", (long long)o->min, (long long)o->max);
        printf("\n");
    }
    printf("  --help, -h\n      print this help and exit\n");
    printf("  --version\n      print the version and the commit built from, and exit\n");
    fflush(stdout);
}

int cfg_parse(const struct cfg_opt *opts, int nopts, int argc, char **argv, const char *usage)
{
    const char *prog = prog_name(argc, argv);

    /* Pass 1: look for --help anywhere (it wins over any error, as users type
     * --help to find the fix), then validate the whole command line so an
     * unknown flag is reported before any value. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cfg_print_help(opts, nopts, prog, usage);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            cfg_print_version(prog);
            exit(0);
        }
        /* Skip the separate value of a known option ("--pull -h" binds -h
         * to --pull, as the real parse below would). */
        if (strncmp(a, "--", 2) == 0 && !strchr(a, '=')) {
            int k = find_opt(opts, nopts, a + 2, strlen(a + 2));
            if (k >= 0 && opts[k].type != CFG_BOOL)
                i++;
        }
    }
    for (int i = 1; i < argc;) {
        int k;
        const char *v;
        bool f;
        i += scan_arg(opts, nopts, argc, argv, i, &k, &v, &f);
    }

    /* Pass 2: per option, the last flag wins, then the environment, then
     * the default. */
    for (int k = 0; k < nopts; k++) {
        const struct cfg_opt *o = &opts[k];
        const char *val = o->def;
        bool have_flag = false, from_file = false;
        char src[ENV_NAME_MAX + 16];
        snprintf(src, sizeof src, "default of --%s", o->name);
        for (int i = 1; i < argc;) {
            int j;
            const char *v;
            bool f;
            int used = scan_arg(opts, nopts, argc, argv, i, &j, &v, &f);
            if (j == k) {
                val = v;
                have_flag = true;
                from_file = f;
            }
            i += used;
        }
        if (have_flag) {
            snprintf(src, sizeof src, "--%s%s", o->name, from_file ? FILE_SUFFIX : "");
        } else {
            char env[ENV_NAME_MAX], envf[ENV_NAME_MAX + 8];
            env_name(o->name, env, sizeof env);
            snprintf(envf, sizeof envf, "%s_FILE", env);
            const char *e = getenv(env);
            const char *ef = o->type == CFG_SECRET ? getenv(envf) : NULL;
            if (e && ef)
                die(prog, "both %s and %s are set: give one", env, envf);
            if (e) {
                val = e;
                snprintf(src, sizeof src, "%s", env);
            } else if (ef) {
                val = ef;
                from_file = true;
                snprintf(src, sizeof src, "%s", envf);
            }
        }
        if (from_file)
            val = read_secret(prog, src, val);
        if (val == NULL && !have_flag) {
            /* No value anywhere: the zero of the type, without the range
             * check (a table may use NULL for "unset, decided later"). */
            switch (o->type) {
            case CFG_STR:
            case CFG_SECRET: *(const char **)o->dst = ""; break;
            case CFG_BOOL: *(bool *)o->dst = false; break;
            case CFG_INT: *(int64_t *)o->dst = 0; break;
            case CFG_DOUBLE: *(double *)o->dst = 0; break;
            }
            continue;
        }
        store(o, val, src, prog);
    }
    return 0;
}
