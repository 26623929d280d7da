/* commands.h - the subcommands of the presight binary (argv[0] is the command name). */
#ifndef PRESIGHT_COMMANDS_H
#define PRESIGHT_COMMANDS_H

#include <stdio.h>

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_adapt(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* presight data images (cmd_data_images.c), dispatched by cmd_data. */
int data_images(int argc, char **argv);

/* True when argv holds --help or -h. */
int wants_help(int argc, char **argv);

#endif
