/* out_file.h - an output file that is written whole or not at all: it is written as
 * NAME.tmp, its room on the disk is found before the bytes go out, and it is renamed to
 * NAME only when complete, so that a full disk or a quota leaves the previous NAME as it
 * was and the error names the file and the cause.
 *
 * Why before and not at the failing write: HDF5 1.10 keeps a file whose H5Fclose failed
 * open in a broken state and closes it again at exit, where it crashes (t_disk_full_outputs
 * found it under `presight encode`). So a writer asks for its room first: the free space
 * (statvfs), then the blocks themselves (fallocate, which also meets quotas); HDF5's own
 * writes then land in blocks that are already the file's. Writers whose size grows
 * (shards) reserve again before each batch of data, always with room for the metadata
 * HDF5 writes when the file is closed.
 *
 *     out_file o;
 *     if (out_file_begin(&o, path, bytes, err)) return -1;     no room: nothing is created
 *     hid_t f = H5Fcreate(o.tmp, ...);
 *     if (out_file_reserve(&o, bytes, err)) ...                 close f, out_file_discard
 *     ... write, H5Fclose ...
 *     return out_file_commit(&o, err);                          NAME.tmp -> NAME
 */
#ifndef PRESIGHT_OUT_FILE_H
#define PRESIGHT_OUT_FILE_H

#include "error.h"

#define OUT_FILE_PATH_MAX 4096

typedef struct out_file {
    char path[OUT_FILE_PATH_MAX], tmp[OUT_FILE_PATH_MAX + 8];
    double reserved; /* bytes reserved from the start of NAME.tmp */
} out_file;

/* Names NAME and NAME.tmp and checks that the disk has `bytes` free (0: no check). */
int out_file_begin(out_file *o, const char *path, double bytes, ps_error *err);

/* Makes the first `bytes` of NAME.tmp (it exists by now) the file's own blocks; a smaller
 * figure than already reserved does nothing. The disk's free space is checked first, for
 * file systems that cannot reserve (those pass). On failure nothing more is reserved. */
int out_file_reserve(out_file *o, double bytes, ps_error *err);

/* Gives back the blocks reserved past the end of NAME.tmp, syncs it, renames it to NAME
 * and syncs the folder; NAME.tmp is removed when that fails. */
int out_file_commit(out_file *o, ps_error *err);

/* Removes NAME.tmp (a failed or abandoned write). */
void out_file_discard(out_file *o);

/* Why the last write failed when the system said so ("No space left on device", a quota,
 * an I/O error), "" otherwise; with OUT_FILE_CAUSE_SEP for "...: cause" messages. */
const char *out_file_cause(void);
#define OUT_FILE_CAUSE_SEP (out_file_cause()[0] ? ": " : "")

#endif
