/* blas.c - the BLAS, loaded at run time (see blas.h and README, "Which BLAS").
 *
 * presight links no BLAS. blas_init() dlopen()s one (RTLD_LOCAL, so two BLAS
 * can never interpose each other's symbols), resolves cblas_sgemm (or
 * cblas_dgemm in the double-precision test build) and checks it on odd-sized
 * GEMMs in every transpose combination against a plain loop in double before
 * anything uses it.
 *
 * Threads: the BLAS itself runs single-threaded, and blas_gemm splits each
 * large GEMM into one slab of C per OpenMP thread. The backend's own loops
 * are OpenMP too, so one pool of threads does all the work. With the BLAS's
 * own pool (OpenBLAS pthreads) next to OpenMP's, the two pools' spin-waiting
 * workers time-slice the same cores between every GEMM and every loop: on 2
 * cores that made the memory-bound ops 10-50x slower and a training step
 * twice as long. Calls made inside a parallel region (attention runs its
 * (sequence, head) tasks in parallel) run on the calling thread. */
#include "blas.h"

#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rng.h"

/* CBLAS enum values (cblas.h); the enums are int-sized in every ABI we load. */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

/* cblas_?gemm with 32-bit integers (LP64 OpenBLAS, BLIS built with 32-bit BLAS integers). */
typedef void (*gemm32_fn)(int order, int trans_a, int trans_b, int32_t m, int32_t n, int32_t k, real alpha,
                          const real *a, int32_t lda, const real *b, int32_t ldb, real beta, real *c, int32_t ldc);
/* The same with 64-bit integers (ILP64 builds; BLIS says which it was built with). */
typedef void (*gemm64_fn)(int order, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, real alpha,
                          const real *a, int64_t lda, const real *b, int64_t ldb, real beta, real *c, int64_t ldc);

#if REAL_IS_DOUBLE
#define GEMM_SYMBOL "cblas_dgemm"
#define CHECK_TOLERANCE 1e-10
#else
#define GEMM_SYMBOL "cblas_sgemm"
#define CHECK_TOLERANCE 1e-4
#endif

/* blas_gemm splits GEMMs of at least SPLIT_MIN_MACS multiply-adds into slabs of
 * SPLIT_GRAIN rows (or columns) or more. */
#define SPLIT_MIN_MACS (1 << 20)
#define SPLIT_GRAIN 64

static const char *const BLIS_OPENMP_PATH = "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4";

/* The library in use. g_ready is written last (release) and read first (acquire). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_ready;
static int g_tried;           /* blas_init ran (successfully or not) */
static ps_error g_fail;        /* its error, repeated to later callers */
static gemm32_fn g_gemm32;
static gemm64_fn g_gemm64;
static int g_threads = 1;
static char g_desc[320] = "no BLAS loaded";

/* A candidate being tried. */
typedef struct loaded_blas {
    void *handle;
    gemm32_fn gemm32;
    gemm64_fn gemm64;
    char desc[200];
} loaded_blas;

/* ------------------------------------------------------------- threads */

/* Leading positive integer of an environment variable (OMP_NUM_THREADS may be a list "4,2"). */
static int env_threads(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v <= 0 || v > 4096) return 0;
    return (int)v;
}

/* CPUs this process may run on: fewer than the machine's under mpirun, which
 * binds each rank to one core when there are at most 2 ranks (and to a socket
 * above that), or under taskset, cgroups and Slurm. */
static int allowed_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The default is the CPUs allowed, not the machine's: 2 ranks of 2 threads
 * each on 2 cores, each rank bound to one, ran 2 threads on each core. */
static int pick_threads(void) {
    int t = env_threads("PRESIGHT_THREADS");
    if (!t) t = env_threads("OMP_NUM_THREADS");
    if (!t) t = allowed_cpus();
    return t;
}

/* ------------------------------------------------------------ checking */

static void call_gemm(gemm32_fn g32, gemm64_fn g64, int ta, int tb, int m, int n, int k, real alpha, const real *a,
                      int lda, const real *b, int ldb, real beta, real *c, int ldc) {
    int t_a = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, t_b = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (g64)
        g64(CBLAS_ROW_MAJOR, t_a, t_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        g32(CBLAS_ROW_MAJOR, t_a, t_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* One GEMM of the given shape against a plain triple loop in double; also
 * checks that the padding between rows of C is left alone. */
static int check_one(const loaded_blas *L, int ta, int tb, int m, int n, int k, char *why, size_t cap) {
    int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    int lda = a_cols + 3, ldb = b_cols + 5, ldc = n + 7;
    const real alpha = (real)0.75, beta = (real)-0.375;
    size_t na = (size_t)a_rows * lda, nb = (size_t)b_rows * ldb, nc = (size_t)m * ldc;
    real *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    real *c0 = malloc(nc * sizeof *c0);
    double *ref = malloc((size_t)m * n * sizeof *ref);
    if (!a || !b || !c || !c0 || !ref) {
        free(a), free(b), free(c), free(c0), free(ref);
        snprintf(why, cap, "out of memory for the self-check");
        return -1;
    }
    uint64_t key = rng_key(12345, "blas self-check") + (uint64_t)(ta * 2 + tb) + (uint64_t)m * 1000;
    for (size_t i = 0; i < na; i++) a[i] = (real)(2 * rng_uniform(key, i) - 1);
    for (size_t i = 0; i < nb; i++) b[i] = (real)(2 * rng_uniform(key + 1, i) - 1);
    for (size_t i = 0; i < nc; i++) c0[i] = c[i] = (real)(2 * rng_uniform(key + 2, i) - 1);

    double max_ref = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++) {
                double x = ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l];
                double y = tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j];
                s += x * y;
            }
            double r = (double)alpha * s + (double)beta * c0[(size_t)i * ldc + j];
            ref[(size_t)i * n + j] = r;
            if (r > max_ref) max_ref = r;
            if (-r > max_ref) max_ref = -r;
        }

    call_gemm(L->gemm32, L->gemm64, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    double max_err = 0;
    int padding_ok = 1;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double e = (double)c[(size_t)i * ldc + j] - ref[(size_t)i * n + j];
            if (e < 0) e = -e;
            if (!(e <= max_err)) max_err = e; /* NaN sticks */
        }
        for (int j = n; j < ldc && i + 1 < m; j++)
            if (memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j], sizeof(real))) padding_ok = 0;
    }
    free(a), free(b), free(c), free(c0), free(ref);
    double rel = max_err / (max_ref > 0 ? max_ref : 1);
    if (!(rel < CHECK_TOLERANCE)) {
        snprintf(why, cap, "%s computes wrong results (m=%d n=%d k=%d, trans_a=%d trans_b=%d: relative error %.3g)",
                 GEMM_SYMBOL, m, n, k, ta, tb, rel);
        return -1;
    }
    if (!padding_ok) {
        snprintf(why, cap, "%s writes outside C (m=%d n=%d k=%d, trans_a=%d trans_b=%d, ldc=%d)", GEMM_SYMBOL, m, n, k,
                 ta, tb, ldc);
        return -1;
    }
    return 0;
}

static int self_check(const loaded_blas *L, char *why, size_t cap) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            if (check_one(L, ta, tb, 67, 45, 129, why, cap)) return -1;
    /* A larger one: full register blocks, more than one cache block of k. */
    if (check_one(L, 0, 1, 301, 259, 131, why, cap)) return -1;
    return 0;
}

/* -------------------------------------------------------------- loading */

static void *sym(void *h, const char *name) { return dlsym(h, name); }

/* dlopen, resolve the GEMM, set the BLAS threads and describe the library. */
static int load_lib(loaded_blas *L, const char *path, char *why, size_t cap) {
    memset(L, 0, sizeof *L);
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, cap, "cannot load it (%s)", e ? e : path);
        return -1;
    }
    void *gemm = sym(h, GEMM_SYMBOL);
    if (!gemm) {
        snprintf(why, cap, "%s has no %s", path, GEMM_SYMBOL);
        dlclose(h);
        return -1;
    }
    L->handle = h;

    /* OpenBLAS? */
    char *(*ob_config)(void) = (char *(*)(void))sym(h, "openblas_get_config");
    char *(*ob_core)(void) = (char *(*)(void))sym(h, "openblas_get_corename");
    void (*ob_threads)(int) = (void (*)(int))sym(h, "openblas_set_num_threads");
    /* BLIS? */
    const char *(*bl_version)(void) = (const char *(*)(void))sym(h, "bli_info_get_version_str");
    int64_t (*bl_int_size)(void) = (int64_t(*)(void))sym(h, "bli_info_get_blas_int_type_size");
    int64_t (*bl_openmp)(void) = (int64_t(*)(void))sym(h, "bli_info_get_enable_openmp");
    int64_t (*bl_pthreads)(void) = (int64_t(*)(void))sym(h, "bli_info_get_enable_pthreads");
    int (*bl_arch_id)(void) = (int (*)(void))sym(h, "bli_arch_query_id");
    const char *(*bl_arch_name)(int) = (const char *(*)(int))sym(h, "bli_arch_string");
    void (*bl_threads)(int64_t) = (void (*)(int64_t))sym(h, "bli_thread_set_num_threads");

    if (bl_int_size && bl_int_size() == 64)
        L->gemm64 = (gemm64_fn)gemm;
    else
        L->gemm32 = (gemm32_fn)gemm;

    /* The BLAS runs single-threaded: blas_gemm splits the work over OpenMP threads. */
    if (ob_threads) ob_threads(1);
    if (bl_threads) bl_threads(1);

    if (ob_config) {
        /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21" */
        char name[64] = "OpenBLAS";
        const char *cfg = ob_config();
        if (cfg) { /* the first two words */
            size_t len = 0;
            for (int words = 0; cfg[len] && len + 1 < sizeof name; len++)
                if (cfg[len] == ' ' && ++words == 2) break;
            memcpy(name, cfg, len);
            name[len] = 0;
        }
        const char *core = ob_core ? ob_core() : NULL;
        if (core && *core)
            snprintf(L->desc, sizeof L->desc, "%s (%s kernel)", name, core);
        else
            snprintf(L->desc, sizeof L->desc, "%s", name);
    } else if (bl_version) {
        const char *model = bl_openmp && bl_openmp() ? "openmp" : bl_pthreads && bl_pthreads() ? "pthreads" : "serial";
        const char *arch = bl_arch_id && bl_arch_name ? bl_arch_name(bl_arch_id()) : NULL;
        if (arch)
            snprintf(L->desc, sizeof L->desc, "BLIS %s (%s, %s kernel)", bl_version(), model, arch);
        else
            snprintf(L->desc, sizeof L->desc, "BLIS %s (%s)", bl_version(), model);
    } else {
        snprintf(L->desc, sizeof L->desc, "BLAS %s", path);
    }
    return 0;
}

/* Loads a candidate and checks it; why starts with label (if any). On failure
 * the library stays loaded (a multi-threaded BLAS cannot always be unloaded
 * safely) but is never used. */
static int try_lib(loaded_blas *L, const char *path, const char *label, char *why, size_t cap) {
    char detail[700];
    if (load_lib(L, path, detail, sizeof detail) || self_check(L, detail, sizeof detail)) {
        snprintf(why, cap, "%s%s%s", label ? label : "", label ? ": " : "", detail);
        return -1;
    }
    return 0;
}

static int try_openblas(loaded_blas *L, const char *path, char *why, size_t cap) {
    /* Debian's OpenBLAS 0.3.21 does not recognise some newer AVX-512 Xeons
     * and would run its generic kernel at a fifth of the speed. */
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    /* It would otherwise start a worker per core that presight never uses. */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    return try_lib(L, path, "OpenBLAS", why, cap);
}

static int try_blis(loaded_blas *L, char *why, size_t cap) {
    const char *path = access(BLIS_OPENMP_PATH, R_OK) == 0 ? BLIS_OPENMP_PATH : "libblis.so.4";
    return try_lib(L, path, "BLIS", why, cap);
}

static int init_locked(ps_error *err) {
    int threads = pick_threads();
    loaded_blas L;
    char why[800];
    const char *force = getenv("PRESIGHT_BLAS");
    if (force && *force) {
        int rc;
        if (!strcasecmp(force, "openblas"))
            rc = try_openblas(&L, "libopenblas.so.0", why, sizeof why);
        else if (!strcasecmp(force, "blis"))
            rc = try_blis(&L, why, sizeof why);
        else if (force[0] == '/') {
            const char *base = strrchr(force, '/') + 1;
            rc = strstr(base, "openblas") ? try_openblas(&L, force, why, sizeof why)
                                          : try_lib(&L, force, NULL, why, sizeof why);
        } else
            return ps_fail(err, "PRESIGHT_BLAS=%s: expected openblas, blis or an absolute path to a BLAS .so", force);
        if (rc) return ps_fail(err, "PRESIGHT_BLAS=%s: %s", force, why);
    } else if (try_openblas(&L, "libopenblas.so.0", why, sizeof why)) {
        fprintf(stderr, "presight: %s; falling back to BLIS\n", why);
        char why2[800];
        if (try_blis(&L, why2, sizeof why2))
            return ps_fail(err, "no usable BLAS: %s; %s (install libopenblas0-pthread or libblis4)", why, why2);
    }
    g_gemm32 = L.gemm32;
    g_gemm64 = L.gemm64;
    g_threads = threads;
    omp_set_num_threads(threads);
    /* Say so when the threads outnumber the CPUs allowed (mpirun -np 1 binds
     * its rank to one core: 2 threads then share it, at half the speed). */
    int cpus = allowed_cpus();
    char bound[64] = "";
    if (cpus < threads) snprintf(bound, sizeof bound, " on %d allowed CPU%s", cpus, cpus == 1 ? "" : "s");
    snprintf(g_desc, sizeof g_desc, "%s, %d thread%s%s", L.desc, threads, threads == 1 ? "" : "s", bound);
    return 0;
}

int blas_init(ps_error *err) {
    if (__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&g_lock);
    int rc = 0;
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) {
        if (g_tried) {
            rc = ps_fail(err, "%s", g_fail.msg);
        } else {
            g_tried = 1;
            rc = init_locked(&g_fail);
            if (rc) {
                ps_fail(err, "%s", g_fail.msg);
            } else {
                __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
            }
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* C = alpha op(A) op(B) + beta C, row-major, element by element: only for a
 * caller that skipped blas_init when no BLAS library loads (blas_gemm has no
 * error to return, and the library never aborts). Slow, but correct. */
static void plain_gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
                       const real *b, int ldb, real beta, real *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int p = 0; p < k; p++)
                sum += (double)(trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                       (double)(trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            real *x = &c[(size_t)i * ldc + j];
            *x = (real)(alpha * sum + (beta == 0 ? 0 : beta * *x));
        }
}

void blas_gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda, const real *b,
               int ldb, real beta, real *c, int ldc) {
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) {
        ps_error err;
        if (blas_init(&err)) {
            plain_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
    }
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C; BLAS would reject lda = 0 */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    /* Split C into row (else column) slabs of at least SPLIT_GRAIN, one per
     * OpenMP thread. Inside a parallel region the caller has already divided
     * the work: one call, on this thread. */
    int T = g_threads;
    if (T > 1 && (double)m * n * k >= SPLIT_MIN_MACS && !omp_in_parallel()) {
        int split_m = m >= SPLIT_GRAIN * T, split_n = !split_m && n >= SPLIT_GRAIN * T;
        if (split_m || split_n) {
            int len = split_m ? m : n, units = (len + SPLIT_GRAIN - 1) / SPLIT_GRAIN;
#pragma omp parallel num_threads(T)
            {
                int t = omp_get_thread_num(), nt = omp_get_num_threads();
                int lo = (int)((long)units * t / nt) * SPLIT_GRAIN;
                int hi = (int)((long)units * (t + 1) / nt) * SPLIT_GRAIN;
                if (hi > len) hi = len;
                if (hi > lo && split_m)
                    call_gemm(g_gemm32, g_gemm64, trans_a, trans_b, hi - lo, n, k, alpha,
                              trans_a ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta, c + (size_t)lo * ldc, ldc);
                else if (hi > lo)
                    call_gemm(g_gemm32, g_gemm64, trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                              trans_b ? b + (size_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
            }
            return;
        }
    }
    call_gemm(g_gemm32, g_gemm64, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *blas_describe(void) { return g_desc; }

int blas_threads(void) { return __atomic_load_n(&g_ready, __ATOMIC_ACQUIRE) ? g_threads : pick_threads(); }
