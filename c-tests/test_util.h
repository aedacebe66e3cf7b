/*
 * Shared helpers for the meshring C tests: check macros, counters,
 * timing, fd / RSS accounting and small UDP helpers.
 *
 * Every check counts as one pass or one fail. A failing check prints
 * file:line, the expression, the status names (mr_status_str) and the
 * thread's mr_last_error text. test_finish() prints "N passed, M failed"
 * and returns the exit code (non-zero when anything failed).
 *
 * Environment:
 *   MR_TEST_VERBOSE=1  print every check and the error texts of bad inputs
 *   MR_TEST_SLOW=1     widen "returned within" bounds 20x (valgrind)
 *   MR_TEST_CYCLES=N   override the bind/close/free cycle count
 *   MR_TEST_VALGRIND=1 running under valgrind (see uring_blocking_skipped)
 */
#ifndef MR_TEST_UTIL_H
#define MR_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meshring.h"

static int g_pass;
static int g_fail;
static int g_verbose;
static int g_slow;
static int g_valgrind;

static inline void test_init(int argc, char **argv)
{
    const char *v = getenv("MR_TEST_VERBOSE");
    const char *s = getenv("MR_TEST_SLOW");
    int i;
    g_verbose = v != NULL && v[0] != '\0' && v[0] != '0';
    g_slow = s != NULL && s[0] != '\0' && s[0] != '0';
    s = getenv("MR_TEST_VALGRIND");
    g_valgrind = s != NULL && s[0] != '\0' && s[0] != '0';
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            g_verbose = 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline int test_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, g_pass, g_fail);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}

/* The calling thread's last error text (static buffer per call site use). */
static inline const char *last_err(char *buf, size_t cap)
{
    size_t n = mr_last_error(buf, cap);
    if (n == 0 && cap > 0) {
        buf[0] = '\0';
    }
    return buf;
}

static inline const char *st_name(int st)
{
    const char *s = mr_status_str(st);
    return s != NULL ? s : "(NULL from mr_status_str)";
}

static inline void check_note_fail(const char *file, int line)
{
    g_fail++;
    fprintf(stdout, "FAIL %s:%d: ", file, line);
}

/* Generic boolean check with a printf-style explanation on failure. */
static inline int check_true(const char *file, int line, int ok, const char *expr,
                             const char *fmt, ...)
{
    if (ok) {
        g_pass++;
        if (g_verbose) {
            printf("ok   %s:%d: %s\n", file, line, expr);
        }
        return 1;
    } else {
        char eb[512];
        va_list ap;
        check_note_fail(file, line);
        printf("%s", expr);
        if (fmt != NULL && fmt[0] != '\0') {
            printf(" -- ");
            va_start(ap, fmt);
            vprintf(fmt, ap);
            va_end(ap);
        }
        printf(" [last error: \"%s\"]\n", last_err(eb, sizeof eb));
        return 0;
    }
}

/* Status check: exact status expected. */
static inline int check_status(const char *file, int line, const char *expr, int got, int want)
{
    if (got == want) {
        g_pass++;
        if (g_verbose) {
            printf("ok   %s:%d: %s == %s\n", file, line, expr, st_name(want));
        }
        return 1;
    } else {
        char eb[512];
        check_note_fail(file, line);
        printf("%s: got %d (%s), want %d (%s) [last error: \"%s\"]\n", expr, got, st_name(got),
               want, st_name(want), last_err(eb, sizeof eb));
        return 0;
    }
}

/*
 * Failure check: exact status expected AND a non-empty mr_last_error.
 * In verbose mode the error text is printed.
 */
static inline int check_fail(const char *file, int line, const char *expr, int got, int want)
{
    char eb[512];
    size_t need;
    int ok = check_status(file, line, expr, got, want);
    need = mr_last_error(NULL, 0);
    if (need == 0) {
        check_note_fail(file, line);
        printf("%s: mr_last_error(NULL,0) == 0, expected a message for %s\n", expr,
               st_name(want));
        return 0;
    }
    g_pass++;
    if (g_verbose) {
        printf("     error text: \"%s\"\n", last_err(eb, sizeof eb));
    }
    return ok;
}

#define CHECK(cond, ...) check_true(__FILE__, __LINE__, (cond) ? 1 : 0, #cond, __VA_ARGS__)
#define CHECK_ST(expr, want) check_status(__FILE__, __LINE__, #expr, (int)(expr), (int)(want))
#define CHECK_FAIL(expr, want) check_fail(__FILE__, __LINE__, #expr, (int)(expr), (int)(want))
#define CHECK_EQ_U(a, b)                                                                       \
    check_true(__FILE__, __LINE__, (unsigned long long)(a) == (unsigned long long)(b),         \
               #a " == " #b, "%llu != %llu", (unsigned long long)(a), (unsigned long long)(b))

/* Number of non-overlapping occurrences of `needle` in `m`. */
static inline size_t bytes_count(const mr_bytes *m, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    const uint8_t *p = m->ptr, *end = m->ptr + m->len;
    while (p != NULL && p < end) {
        const uint8_t *q = memmem(p, (size_t)(end - p), needle, nl);
        if (q == NULL) {
            break;
        }
        n++;
        p = q + nl;
    }
    return n;
}

/* ------------------------------------------------------------ timing */

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A "returned within" bound, widened under MR_TEST_SLOW (valgrind). */
static inline double within_ms(double ms)
{
    return g_slow ? ms * 20.0 : ms;
}

/* Join with a deadline; returns 0 when joined. */
static inline int join_within(pthread_t t, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(t, NULL, &ts);
}

/* ------------------------------------------------------------ accounting */

static inline int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

#if defined(__SANITIZE_ADDRESS__)
/*
 * ASan keeps freed memory in a quarantine (256 MiB by default), which
 * shows up as VmRSS. Drain it before measuring so the RSS bound measures
 * the library, not the sanitizer. (Part of the sanitizer runtime, declared
 * here to keep the include list to meshring.h and libc.)
 */
void __sanitizer_purge_allocator(void);
#define PURGE_ALLOCATOR() __sanitizer_purge_allocator()
#else
#define PURGE_ALLOCATOR() ((void)0)
#endif

static inline long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL) {
        return -1;
    }
    PURGE_ALLOCATOR();
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* ------------------------------------------------------------ UDP helpers */

/*
 * Test-only pseudo backend: io_uring with MR_UDP_MULTISHOT_RECV, so every
 * UDP test also runs the multishot RECVMSG receive path.
 */
#define TEST_URING_MULTISHOT 100u

/* Fills the backend and flags of `cfg` for a (pseudo) backend. */
static inline void config_for(mr_udp_config *cfg, uint32_t backend)
{
    if (backend == TEST_URING_MULTISHOT) {
        cfg->backend = MR_BACKEND_URING;
        cfg->flags |= MR_UDP_MULTISHOT_RECV;
    } else {
        cfg->backend = backend;
    }
}

/* The backend mr_udp_backend() reports for a (pseudo) backend. */
static inline uint32_t real_backend(uint32_t backend)
{
    return backend == TEST_URING_MULTISHOT ? MR_BACKEND_URING : backend;
}

static inline const char *backend_name(uint32_t b)
{
    switch (b) {
    case TEST_URING_MULTISHOT:
        return "uring-multishot";
    case MR_BACKEND_AUTO:
        return "auto";
    case MR_BACKEND_URING:
        return "uring";
    case MR_BACKEND_BATCH:
        return "batch";
    default:
        return "?";
    }
}

/*
 * Binds with the given backend and flags. Returns 1 on success, 0 when the
 * backend/feature is unsupported (a SKIP line is printed), -1 on failure
 * (already counted as a failed check).
 */
static inline int bind_with(const char *file, int line, const char *addr, uint32_t backend,
                            uint32_t flags, mr_udp **out)
{
    mr_udp_config cfg;
    mr_status st;
    char eb[512];
    *out = NULL;
    if (!check_status(file, line, "mr_udp_config_init(&cfg)", mr_udp_config_init(&cfg), MR_OK)) {
        return -1;
    }
    cfg.flags = flags;
    config_for(&cfg, backend);
    st = mr_udp_bind(addr, &cfg, out);
    if (st == MR_UNSUPPORTED) {
        printf("SKIP %s: %s (bind %s flags %u at %s:%d)\n", backend_name(backend),
               last_err(eb, sizeof eb), addr, (unsigned)flags, file, line);
        return 0;
    }
    if (!check_status(file, line, "mr_udp_bind(addr, &cfg, out)", st, MR_OK)) {
        return -1;
    }
    if (!check_true(file, line, *out != NULL, "bound handle != NULL", "")) {
        return -1;
    }
    if (backend != MR_BACKEND_AUTO &&
        !check_true(file, line, (uint32_t)mr_udp_backend(*out) == real_backend(backend),
                    "mr_udp_backend(u) == requested backend", "got %d want %u",
                    (int)mr_udp_backend(*out), (unsigned)real_backend(backend))) {
        return -1;
    }
    return 1;
}

/*
 * valgrind (3.19 here) does not release its global thread lock while a
 * thread sits in io_uring_enter(IORING_ENTER_GETEVENTS) without a timeout,
 * so every other thread of the process freezes (same as liburing issue
 * #657). A uring test in which one thread waits forever for another thread
 * (timeout -1 + sender thread, close from another thread) therefore hangs
 * under valgrind. Those cases print a SKIP line under valgrind for the
 * uring backend only; they run natively and under ASan, and the batch
 * backend runs them under valgrind too. Returns 1 when skipped.
 */
static inline int uring_blocking_skipped(uint32_t backend, const char *what)
{
    if (g_valgrind && real_backend(backend) == MR_BACKEND_URING) {
        printf("SKIP uring under valgrind: %s (valgrind freezes all other threads while one "
               "blocks in io_uring_enter)\n",
               what);
        return 1;
    }
    return 0;
}

#define BIND_WITH(addr, backend, flags, out) bind_with(__FILE__, __LINE__, addr, backend, flags, out)

static inline int addr_equal(const mr_addr *a, const mr_addr *b)
{
    size_t iplen = a->family == 4 ? 4 : 16;
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, iplen) == 0 &&
           (a->family == 4 || a->scope_id == b->scope_id);
}

static inline const char *fmt_addr(const mr_addr *a, char *buf, size_t cap)
{
    size_t len = 0;
    if (mr_addr_format(a, buf, cap, &len) != MR_OK) {
        snprintf(buf, cap, "<unformattable family %u>", (unsigned)a->family);
    }
    return buf;
}

/* Receives one datagram into buf (cap), waiting up to timeout_ms. */
static inline mr_status recv_one(mr_udp *u, uint8_t *buf, size_t cap, int32_t timeout_ms,
                                 mr_datagram *out)
{
    size_t got = 0;
    mr_status st;
    memset(out, 0, sizeof *out);
    out->buf = buf;
    out->cap = cap;
    st = mr_udp_recv(u, out, 1, timeout_ms, &got);
    if (st == MR_OK && got != 1) {
        return MR_PANIC; /* reported by callers as a mismatch */
    }
    return st;
}

static inline mr_status send_one(mr_udp *u, const uint8_t *buf, size_t len, const mr_addr *to,
                                 int32_t timeout_ms)
{
    mr_datagram d;
    size_t sent = 0;
    mr_status st;
    memset(&d, 0, sizeof d);
    d.buf = (uint8_t *)buf;
    d.cap = len;
    d.len = len;
    d.addr = *to;
    st = mr_udp_send(u, &d, 1, timeout_ms, &sent);
    if (st == MR_OK && sent != 1) {
        return MR_PANIC;
    }
    return st;
}

#endif /* MR_TEST_UTIL_H */
