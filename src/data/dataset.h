/* dataset.h: the training images: an ImageFolder tree (root/<class>/<file>,
 * classes and files in sorted order, as torchvision's ImageFolder) or the
 * built-in Fashion-MNIST training set (Debian package dataset-fashion-mnist,
 * gzip IDX files read with zlib; 28x28 gray replicated to RGB). */
#ifndef CAE_DATASET_H
#define CAE_DATASET_H

#include "data/image.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cae_dataset cae_dataset;

#define CAE_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* data_path NULL or "": Fashion-MNIST training images from
 * $CAE_FASHION_MNIST_DIR, else CAE_FASHION_MNIST_DIR. A folder with no
 * images, or a missing/corrupt IDX file, is refused with one line naming the
 * path. */
int cae_dataset_open(cae_dataset **out, const char *data_path);
/* The same for one split (the evaluation programs): split "train" or
 * "val"; a folder opens data_path/split, Fashion-MNIST its 60k training
 * ("train") or 10k test (any other split) IDX files. split NULL is
 * cae_dataset_open. */
int cae_dataset_open_split(cae_dataset **out, const char *data_path, const char *split);
/* Both splits of an evaluation program: data_path/train and data_path/val
 * (Fashion-MNIST: train and test). The val folder's classes must be
 * train's, the same names in the same order (labels are class ranks): else
 * -1 after one line naming both folders and the first class that differs.
 * On error both are NULL. */
int cae_dataset_open_splits(cae_dataset **train, cae_dataset **val, const char *data_path);
void cae_dataset_free(cae_dataset *ds);
size_t cae_dataset_len(const cae_dataset *ds);
size_t cae_dataset_num_classes(const cae_dataset *ds);
/* "ImageFolder /data/train: 1281167 images, 1000 classes" */
const char *cae_dataset_describe(const cae_dataset *ds);
/* Sample i (thread-safe with one decoder per thread). Returns 0; 1 when
 * the image cannot be used (reported, to be skipped and counted); -1 fatal. */
int cae_dataset_get(const cae_dataset *ds, size_t i, cae_decoder *dec, cae_image *out);
/* The class label of sample i (for the evaluation programs). */
int cae_dataset_label(const cae_dataset *ds, size_t i);
/* The file of sample i of an ImageFolder (NULL for Fashion-MNIST or i out
 * of range): for messages and tests. */
const char *cae_dataset_path(const cae_dataset *ds, size_t i);
/* A digest of what the data set holds: its description, then every file
 * (an ImageFolder's) and label in order; ranks compare it before training. */
uint64_t cae_dataset_digest(const cae_dataset *ds);

#endif
