/* out_file.c - outputs written as NAME.tmp with their room found first. See out_file.h. */
#include "out_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

const char *out_file_cause(void) {
    int e = errno;
    if (e == ENOSPC || e == EDQUOT || e == EFBIG || e == EIO || e == EROFS) return strerror(e);
    return "";
}

/* The folder that holds `file`: "a/x" -> "a", "/x" -> "/", "x" -> ".". */
static void parent_dir(const char *file, char *dir, size_t n) {
    snprintf(dir, n, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, n, ".");
    else slash[slash == dir] = '\0';
}

/* The free bytes of the disk that holds `file`, or -1 when it cannot be told. */
static double free_bytes(const char *file) {
    char dir[OUT_FILE_PATH_MAX + 8];
    parent_dir(file, dir, sizeof dir);
    struct statvfs fs;
    return statvfs(dir, &fs) == 0 ? (double)fs.f_bavail * fs.f_frsize : -1;
}

/* more: the file has its first bytes already and needs these on top. */
static int check_free(const out_file *o, double bytes, int more, ps_error *err) {
    double avail = free_bytes(o->tmp);
    if (avail >= 0 && avail < bytes)
        return ps_fail(err, "%s: needs %s%.2f MB%s, the disk has %.2f MB free: %s", o->tmp, more ? "" : "up to ",
                       bytes / 1e6, more ? " more" : "", avail / 1e6, strerror(ENOSPC));
    return 0;
}

int out_file_begin(out_file *o, const char *path, double bytes, ps_error *err) {
    memset(o, 0, sizeof *o);
    if (strlen(path) >= sizeof o->path) return ps_fail(err, "%.200s...: path too long", path);
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    return bytes > 0 ? check_free(o, bytes, 0, err) : 0;
}

/* Gives back the blocks past the end of the file (truncating to the same size would keep
 * them on some file systems, tmpfs among them). */
static void release(const char *file) {
    struct stat st;
    if (stat(file, &st) == 0 && truncate(file, st.st_size + 1) == 0) (void)truncate(file, st.st_size);
}

int out_file_reserve(out_file *o, double bytes, ps_error *err) {
    if (bytes <= o->reserved) return 0;
    if (check_free(o, bytes - o->reserved, o->reserved > 0, err)) return -1;
    int fd = open(o->tmp, O_WRONLY);
    int why = fd < 0 ? errno : fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) ? errno : 0;
    if (fd >= 0) close(fd);
    if (why == EOPNOTSUPP || why == ENOSYS) return 0; /* the free space above is all we can know */
    /* Some file systems keep part of a failed reservation: a first one is given back at
     * once, so that HDF5 has room to close the file; after that, what is left goes with
     * the file (out_file_commit gives it back, out_file_discard removes the file), and
     * the blocks reserved before stay for the metadata a close writes. */
    if (why) {
        if (o->reserved <= 0) release(o->tmp);
        return ps_fail(err, "%s: cannot reserve %.2f MB: %s", o->tmp, bytes / 1e6, strerror(why));
    }
    o->reserved = bytes;
    return 0;
}

static void sync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int out_file_commit(out_file *o, ps_error *err) {
    release(o->tmp);
    sync_path(o->tmp); /* the data is on the disk before the name says the file is complete */
    if (rename(o->tmp, o->path) != 0) {
        int e = errno;
        unlink(o->tmp);
        return ps_fail(err, "%s: rename to %s failed: %s", o->tmp, o->path, strerror(e));
    }
    char dir[OUT_FILE_PATH_MAX];
    parent_dir(o->path, dir, sizeof dir);
    sync_path(dir); /* the new name survives a crash right after */
    return 0;
}

void out_file_discard(out_file *o) { unlink(o->tmp); }
