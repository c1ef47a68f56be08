/* tests/fuzz/fuzz_image.c: cae_decode_memory (JPEG through TurboJPEG, PNG
 * through libpng, anything else refused). A decoded image must have sane
 * dimensions and every pixel byte readable. */
#include "fuzz.h"
#include "data/image.h"

#include <stdlib.h>

/* every byte is read into here, so the sanitizers see each access */
static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cae_decoder *dec;
    cae_image img = {0};
    int rc;

    if (dec == NULL && (dec = cae_decoder_new()) == NULL)
        abort();
    rc = cae_decode_memory(dec, "fuzz-input", data, size, &img);
    if (rc == 0) {
        size_t n = (size_t)img.width * (size_t)img.height * 3;
        if (img.width <= 0 || img.height <= 0 ||
            (size_t)img.width * (size_t)img.height > CAE_IMAGE_MAX_PIXELS || n > img.cap)
            abort();
        for (size_t i = 0; i < n; i++)
            sink += img.rgb[i];
    } else if (rc != 1 && rc != -1) {
        abort();
    }
    cae_image_free(&img);
    return 0;
}
