// Subcommands of the lfmd binary. Each lives in src/app/cmd_<name>.c and returns the process exit
// code (0 ok, 1 runtime error, 2 usage error). Declared weak so a subcommand whose file is not
// built yet reports itself as missing instead of breaking the link.
// SPDX-License-Identifier: MIT
#ifndef LFMD_APP_COMMANDS_H
#define LFMD_APP_COMMANDS_H

#define LFMD_WEAK __attribute__((weak))

LFMD_WEAK int cmd_run(int argc, char **argv);
LFMD_WEAK int cmd_inspect(int argc, char **argv);
LFMD_WEAK int cmd_bench(int argc, char **argv);
LFMD_WEAK int cmd_tokenize(int argc, char **argv);
LFMD_WEAK int cmd_detokenize(int argc, char **argv);
LFMD_WEAK int cmd_template(int argc, char **argv);
LFMD_WEAK int cmd_serve(int argc, char **argv);
LFMD_WEAK int cmd_stdio(int argc, char **argv);
LFMD_WEAK int cmd_route(int argc, char **argv);
LFMD_WEAK int cmd_quantize(int argc, char **argv);
LFMD_WEAK int cmd_ps(int argc, char **argv);

#endif
