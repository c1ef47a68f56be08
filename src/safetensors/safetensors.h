/* src/safetensors/safetensors.h: read and write safetensors files
   (https://github.com/huggingface/safetensors format: u64 little-endian
   header length N, N bytes of JSON header, then the data area).

   Checkpoints, weights and test fixtures all travel in this format, with the
   official PyTorch state_dict keys as tensor names (src/model/DESIGN.md §2).

   Every function that can fail returns 0 / -1 (or NULL) and prints one line
   to stderr that names the file and, where there is one, the tensor. */
#ifndef CAE_SAFETENSORS_H
#define CAE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CAE_DT_F32,
    CAE_DT_F64,
    CAE_DT_F16,
    CAE_DT_BF16,
    CAE_DT_I64,
    CAE_DT_I32,
    CAE_DT_I16,
    CAE_DT_I8,
    CAE_DT_U8,
    CAE_DT_BOOL
} cae_dtype;

#define CAE_ST_MAX_DIMS 8

typedef struct {
    char *name;
    cae_dtype dtype;
    int ndim;                         /* 0 for a scalar */
    int64_t shape[CAE_ST_MAX_DIMS];
    size_t numel;                     /* product of shape (1 for a scalar) */
    size_t nbytes;
    /* Points into the file's memory; valid until cae_st_free. That memory
       comes from malloc and the data area starts 8 bytes into a multiple of
       8 in files we write and in the official library's, so data is aligned
       to its element size when the tensors before it keep it so (all-F32
       checkpoints do); memcpy needs no alignment at all. */
    const void *data;
} cae_st_tensor;

typedef struct {
    char *path;
    unsigned char *bytes;  size_t size;          /* the file in memory (its header alone
                                                    after cae_st_read_header); size: the file's */
    cae_st_tensor *tensors; size_t n_tensors;    /* in header order */
    char **meta_keys; char **meta_values; size_t n_meta;   /* __metadata__ */
} cae_st_file;

size_t cae_dtype_size(cae_dtype t);                  /* 0 for an invalid value */
const char *cae_dtype_name(cae_dtype t);             /* "F32", ...; "?" if invalid */

/* Reads and validates the whole file; on error f is left empty (all zero),
   so cae_st_free on it is always safe. */
int  cae_st_read(cae_st_file *f, const char *path);
/* The same checks from the header alone (names, dtypes, shapes, offsets
   against the file's size, metadata) without reading the data: every
   tensor's data is NULL. For choosing and validating files cheaply. */
int  cae_st_read_header(cae_st_file *f, const char *path);
/* The same, printing nothing: on failure why holds the reason. */
int  cae_st_read_header_quiet(cae_st_file *f, const char *path, char *why, size_t why_size);
void cae_st_free(cae_st_file *f);
const cae_st_tensor *cae_st_find(const cae_st_file *f, const char *name);   /* NULL if absent */
const char *cae_st_meta(const cae_st_file *f, const char *key);             /* NULL if absent */
/* Fetch a tensor that must exist with this dtype and shape (ndim dims);
   prints a clear error naming file and tensor and returns NULL otherwise. */
const cae_st_tensor *cae_st_expect(const cae_st_file *f, const char *name, cae_dtype dtype,
                                   int ndim, const int64_t *shape);

typedef struct cae_st_writer cae_st_writer;   /* opaque */

cae_st_writer *cae_st_writer_new(void);       /* NULL (and a message) when out of memory */
/* Copies name, shape and data (data may be NULL only when the tensor has no
   elements). Refuses duplicate names, "__metadata__", bad shapes. A refused
   add leaves the writer as it was. */
int  cae_st_writer_add(cae_st_writer *w, const char *name, cae_dtype dtype, int ndim,
                       const int64_t *shape, const void *data);
/* Copies key and value; refuses a key given twice. */
int  cae_st_writer_meta(cae_st_writer *w, const char *key, const char *value);
/* Writes atomically: PATH.tmp.<pid> in the same folder, fwrite, fflush,
   fsync, rename over PATH; on any failure removes the temporary file and
   leaves an existing PATH untouched. Tensors are stored in the order added,
   contiguously, after a header padded with spaces so that the data area
   starts 8-byte aligned. After the rename the folder is fsynced too; should
   that alone fail, PATH already holds the new file and -1 is returned. */
int  cae_st_writer_write(cae_st_writer *w, const char *path);
void cae_st_writer_free(cae_st_writer *w);   /* NULL is fine */

#endif
