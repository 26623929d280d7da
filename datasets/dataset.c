/* dataset.c - opens the dataset a config names. */
#include "dataset.h"

#include <string.h>

#include "mixture.h"
#include "text_dataset.h"

int dataset_open(dataset **out, const run_config *cfg, ps_error *err) {
    if (strcmp(cfg->data.kind, "text") == 0) return text_dataset_open(out, cfg->data.path, (uint64_t)cfg->train.seed, err);
    /* One ingested source, or several by weight: the same sampler. */
    if (strcmp(cfg->data.kind, "shards") == 0 || strcmp(cfg->data.kind, "mixture") == 0)
        return mixture_dataset_open(out, cfg, err);
    return ps_fail(err, "data.kind = \"%s\" is not supported by this build", cfg->data.kind);
}

void dataset_close(dataset *ds) {
    if (ds) ds->ops->close(ds);
}
