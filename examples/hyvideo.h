/* hyvideo.h — the `hyvideo` command line: one file per subcommand (hyvideo-<name>.c), each
 * registered in the table in hyvideo.c. A subcommand gets argv with argv[0] = its own name and
 * returns the process exit status. */
#pragma once
#include <glib.h>

typedef struct {
  const char *name;
  const char *summary;
  int (*run) (int argc, char **argv);
} HvCommand;

int hv_cmd_inspect (int argc, char **argv);
int hv_cmd_generate (int argc, char **argv);
