/* tests/fuzz/fuzz_idx.c: the Fashion-MNIST reader (gzip or plain IDX, read
 * with zlib) through cae_dataset_open(NULL) with $CAE_FASHION_MNIST_DIR set
 * to a scratch folder. Input: two bytes (big-endian) giving the length of
 * the images file, the images file, then the labels file.
 *
 * The reader allocates what a header announces before reading the data (up
 * to 16 GiB, by design: the real file is 47 MB), so inputs whose image
 * header announces more than 64 MiB are skipped here, read with the same
 * zlib call, to keep the fuzzer inside its memory limit. */
#include "fuzz.h"
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether the images file's header announces more than the cap. */
static int too_big(const char *path)
{
    unsigned char h[16];
    gzFile f = gzopen(path, "rb");
    int r;

    if (f == NULL)
        abort();
    r = gzread(f, h, 16);
    gzclose(f);
    return r == 16 && (uint64_t)be32(h + 4) * be32(h + 8) * be32(h + 12) > ((uint64_t)64 << 20);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char ipath[4200], lpath[4200];
    static cae_decoder *dec;
    size_t n_img;
    cae_dataset *ds;
    cae_image img = {0};

    if (ipath[0] == '\0') {
        const char *dir = cae_fuzz_tmpdir();
        snprintf(ipath, sizeof ipath, "%s/train-images-idx3-ubyte.gz", dir);
        snprintf(lpath, sizeof lpath, "%s/train-labels-idx1-ubyte.gz", dir);
        if (setenv("CAE_FASHION_MNIST_DIR", dir, 1) != 0 || (dec = cae_decoder_new()) == NULL)
            abort();
    }
    if (size < 2)
        return 0;
    n_img = (size_t)data[0] << 8 | data[1];
    if (n_img > size - 2)
        n_img = size - 2;
    cae_fuzz_write(ipath, data + 2, n_img);
    cae_fuzz_write(lpath, data + 2 + n_img, size - 2 - n_img);
    if (too_big(ipath))
        return 0;
    if (cae_dataset_open(&ds, NULL) == 0) {
        size_t n = cae_dataset_len(ds), k = cae_dataset_num_classes(ds);
        size_t idx[3] = {0, n / 2, n - 1};
        if (n == 0 || k == 0 || k > 256)
            abort();
        for (int j = 0; j < 3; j++) {
            int label = cae_dataset_label(ds, idx[j]);
            if (label < 0 || (size_t)label >= k || cae_dataset_get(ds, idx[j], dec, &img) != 0 ||
                img.width <= 0 || img.height <= 0)
                abort();
        }
        cae_dataset_free(ds);
    }
    cae_image_free(&img);
    return 0;
}
