/* image.c: cae_image buffers and the per-thread decoder: JPEG through
 * TurboJPEG, PNG through libpng's classic API.
 *
 * Every conversion matches Pillow's Image.open(f).convert("RGB"), which
 * torchvision's ImageFolder loader applies: gray is replicated, alpha is
 * dropped (not composited), palettes are expanded with their transparency
 * ignored, 16-bit samples keep their high byte, and CMYK/YCCK JPEG is read
 * with Adobe's inverted polarity (as Pillow always assumes) and mapped to RGB
 * with Pillow's integer formula. One deviation: Pillow clips 16-bit gray to
 * 0..255, we keep its high byte like every other 16-bit sample.
 *
 * A file is read whole into the decoder's buffer first; the size in its
 * header is checked against CAE_IMAGE_MAX_PIXELS before any pixel buffer is
 * allocated. */
#include "data/image.h"
#include "runtime/errors.h"
#include "runtime/files.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

/* Compressed files larger than this are refused without reading them. */
#define CAE_IMAGE_MAX_FILE_BYTES ((size_t)1 << 31)

struct cae_decoder {
    tjhandle tj;
    unsigned char *file; /* the whole file being decoded */
    size_t file_cap;
    unsigned char *cmyk; /* [h][w][4] before conversion to RGB */
    size_t cmyk_cap;
    png_bytep *rows; /* row pointers into the output image */
    size_t rows_cap;
    char png_msg[200]; /* libpng's error text, for the report */
};

/* ---- images ---------------------------------------------------------------- */

void cae_image_free(cae_image *img)
{
    if (img == NULL)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->cap = 0;
    img->width = img->height = 0;
}

int cae_image_reserve(cae_image *img, int w, int h)
{
    size_t need;

    if (w <= 0 || h <= 0 || (size_t)w > SIZE_MAX / 3 / (size_t)h) {
        cae_errorf("cae_image_reserve: invalid image size %dx%d", w, h);
        return -1;
    }
    need = (size_t)w * (size_t)h * 3;
    if (need > img->cap) {
        unsigned char *p = malloc(need);
        if (p == NULL) {
            cae_errorf("cae_image_reserve: out of memory for a %dx%d image (%zu bytes)", w, h,
                       need);
            return -1;
        }
        free(img->rgb);
        img->rgb = p;
        img->cap = need;
    }
    img->width = w;
    img->height = h;
    return 0;
}

/* Grow a scratch buffer to at least need bytes (contents not kept). */
static int grow(void **buf, size_t *cap, size_t need, const char *what)
{
    void *p;

    if (need <= *cap)
        return 0;
    p = malloc(need);
    if (p == NULL) {
        cae_errorf("%s: out of memory (%zu bytes)", what, need);
        return -1;
    }
    free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}

/* ---- the decoder ------------------------------------------------------------ */

/* A fresh TurboJPEG handle for d; -1 (after a message) when none can be made. */
static int tj_open(cae_decoder *d)
{
    d->tj = tjInitDecompress();
    if (d->tj == NULL) {
        cae_errorf("tjInitDecompress() failed: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    return 0;
}

static void tj_close(cae_decoder *d)
{
    if (d->tj != NULL && tjDestroy(d->tj) != 0)
        cae_errorf("tjDestroy() failed: %s", tjGetErrorStr2(d->tj));
    d->tj = NULL;
}

cae_decoder *cae_decoder_new(void)
{
    cae_decoder *d = calloc(1, sizeof *d);

    if (d == NULL) {
        cae_errorf("cae_decoder_new: out of memory");
        return NULL;
    }
    if (tj_open(d) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void cae_decoder_free(cae_decoder *d)
{
    if (d == NULL)
        return;
    tj_close(d);
    free(d->file);
    free(d->cmyk);
    free(d->rows);
    free(d);
}

/* 1 (after a message) when a w x h image is empty or over the limit. */
static int check_size(const char *name, const char *kind, long long w, long long h)
{
    if (w <= 0 || h <= 0) {
        cae_errorf("%s: %s image with invalid size %lldx%lld", name, kind, w, h);
        return 1;
    }
    if ((unsigned long long)w * (unsigned long long)h > CAE_IMAGE_MAX_PIXELS || w > INT32_MAX ||
        h > INT32_MAX) {
        cae_errorf("%s: %s image of %lldx%lld pixels is over the limit of %u pixels", name, kind, w,
                   h, CAE_IMAGE_MAX_PIXELS);
        return 1;
    }
    return 0;
}

/* ---- JPEG ------------------------------------------------------------------- */

/* Pillow's "CMYK;I" unpacking (inverted, Adobe) followed by its cmyk2rgb. */
static void cmyk_to_rgb(const unsigned char *in, unsigned char *out, size_t pixels)
{
    for (size_t i = 0; i < pixels; i++, in += 4, out += 3) {
        int nk = in[3]; /* 255 - (255 - stored K) */
        for (int c = 0; c < 3; c++) {
            int ink = 255 - in[c];
            int t = ink * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[c] = (unsigned char)(v < 0 ? 0 : v);
        }
    }
}

/* Warnings TurboJPEG reports after a complete decode are accepted (Pillow
 * accepts them too: extraneous bytes, a bad restart marker) except running
 * out of data, which Pillow refuses as "image file is truncated". */
static int jpeg_warning_is_fatal(const char *msg)
{
    return strstr(msg, "Premature end") != NULL;
}

static int decode_jpeg_with(cae_decoder *d, const char *name, const unsigned char *data,
                            size_t size, cae_image *out, int *tj_failed)
{
    int w = 0, h = 0, subsamp = 0, cs = 0, cmyk, rc;
    int flags = TJFLAG_ACCURATEDCT;
    unsigned char *dst;

#ifdef TJFLAG_LIMITSCANS
    flags |= TJFLAG_LIMITSCANS; /* refuse progressive files with absurd scan counts */
#endif
    rc = tjDecompressHeader3(d->tj, data, (unsigned long)size, &w, &h, &subsamp, &cs);
    *tj_failed = rc != 0;
    if (rc != 0 && !(tjGetErrorCode(d->tj) == TJERR_WARNING && w > 0 && h > 0)) {
        cae_errorf("%s: corrupt JPEG header (%s)", name, tjGetErrorStr2(d->tj));
        return 1;
    }
    if (check_size(name, "JPEG", w, h) != 0)
        return 1;
    if (cae_image_reserve(out, w, h) != 0)
        return -1;
    cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    dst = out->rgb;
    if (cmyk) {
        if (grow((void **)&d->cmyk, &d->cmyk_cap, (size_t)w * (size_t)h * 4, name) != 0)
            return -1;
        dst = d->cmyk;
    }
    rc = tjDecompress2(d->tj, data, (unsigned long)size, dst, w, w * (cmyk ? 4 : 3), h,
                       cmyk ? TJPF_CMYK : TJPF_RGB, flags);
    *tj_failed |= rc != 0;
    if (rc != 0) {
        const char *msg = tjGetErrorStr2(d->tj);
        if (tjGetErrorCode(d->tj) != TJERR_WARNING || jpeg_warning_is_fatal(msg)) {
            cae_errorf("%s: corrupt or truncated JPEG (%s)", name, msg);
            return 1;
        }
    }
    if (cmyk)
        cmyk_to_rgb(d->cmyk, out->rgb, (size_t)w * (size_t)h);
    return 0;
}

/* TurboJPEG keeps a failed call's state (and its error text) in the handle,
 * and some refusals (a lossless or 12-bit frame) leave it unable to decode
 * the next file: after any error or warning the handle is replaced, so that
 * one file's trouble never outlives it. */
static int decode_jpeg(cae_decoder *d, const char *name, const unsigned char *data, size_t size,
                       cae_image *out)
{
    int tj_failed = 0, rc = decode_jpeg_with(d, name, data, size, out, &tj_failed);

    if (tj_failed) {
        tj_close(d);
        if (tj_open(d) != 0)
            return -1;
    }
    return rc;
}

/* ---- PNG -------------------------------------------------------------------- */

typedef struct {
    cae_decoder *d;
    const unsigned char *data;
    size_t size, pos;
    png_structp png;
    png_infop info;
} png_job;

static void png_read_cb(png_structp png, png_bytep out, size_t n)
{
    png_job *job = png_get_io_ptr(png);

    if (n > job->size - job->pos)
        png_error(png, "unexpected end of file");
    memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);

    snprintf(job->d->png_msg, sizeof job->d->png_msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (a bad CRC in an ancillary chunk, an unknown chunk) are not
 * worth a line per image: the image still decodes. */
static void png_warning_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Transforms that turn any colour type and depth into 8-bit RGB. */
static void png_set_rgb8(png_structp png, png_infop info)
{
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);

    if (depth == 16)
        png_set_strip_16(png); /* the high byte, as Pillow's ";16B" modes */
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    /* alpha, real or from tRNS, is dropped as Pillow's convert("RGB") does */
    if ((color & PNG_COLOR_MASK_ALPHA) != 0 || png_get_valid(png, info, PNG_INFO_tRNS) != 0)
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* The part that libpng may leave through png_error (longjmp): returns with
 * rc 0/1/-1 only through job, so no local is live across the jump. */
static int png_decode_body(png_job *job, const char *name, cae_image *out)
{
    png_structp png = job->png;
    png_infop info = job->info;
    png_uint_32 w, h;

    png_set_read_fn(png, job, png_read_cb);
    png_read_info(png, info);
    w = png_get_image_width(png, info);
    h = png_get_image_height(png, info);
    if (check_size(name, "PNG", w, h) != 0)
        return 1;
    png_set_rgb8(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)w * 3) {
        cae_errorf("%s: PNG colour type %d, depth %d not converted to 8-bit RGB", name,
                   png_get_color_type(png, info), png_get_bit_depth(png, info));
        return 1;
    }
    if (cae_image_reserve(out, (int)w, (int)h) != 0)
        return -1;
    if (grow((void **)&job->d->rows, &job->d->rows_cap, (size_t)h * sizeof(png_bytep), name) != 0)
        return -1;
    for (png_uint_32 y = 0; y < h; y++)
        job->d->rows[y] = out->rgb + (size_t)y * w * 3;
    png_read_image(png, job->d->rows);
    return 0;
}

static int decode_png(cae_decoder *d, const char *name, const unsigned char *data, size_t size,
                      cae_image *out)
{
    png_job job = {d, data, size, 0, NULL, NULL};
    int rc;

    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_error_cb, png_warning_cb);
    if (job.png == NULL) {
        cae_errorf("%s: png_create_read_struct failed (out of memory)", name);
        return -1;
    }
    job.info = png_create_info_struct(job.png);
    if (job.info == NULL) {
        cae_errorf("%s: png_create_info_struct failed (out of memory)", name);
        png_destroy_read_struct(&job.png, NULL, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(job.png)) != 0) {
        cae_errorf("%s: corrupt or truncated PNG (%s)", name, d->png_msg);
        png_destroy_read_struct(&job.png, &job.info, NULL);
        return 1;
    }
    rc = png_decode_body(&job, name, out);
    png_destroy_read_struct(&job.png, &job.info, NULL);
    return rc;
}

/* ---- files ------------------------------------------------------------------ */

int cae_decode_memory(cae_decoder *d, const char *name, const unsigned char *data, size_t size,
                      cae_image *out)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

    if (size == 0) {
        cae_errorf("%s: empty file", name);
        return 1;
    }
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(d, name, data, size, out);
    if (size >= 8 && memcmp(data, png_sig, 8) == 0)
        return decode_png(d, name, data, size, out);
    cae_errorf("%s: not a JPEG or PNG file", name);
    return 1;
}

/* An error that says the system, not the file, is in trouble. */
static int sys_errno_is_fatal(int e)
{
    return e == ENOMEM || e == EMFILE || e == ENFILE;
}

static int read_whole(cae_decoder *d, const char *path, size_t *size)
{
    struct stat st;
    size_t n, got = 0;
    char why[256];
    int fd, e;

    fd = cae_open_regular(path, &st, why, sizeof why);
    if (fd < 0) {
        e = errno;
        cae_errorf("%s: %s", path, why);
        return sys_errno_is_fatal(e) ? -1 : 1;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > CAE_IMAGE_MAX_FILE_BYTES) {
        cae_errorf("%s: file larger than 2 GiB", path);
        close(fd);
        return 1;
    }
    n = (size_t)st.st_size;
    if (grow((void **)&d->file, &d->file_cap, n > 0 ? n : 1, path) != 0) {
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, d->file + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            cae_errorf("%s: read: %s", path, strerror(e));
            close(fd);
            return sys_errno_is_fatal(e) ? -1 : 1;
        }
        if (r == 0)
            break; /* the file shrank under us: decode what is there */
        got += (size_t)r;
    }
    if (close(fd) != 0) {
        cae_errorf("%s: close: %s", path, strerror(errno));
        return 1;
    }
    *size = got;
    return 0;
}

int cae_decode_file(cae_decoder *d, const char *path, cae_image *out)
{
    size_t size = 0;
    int rc = read_whole(d, path, &size);

    if (rc != 0)
        return rc;
    return cae_decode_memory(d, path, d->file, size, out);
}
