/* sl/cfg.h - command-line flags with SLUICE_* environment equivalents.
 *
 * A service declares a table of options; cfg_parse fills each from, in
 * order of precedence, `--name value` / `--name=value`, then the
 * environment variable SLUICE_NAME (dashes become underscores, upper
 * case), then the default. `--help` prints every option with its variable
 * and default, and exits 0. A bad value prints one line and exits 2.
 *
 * A CFG_SECRET option (a password, a conninfo with one) also takes
 * `--name-file FILE` and SLUICE_NAME_FILE: its value is then the file's
 * content, read once at parse time (one trailing newline removed) after a
 * permission check that warns when other users may read it
 * (sl/secfile.h). Setting both SLUICE_NAME and SLUICE_NAME_FILE is an
 * error; on the command line the last of --name / --name-file wins. */
#ifndef SL_CFG_H
#define SL_CFG_H
#include <stdbool.h>
#include <stdint.h>

enum cfg_type {
    CFG_STR,    /* const char ** ; points into argv/environ/def, not copied */
    CFG_INT,    /* int64_t *     ; accepts k/M suffixes? no: plain decimal */
    CFG_BOOL,   /* bool *        ; --flag alone means true; 1/0/true/false/yes/no */
    CFG_DOUBLE, /* double *      */
    CFG_SECRET, /* const char ** ; as CFG_STR, or from a file (above); a file's content is never freed */
};

struct cfg_opt {
    const char *name; /* "batch-max" -> --batch-max, SLUICE_BATCH_MAX */
    enum cfg_type type;
    void *dst;
    const char *def; /* default as text; NULL = empty / 0 / false */
    const char *help;
    int64_t min, max; /* CFG_INT range, checked when min < max */
};

/* Parse argv and the environment into the table's destinations. `usage` is
 * the text printed before the option list on --help (what the program is).
 * `--version` (anywhere) prints "<prog> <version> (commit <commit>)".
 * Returns 0, or exits (2 on error, 0 after --help or --version). */
int cfg_parse(const struct cfg_opt *opts, int nopts, int argc, char **argv, const char *usage);

/* Print "<prog> <version> (commit <commit>)" (used by --version). */
void cfg_print_version(const char *prog);

/* Print the option list (used by --help). */
void cfg_print_help(const struct cfg_opt *opts, int nopts, const char *prog, const char *usage);

#endif
