/* recover_tool.c - test helper of the patchsel/recover golden and parity scripts: makes a
 * deterministic random-init teacher for a stream's class list and image shape (until evaltrain
 * trains real ones; random teachers are enough for mechanics and parity).
 *   recover_tool teacher OUT.safetensors ARCH STREAM SEED
 * The BN running statistics are drawn too (mean U(-0.2,0.2), var U(0.5,1.5)), so the statistics
 * loss of recover is not a trivial function of fresh 0/1 buffers. */
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/models/model.h"

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    if (argc != 6 || strcmp(argv[1], "teacher"))
        dd_die(DD_EXIT_USAGE, "usage: recover_tool teacher OUT.safetensors ARCH STREAM SEED");
    uint64_t seed = (uint64_t)dd_opt_long("SEED", argv[5], 0, INT64_MAX);
    TsReader *r = ts_reader_open(argv[4]);
    if (!r) dd_die_err(DD_EXIT_DATA);
    TsRecord rec;
    ts_record_init(&rec);
    if (ts_reader_next(r, &rec) != 1) dd_die(DD_EXIT_DATA, "%s: no first record", argv[4]);
    const Tensor *im = ts_record_cget(&rec, "image");
    if (!im || im->ndim != 3) dd_die(DD_EXIT_DATA, "%s: no [C,H,W] image", argv[4]);
    const TsHeader *h = ts_reader_header(r);
    int nc = ts_header_nclasses(h);
    const char **names = dd_malloc((size_t)nc * sizeof *names);
    for (int c = 0; c < nc; c++) names[c] = ts_header_class(h, c);
    Nn *nn = nn_new(DD_CPU, 1);
    Model *m = model_create(nn, argv[3], (int)im->shape[0], nc, (int)im->shape[1], seed);
    if (!m) dd_die_err(DD_EXIT_USAGE);
    DdRng g;
    dd_rng_init(&g, seed, 99, 0);
    for (int i = 0; i < m->nparams; i++) {
        NnParam *p = m->params[i];
        size_t len = strlen(p->name);
        int mean = len > 13 && !strcmp(p->name + len - 13, ".running_mean");
        int var = len > 12 && !strcmp(p->name + len - 12, ".running_var");
        if (!mean && !var) continue;
        int64_t n = tensor_numel(&p->var.v);
        float *v = dd_malloc((size_t)n * sizeof *v);
        for (int64_t j = 0; j < n; j++) v[j] = (float)(mean ? dd_rng_uniform_range(&g, -0.2, 0.2)
                                                         : dd_rng_uniform_range(&g, 0.5, 1.5));
        nn_var_upload(nn, &p->var, v);
        free(v);
    }
    if (model_save(argv[2], m, nc, names, NULL) < 0) dd_die_err(DD_EXIT_DATA);
    free(names);
    model_free(m);
    nn_free(nn);
    ts_record_free(&rec);
    ts_reader_close(r);
    return 0;
}
