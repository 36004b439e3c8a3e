/* hyvideo.c — `hyvideo COMMAND [ARGS]`: dispatches to the subcommands of the table. */
#include "hyvideo.h"
#include <stdio.h>
#include <string.h>

static const HvCommand commands[] = {
  { "inspect", "check a model folder or weights file: layout, tensors, dtypes, parameters, problems", hv_cmd_inspect },
  { "generate", "text to an MP4 file (the flags of the official sample_video.py)", hv_cmd_generate },
  /* further subcommands (generate, ...) are added here */
};

static void
usage (FILE *f)
{
  fprintf (f, "usage: hyvideo COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\n`hyvideo COMMAND --help` describes a command.\n");
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0) {
    usage (stdout);
    return 0;
  }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "hyvideo: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
