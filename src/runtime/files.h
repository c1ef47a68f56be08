/* files.h: opening the files the library reads (data, checkpoints, weights,
 * the tuning file, kernel cache entries) so that none of them can hang or
 * fool a run.
 *
 * A FIFO, socket or device named like a data file would block open() or
 * read() for ever; every read goes through cae_open_regular, which refuses
 * anything that is not a regular file before reading a byte.
 */
#ifndef CAE_FILES_H
#define CAE_FILES_H

#include <stdio.h>
#include <sys/stat.h>

/* Open path read-only without blocking and refuse anything but a regular
 * file. Returns the descriptor (in blocking mode again) with *st filled, or
 * -1 with the reason in why ("cannot open: ...", "not a regular file") and
 * errno kept (0 for a file that is not regular). */
int cae_open_regular(const char *path, struct stat *st, char *why, size_t why_size);

/* The same as a stdio stream, read in binary mode; NULL on failure. */
FILE *cae_fopen_regular(const char *path, struct stat *st, char *why, size_t why_size);

/* Writing a file whole or not at all. cae_replace_open opens PATH.tmp.<pid>
 * (its name written into tmp) for writing in mode ("w" or "wb");
 * cae_replace_commit flushes, syncs and closes it and renames it over path;
 * cae_replace_abort closes and removes it. On failure open returns NULL and
 * commit -1, the temporary file removed and errno saying why. */
FILE *cae_replace_open(const char *path, const char *mode, char *tmp, size_t tmp_size);
int cae_replace_commit(FILE *f, const char *tmp, const char *path);
void cae_replace_abort(FILE *f, const char *tmp);

#endif
