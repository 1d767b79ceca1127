/* fuzz_safetensors.c - libFuzzer harness for st_parse (which takes ownership of a malloc'ed
 * copy): malformed headers are errors, never crashes or leaks; every accepted tensor is readable
 * and the file serialises again. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    Safetensors st;
    if (st_parse(copy, size, "fuzz.safetensors", &st)) return 0;
    const char **names = malloc((size_t)(st.n ? st.n : 1) * sizeof *names);
    const Tensor **ts = malloc((size_t)(st.n ? st.n : 1) * sizeof *ts);
    volatile uint8_t sink = 0;
    for (int i = 0; i < st.n; i++) {
        names[i] = st.e[i].name;
        ts[i] = &st.e[i].t;
        size_t nb = (size_t)tensor_nbytes(&st.e[i].t);
        for (size_t k = 0; k < nb; k++) sink ^= ((const uint8_t *)st.e[i].t.data)[k];
        if (st_find(&st, names[i]) == NULL) abort();
    }
    (void)sink;
    void *buf;
    size_t len;
    if (st_serialize(st.n, names, ts, st.metadata, &buf, &len)) abort();
    Safetensors again;
    if (st_parse(buf, len, "again.safetensors", &again) || again.n != st.n) abort();
    st_free(&again);
    free(names);
    free(ts);
    st_free(&st);
    return 0;
}
