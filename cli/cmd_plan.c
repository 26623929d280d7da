/* cmd_plan.c - presight plan CONFIG: what a config costs before running it. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "model.h"

static void print_count(const char *what, double n) {
    printf("  %-28s %14.0f  (%.1f M)\n", what, n, n / 1e6);
}

int cmd_plan(int argc, char **argv) {
    if (wants_help(argc, argv) || argc < 2) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: presight plan CONFIG [key=value ...]\n\n"
                "Prints the parameter count of the model CONFIG describes (by part), and the\n"
                "training FLOPs per token at the configured sequence length.\n");
        return argc < 2 ? 2 : 0;
    }
    run_config cfg;
    ps_error err = {{0}};
    if (config_load_model(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "presight plan: %s\n", err.msg);
        return 2;
    }
    model_layout L;
    if (model_layout_init(&L, &cfg.model, &err)) {
        fprintf(stderr, "presight plan: %s\n", err.msg);
        return 2;
    }
    const model_config *c = &cfg.model;
    double embed = (double)L.units[0].size, blocks = 0, head = (double)L.units[L.n_units - 1].size;
    for (int u = 1; u < L.n_units - 1; u++) blocks += (double)L.units[u].size;
    printf("%s: %d layers, dim %d, %d heads (%d kv, head dim %d), ffn %d, vocab %d, context %d, %s head\n",
           cfg.source, c->layers, c->dim, c->heads, c->kv_heads, L.head_dim, c->ffn_dim, c->vocab, c->context,
           c->tied_head ? "tied" : "untied");
    print_count("embedding", embed);
    print_count("transformer blocks", blocks);
    print_count("final norm + output head", head);
    print_count("total parameters", (double)L.n_params);
    int seq = cfg.train.seq_len <= c->context ? cfg.train.seq_len : c->context;
    printf("  %-28s %14.4g  (6N + attention, PaLM convention, seq %d)\n", "training FLOPs per token",
           model_train_flops(&L, seq, 1.0), seq);
    model_layout_free(&L);
    return 0;
}
