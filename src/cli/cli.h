/* cli.h: the subcommands of the `frugal` command (one file each) and the one place
 * that turns a status into a message, a hint and an exit code. */
#ifndef FRUGAL_CLI_H
#define FRUGAL_CLI_H

#include "frugal/core.h"
#include "frugal/opts.h"

/* Each takes argv after the subcommand name (argv[0] is the subcommand) and
 * returns the process exit code. */
int fg_cmd_hw(int argc, char **argv);
int fg_cmd_train(int argc, char **argv);
int fg_cmd_sample(int argc, char **argv);
int fg_cmd_bench(int argc, char **argv);
int fg_cmd_tokenize(int argc, char **argv);
int fg_cmd_clean(int argc, char **argv);
int fg_cmd_ckpt(int argc, char **argv);
int fg_cmd_convert(int argc, char **argv);
int fg_cmd_synth(int argc, char **argv);
int fg_cmd_plot(int argc, char **argv);

/* Prints "frugal <cmd>: error: <last error>" and, when hint != NULL, "hint: <hint>"
 * to stderr. Returns the exit code for st (2 for usage/config errors, 1 otherwise). */
int fg_cli_fail(const char *cmd, fg_status st, const char *hint);

/* How a subcommand reads its argv: its option tables (each bound to the struct it
 * fills, with that struct's defaults for --help), the usage lines printed above the
 * options, and short aliases ({"-o", "--output", NULL}: each short flag, then its long
 * name). */
typedef struct fg_cli_spec {
    const char *cmd;   /* "clean train-classifier": starts every message */
    const char *usage; /* usage lines, printed first by --help */
    const fg_opt_table *tables;
    const void *const *defaults; /* per table, for the default column (entries may be NULL) */
    int n_tables;
    const char *const *aliases;
} fg_cli_spec;

/* Parses argv[1..argc) with fg_opts_parse_args, positionals into a->pos. Returns -1
 * when the command goes on; otherwise its exit code: 0 after -h/--help printed the
 * usage and every option to stdout, 2 after a usage error (the message names the flag
 * or value, on stderr, with a hint to --help). */
int fg_cli_parse(const fg_cli_spec *s, int argc, char **argv, fg_opt_args *a);

/* Prints the usage and the options of s to f. */
void fg_cli_print_help(const fg_cli_spec *s, FILE *f);

/* The reader's limits (fg_data_reader_limits) as `clean` and `tokenize` take them:
 * one option table (--max-doc-mb, --max-file-mb, --fail-on-read-error) for both. */
typedef struct fg_cli_reader_opts {
    double max_doc_mb, max_file_mb;
    int fail_on_read_error;
} fg_cli_reader_opts;
/* The table, bound to o. */
fg_opt_table fg_cli_reader_table(fg_cli_reader_opts *o);
/* From the limits in bytes (max_file_bytes 0: FG_DATA_DEFAULT_MAX_FILE_BYTES), and back. */
void fg_cli_reader_opts_init(fg_cli_reader_opts *o, size_t max_doc_bytes, uint64_t max_file_bytes, bool fail);
void fg_cli_reader_opts_apply(const fg_cli_reader_opts *o, size_t *max_doc_bytes, uint64_t *max_file_bytes, bool *fail);

/* Checks that no output path names one of the inputs (same file by device and inode
 * when both exist, or the same absolute path when the output does not exist yet).
 * With inside_dirs, an output under an input directory is refused too (the reader would
 * pick it up). Two outputs naming one file are refused. FG_ERR_INVALID naming both. */
fg_status fg_cli_check_outputs(const char *const *outputs, int n_out, const char *const *inputs, int n_in,
                               bool inside_dirs);

/* The default rules file (clean_rules.conf), found from the binary, never from the
 * working directory: <exe dir>/../configs (build tree), <exe dir>/../share/frugal/configs
 * (installed), the install prefix CMake compiled in (FG_INSTALL_CONFIGDIR), the source
 * tree it was built from (FG_BUILD_CONFIGDIR). NULL when none exists, with an error
 * listing every path tried. */
const char *fg_cli_default_rules(void);

#endif
