/* image.h: decoded images and the per-thread decoder (TurboJPEG for JPEG,
 * libpng for PNG). Images are 8-bit RGB, row-major, interleaved (HWC). */
#ifndef CAE_IMAGE_H
#define CAE_IMAGE_H

#include <stddef.h>

typedef struct {
    int width, height;
    unsigned char *rgb; /* [height][width][3] */
    size_t cap;         /* bytes allocated in rgb (reused between images) */
} cae_image;

void cae_image_free(cae_image *img);
/* Make room for a w x h image (reusing the buffer when it is big enough). */
int cae_image_reserve(cae_image *img, int w, int h);

typedef struct cae_decoder cae_decoder; /* one per thread: not shared */

cae_decoder *cae_decoder_new(void);
void cae_decoder_free(cae_decoder *d);

/* Decode a JPEG or PNG file, recognised by its content, into RGB (gray,
 * gray+alpha, RGBA, palette and CMYK/YCCK are converted; 16-bit PNG is
 * reduced to 8). Returns 0; 1 when the file is corrupt, truncated,
 * unsupported or larger than CAE_IMAGE_MAX_PIXELS (after printing one line
 * naming the file and the reason); -1 on a system error (out of memory). */
#define CAE_IMAGE_MAX_PIXELS (1u << 28)
int cae_decode_file(cae_decoder *d, const char *path, cae_image *out);
/* The same from memory (name is used in messages only). */
int cae_decode_memory(cae_decoder *d, const char *name, const unsigned char *data, size_t size,
                      cae_image *out);

#endif
