/* src/safetensors/st_internal.h: what the safetensors reader (read.c) and
   writer (write.c) share, from common.c. Not part of the library's API. */
#ifndef CAE_ST_INTERNAL_H
#define CAE_ST_INTERNAL_H

#include "safetensors/safetensors.h"

#include <stddef.h>
#include <stdint.h>

/* A header this large is corruption, not a checkpoint: refuse before parsing. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* Longest name or string echoed into an error line, in bytes. */
#define ST_SHOWN_MAX 200
/* Error lines about the writer have no file yet; they name it like this. */
#define ST_WRITER "safetensors writer"

/* 1 if t is one of the cae_dtype values. */
int st_dtype_valid(cae_dtype t);
/* The dtype named s ("F32", ...); -1 for an unknown name. */
int st_dtype_parse(const char *s, cae_dtype *out);

/* Copies s for an error line: control bytes become '?' so the line stays one
   line, and long strings are cut with "...". */
void st_shown(char *dst, size_t cap, const char *s);
/* Prints "cae-cl: FILE: tensor 'NAME': MESSAGE" (or without the tensor) as
   one line, or keeps the first such message in the capture buffer. */
void st_error(const char *file, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* While buf is not NULL, this thread's first error goes to buf (size bytes)
   instead of stderr (cae_st_read_header_quiet); NULL ends the capture. */
void st_capture_errors(char *buf, size_t size);
/* "[2, 3]" for error lines; always terminated, cut if it does not fit. */
const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* *out = a * b; -1 if it overflows size_t. */
int st_mul_size(size_t a, size_t b, size_t *out);
/* Fills numel and nbytes of a tensor whose dtype and shape are set; -1
   (reported against file) if they do not fit in memory. */
int st_tensor_sizes(const char *file, cae_st_tensor *t);

#endif
