/* cli.h: the subcommands of the `frugal` command (one file each) and the one place
 * that turns a status into a message, a hint and an exit code. */
#ifndef FRUGAL_CLI_H
#define FRUGAL_CLI_H

#include "frugal/core.h"

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

/* Prints "frugal <cmd>: error: <last error>" and, when hint != NULL, "hint: <hint>"
 * to stderr. Returns the exit code for st (2 for usage/config errors, 1 otherwise). */
int fg_cli_fail(const char *cmd, fg_status st, const char *hint);

#endif
