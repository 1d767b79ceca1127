/* sniff.c - see sniff.h. */
#include "formats/sniff.h"

#include <string.h>

DdFileKind dd_sniff(const uint8_t *b, size_t n)
{
    if ((n >= 4 && !memcmp(b, "\x28\xb5\x2f\xfd", 4)) || (n >= 5 && !memcmp(b, "\x89" "DDTS", 5))
        || (n >= 262 && !memcmp(b + 257, "ustar", 5)))
        return DD_KIND_STREAM;
    uint64_t len = 0;
    for (int i = 7; n >= 9 && i >= 0; i--) len = len << 8 | b[i];
    if (n >= 9 && len >= 2 && len < 100000000 && b[8] == '{') return DD_KIND_SAFETENSORS;
    if ((n >= 4 && !memcmp(b, "PK\x03\x04", 4)) || (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5))
        return DD_KIND_TORCH;
    if ((n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) || (n >= 3 && !memcmp(b, "\xff\xd8\xff", 3)))
        return DD_KIND_IMAGE;
    if (n >= 6 && !memcmp(b, "\x93NUMPY", 6)) return DD_KIND_NPY;
    if (n >= 4 && !b[0] && !b[1] && b[2] == 8) return DD_KIND_IDX;
    return DD_KIND_UNKNOWN;
}
