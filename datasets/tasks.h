/* tasks.h - evaluation task files: a libconfig file names a JSONL data file and maps its
 * fields, as the benchmark's own files have them, onto what a scorer needs.
 *
 *   name = "piqa";  category = "language";  data = "data/benchmarks/piqa/valid.jsonl";
 *   kind = "multiple_choice";  scorer = "acc";
 *   context = "Question: {goal}\nAnswer:";     # a template over the JSON fields
 *   choices = ["{sol1}", "{sol2}"];            # one template per choice, or
 *   # choices_from = "choices.text";           # a field holding the choices (a list)
 *   label = "label";  label_kind = "index";
 *
 * Kinds (lm-evaluation-harness's output types; stages/eval_requests.h builds requests):
 *   multiple_choice  requests (context, delimiter + choice_i), gold from the label
 *   partial          requests (choice_i, delimiter + target): WinoGrande's form, where
 *                    the choices are the contexts
 *   loglikelihood    one request (context, target), no delimiter (LAMBADA: ppl and acc)
 *   rolling          text (rolling perplexity); count = the text words and bytes are
 *                    counted on (WikiText counts the page before detokenizing)
 *   vqa              image, question (context), choices, label or answers, group,
 *                    area_share, item_category
 * Scorers: multiple_choice/partial "acc"; loglikelihood "lambada"; rolling "perplexity";
 *   vqa "choice" (three-tier parser), "exact", "relaxed" (5% numeric), "vqa" (VQA
 *   accuracy over answers), "mme" (yes/no, acc+ over group = image), "mmbench" (choice,
 *   circular over group), "existence" (choice, by area_share).
 *
 * Templates: text with {path|filter|filter:arg}; "{{" and "}}" are braces. A path is
 *   field names joined by "." (choices.text); a step into a list of objects maps over it.
 *   A value that is a number or boolean becomes Python's str() of it; {field?} is optional
 *   (missing or null gives ""). Filters:
 *   strip lstrip rstrip lower capitalize (Python's) lcfirst droplast (s[:-1])
 *   lastword butlastword (split on " ") before:X after:X (around the first X; an error
 *   when X is absent) map:NAME (a group of maps = { NAME = { key = "value"; }; })
 *   hellaswag (lm-eval's preprocess) wikitext (lm-eval's wikitext_detokenizer)
 *   mod:N (an integer's remainder: MMBench's circular copies share index % 1000000)
 *   optline ("" and "nan" give "", anything else itself + "\n": an optional hint line).
 *   skip_empty_choices = true drops choices that render to "" or "nan" (MMBench's
 *   missing C/D options).
 *   context_filters / choice_filters: filter lists applied to the whole rendered context /
 *   each choice. {@options} renders the item's choices as "A. first\nB. second ..." (the
 *   LLaVA / lmms-eval multiple-choice prompt).
 * Selection: select = { answer_type = "multiple_choice"; image_set = ["charts", "text"]; }
 *   keeps only the lines whose fields (as text) take one of the values given, every field
 *   listed; exclude = { ... } drops the lines that match any.
 * image, group, item_category and id name a field, or are templates when they hold a "{"
 *   (group = "{index|mod:1000000}").
 * Labels (label_kind): index (0-based int or a string of one), index1 (1-based: "1"/"2"),
 *   letter ("A".. ), key (the value's place in the list at label_keys, stripped: ARC's
 *   answerKey in choices.label), bool (true = 1: BoolQ's original "answer"), text (the
 *   choice equal to it), const (label_const: SciQ's 3).
 *
 * Errors name the place: a bad task file "FILE:LINE: key: ...", a bad data line
 * "DATA:LINE: field 'sol2': missing" (wrong type, a label outside the choices, ...). */
#ifndef PRESIGHT_TASKS_H
#define PRESIGHT_TASKS_H

#include <stddef.h>

#include "error.h"

typedef enum task_kind { TASK_MULTIPLE_CHOICE, TASK_PARTIAL, TASK_LOGLIKELIHOOD, TASK_ROLLING, TASK_VQA } task_kind;

typedef struct task_def task_def; /* opaque: the parsed file */

typedef struct task_info {
    const char *name, *category, *data, *scorer, *delimiter;
    task_kind kind;
    const char *path;   /* the task file */
    const char *sha256; /* of the task file's bytes, 64 hex */
} task_info;

/* Loads a task file; overrides are "key=value" for the string keys name, category, data,
 * scorer, delimiter (an sbatch line points data at another copy). */
int task_load(task_def **out, const char *path, int n_overrides, char **overrides, ps_error *err);
void task_free(task_def *t);
task_info task_get_info(const task_def *t);
const char *task_kind_name(task_kind k);

typedef struct task_item {
    char *id;          /* the "id" field when there is one (as text), else "LINE" */
    size_t line;       /* 1-based line in the data file */
    char *context;     /* context / question / rolling text */
    char *target;      /* partial and loglikelihood continuation; NULL otherwise */
    char *count_text;  /* rolling: what words and bytes are counted on */
    char **choices;
    int n_choices;
    int gold;          /* -1 where the kind has none */
    char **answers;    /* vqa short answers */
    int n_answers;
    char *image, *group, *item_category; /* vqa; NULL when not mapped */
    double area_share; /* vqa existence; NaN when not mapped */
} task_item;

/* Maps one JSON line (line_no for messages) into out: 0, -1 on error, 1 when the task's
 * select/exclude leave the line out (out is then empty). */
int task_map_line(const task_def *t, const char *json_line, size_t line_no, task_item *out, ps_error *err);
void task_item_clear(task_item *item);

/* Reads every non-blank line of the task's data file. */
int task_read_items(const task_def *t, task_item **items, size_t *n, ps_error *err);
void task_items_free(task_item *items, size_t n);

/* One named filter (as in templates) on text; *out is malloc'd. For tests and tools. */
int task_filter_apply(const char *filter, const char *text, char **out, ps_error *err);

#endif
