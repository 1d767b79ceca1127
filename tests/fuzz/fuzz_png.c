/* fuzz_png.c - libFuzzer harness for png_decode (8- and 16-bit output): corrupt PNGs are errors,
 * never crashes or leaks; what decodes must encode. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int want16 = 0; want16 <= 1; want16++) {
        Tensor t;
        if (png_decode(data, size, "fuzz.png", want16, &t)) continue;
        void *buf;
        size_t len;
        if (png_encode(&t, &buf, &len)) abort();
        free(buf);
        tensor_free(&t);
    }
    Tensor t;
    if (image_decode(data, size, "fuzz.img", &t) == 0) tensor_free(&t);
    return 0;
}
