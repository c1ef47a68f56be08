/* fixture.h: reading the committed reference fixtures (safetensors files
 * written by PyTorch / Pillow scripts) in the Check suites.
 *
 * Paths are relative to the source tree, $CAE_TOP_SRCDIR ("." when unset or
 * empty), so the suites run from any build folder. Every lookup asserts
 * (ck_assert) what it promises and names the file, tensor or key when it
 * fails; the element readers copy with memcpy, so they are safe on data at
 * any offset in the file. Needs no OpenCL: the host-only suites link it too.
 */
#ifndef CAE_TESTS_FIXTURE_H
#define CAE_TESTS_FIXTURE_H

#include "safetensors/safetensors.h"

#include <stddef.h>
#include <stdint.h>

/* $CAE_TOP_SRCDIR, or "." */
const char *tu_srcdir(void);
/* out = tu_srcdir()/relpath; asserts it fits in cap */
void tu_src_path(char *out, size_t cap, const char *relpath);

/* Read the file at path / at tu_srcdir()/relpath; asserts it was read. */
void tu_fx_read_path(cae_st_file *f, const char *path);
void tu_fx_read(cae_st_file *f, const char *relpath);

/* The tensor named by the printf-style format: tu_fx_find asserts only
 * that it exists, tu_fx_get also its dtype, tu_fx_get_n also its element
 * count. */
const cae_st_tensor *tu_fx_find(const cae_st_file *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const cae_st_tensor *tu_fx_get(const cae_st_file *f, cae_dtype dt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const cae_st_tensor *tu_fx_get_n(const cae_st_file *f, cae_dtype dt, size_t n, const char *fmt,
                                 ...) __attribute__((format(printf, 4, 5)));
/* The data of an F32 tensor with n elements, used in place: asserts that it
 * is 4-byte aligned (see cae_st_tensor), so the caller may index it. */
const float *tu_fx_f32s(const cae_st_file *f, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The metadata value under key as an int (atoi); asserts the key exists. */
int tu_fx_meta_int(const cae_st_file *f, const char *key);

/* Element i of an I32 / F32 / F64 tensor; asserts i < numel and the dtype. */
int32_t tu_fx_i32(const cae_st_tensor *t, size_t i);
float tu_fx_f32(const cae_st_tensor *t, size_t i);
double tu_fx_f64(const cae_st_tensor *t, size_t i);

#endif
