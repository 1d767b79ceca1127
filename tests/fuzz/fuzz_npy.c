/* fuzz_npy.c - libFuzzer harness for npy_parse: any input is parsed or rejected, never a crash
 * or a leak; what parses must serialise and parse back to the same bytes. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tensor t, r;
    if (npy_parse(data, size, "fuzz.npy", &t)) return 0;
    void *buf;
    size_t len;
    if (npy_serialize(&t, &buf, &len) == 0) {
        if (npy_parse(buf, len, "again.npy", &r) || !tensor_same_shape(&t, &r) ||
            memcmp(t.data, r.data, (size_t)tensor_nbytes(&t)))
            abort();
        tensor_free(&r);
        free(buf);
    }
    tensor_free(&t);
    return 0;
}
