/* fuzz_pickle.c - libFuzzer harness for pickle_parse and its readers: any input is parsed or
 * rejected, never a crash, a leak or a hang; on what parses, every reader runs on every node
 * reachable from the root (a bounded walk: memo references can make cycles). */
#include "formats/codecs.h"
#include "formats/pickle.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Pickle *p;
    const PkObj *root;
    if (pickle_parse(data, size, "fuzz.pkl", &p, &root)) return 0;
    const PkObj *todo[4096];
    size_t n = 0, seen = 0;
    todo[n++] = root;
    while (n && seen++ < 20000) {
        const PkObj *o = todo[--n];
        Tensor t;
        char **s;
        int k;
        if (pk_ndarray(o, "fuzz", &t) == 0) tensor_free(&t);
        if (pk_int_list(o, "fuzz", &t) == 0) tensor_free(&t);
        if (pk_str_list(o, "fuzz", &s, &k) == 0) dd_lines_free(s, k);
        (void)pk_get(o, "data");
        if (o->kind == PK_LIST || o->kind == PK_TUPLE || o->kind == PK_DICT)
            for (size_t i = 0; i < o->n && n < 4096; i++) todo[n++] = o->v[i];
        if (o->kind == PK_CALL) {
            if (n < 4096) todo[n++] = o->args;
            if (o->state && n < 4096) todo[n++] = o->state;
        }
    }
    pickle_free(p);
    return 0;
}
