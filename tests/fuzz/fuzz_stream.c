/* fuzz_stream.c - libFuzzer harness for the stream reader: the bytes go through container
 * sniffing, the zstd layer, the pipe parser or libarchive's tar reader, record by record to the
 * end. Any input must end in a clean end or an error message, never a crash or a leak. */
#include "formats/stream.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = size ? fmemopen((void *)data, size, "rb") : fopen("/dev/null", "rb");
    if (!f) return 0;
    TsReader *r = ts_reader_open_file(f, "fuzz");
    if (r) {
        TsRecord rec;
        ts_record_init(&rec);
        while (ts_reader_next(r, &rec) == 1) ts_record_check(&rec);
        ts_record_free(&rec);
        ts_reader_close(r);
    }
    fclose(f);
    return 0;
}
