/* test_out_file.c - datasets/out_file.h: the room of an output found before it is written,
 * NAME.tmp renamed only when complete. A real full disk is tests/t_disk_full_outputs.sh's
 * (a tmpfs in a mount namespace); here a request larger than any disk stands for one. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "out_file.h"

static char dir[64], path[128];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/presight-out-file-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/out.h5", dir);
}

static void remove_dir(void) {
    char p[160];
    snprintf(p, sizeof p, "%s.tmp", path);
    unlink(p), unlink(path), rmdir(dir);
}

TestSuite(out_file, .init = make_dir, .fini = remove_dir);

static void write_tmp(const out_file *o, const char *text) {
    FILE *f = fopen(o->tmp, "w");
    cr_assert_not_null(f, "%s", o->tmp);
    fputs(text, f);
    fclose(f);
}

static double blocks_bytes(const char *file) {
    struct stat st;
    cr_assert_eq(stat(file, &st), 0, "%s", file);
    return (double)st.st_blocks * 512;
}

/* Whether this file system can reserve at all (tmpfs and ext4 can; some cannot, and then
 * only the free space is checked). */
static int can_reserve(const char *file) {
    int fd = open(file, O_WRONLY);
    int ok = fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

Test(out_file, more_than_the_disk_has_is_refused_by_name_before_anything_is_written) {
    out_file o;
    ps_error err = {{0}};
    cr_assert_eq(out_file_begin(&o, path, 1e18, &err), -1);
    cr_assert(strstr(err.msg, o.tmp) && strstr(err.msg, "No space left on device"), "%s", err.msg);
    cr_assert_neq(access(o.tmp, F_OK), 0, "nothing may be created");
    cr_assert_eq(out_file_begin(&o, path, 1000, &err), 0, "%s", err.msg);
    write_tmp(&o, "abc");
    cr_assert_eq(out_file_reserve(&o, 4096, &err), 0, "%s", err.msg);
    cr_assert_eq(out_file_reserve(&o, 1e18, &err), -1, "a file that grows past the disk");
    cr_assert(strstr(err.msg, o.tmp) && strstr(err.msg, "MB more") && strstr(err.msg, "No space left on device"), "%s",
              err.msg);
    cr_assert_eq(o.reserved, 4096, "a failed reservation changed the record of the last one");
}

Test(out_file, reserved_blocks_are_the_files_and_given_back_at_commit) {
    out_file o;
    ps_error err = {{0}};
    cr_assert_eq(out_file_begin(&o, path, 1 << 20, &err), 0, "%s", err.msg);
    write_tmp(&o, "abc");
    int reserves = can_reserve(o.tmp);
    cr_assert_eq(out_file_reserve(&o, 1 << 20, &err), 0, "%s", err.msg);
    cr_assert_eq(out_file_reserve(&o, 4096, &err), 0, "a smaller figure does nothing");
    cr_assert_eq(o.reserved, 1 << 20);
    if (reserves) cr_assert_geq(blocks_bytes(o.tmp), 1 << 20, "the blocks are not the file's");
    cr_assert_eq(out_file_commit(&o, &err), 0, "%s", err.msg);
    cr_assert_neq(access(o.tmp, F_OK), 0, "NAME.tmp is left");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 3, "the committed file is not what was written");
    cr_assert_lt(blocks_bytes(path), 256 * 1024, "the reserved blocks were not given back");
}

Test(out_file, a_discarded_file_leaves_nothing_and_an_earlier_file_stays) {
    FILE *f = fopen(path, "w");
    fputs("earlier", f);
    fclose(f);
    out_file o;
    ps_error err = {{0}};
    cr_assert_eq(out_file_begin(&o, path, 0, &err), 0);
    write_tmp(&o, "half");
    out_file_discard(&o);
    cr_assert_neq(access(o.tmp, F_OK), 0);
    char back[16] = "";
    f = fopen(path, "r");
    cr_assert_not_null(fgets(back, sizeof back, f));
    fclose(f);
    cr_assert_str_eq(back, "earlier");
}

Test(out_file, a_path_too_long_is_refused) {
    char *long_path = malloc(OUT_FILE_PATH_MAX + 10);
    memset(long_path, 'a', OUT_FILE_PATH_MAX + 9);
    long_path[OUT_FILE_PATH_MAX + 9] = '\0';
    out_file o;
    ps_error err = {{0}};
    cr_assert_eq(out_file_begin(&o, long_path, 0, &err), -1);
    cr_assert(strstr(err.msg, "path too long"), "%s", err.msg);
    free(long_path);
}
