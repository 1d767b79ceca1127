/* fuzz_idx.c - libFuzzer harness for idx_parse (plain or gzip in memory): wrong sizes, huge dims
 * and corrupt gzip are errors, never crashes, leaks or huge allocations. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tensor t;
    if (idx_parse(data, size, "fuzz.idx", &t) == 0) tensor_free(&t);
    return 0;
}
