/*
 * Replication benchmark (issue 8), printed as one table with ratios:
 *
 *   1. 4 KiB random writes on a local volume: mr_volume_write with the
 *      default backend (AUTO: measures io_uring against pwrite per kind of
 *      operation and uses the faster), forced io_uring, pread/pwrite, and a
 *      plain pwrite(2) loop (the baseline). Page cache only (no fsync), the
 *      same for all. The same for reads, against a pread(2) loop.
 *   2. The same writes through mr_repl_write on a primary replicating to a
 *      secondary on loopback, async and sync, against the local AUTO
 *      volume (the replicated volumes are AUTO too). Async once more with
 *      a burst of 1000 writes that fits the 4 MiB send queue (a sustained
 *      stream runs at the pipeline's speed: back-pressure).
 *   3. Checkpoint latency after 1k and 100k distinct dirty blocks written
 *      async: time to drain the pipeline (mr_repl_wait_synced), then the
 *      checkpoint itself (barrier, secondary fdatasync, 100k-entry hidden
 *      layer emptied, acknowledgement), and the two together.
 *
 * Usage: repl_bench [WRITES]   (default 50000; temp files under /tmp)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meshring.h"

#define BS 4096u
#define LOCAL_BLOCKS 16384u   /* 64 MiB */
#define CKPT_BLOCKS 131072u   /* 512 MiB, sparse */

static char g_dir[] = "/tmp/mr-repl-bench-XXXXXX";

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void check(const char *what, mr_status st)
{
    if (st != MR_OK) {
        char err[512];
        mr_last_error(err, sizeof err);
        fprintf(stderr, "repl_bench: %s: %s (%s)\n", what, mr_status_str(st), err);
        exit(1);
    }
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    const char *name;
    double per_sec, p50, p99;
};

static struct result summarize(const char *name, double *lat, size_t n, double total_us)
{
    struct result r;
    qsort(lat, n, sizeof *lat, cmp_double);
    r.name = name;
    r.per_sec = (double)n / (total_us / 1e6);
    r.p50 = lat[n / 2];
    r.p99 = lat[(size_t)((double)n * 0.99)];
    return r;
}

typedef mr_status (*write_fn)(void *h, uint64_t block, const uint8_t *buf);

static mr_status volume_write(void *h, uint64_t block, const uint8_t *buf)
{
    return mr_volume_write((mr_volume *)h, block, buf, BS);
}

static mr_status repl_write(void *h, uint64_t block, const uint8_t *buf)
{
    return mr_repl_write((mr_repl *)h, block, buf, BS);
}

static uint8_t g_read_buf[BS];

static mr_status volume_read(void *h, uint64_t block, const uint8_t *buf)
{
    (void)buf;
    return mr_volume_read((mr_volume *)h, block, g_read_buf, BS);
}

static mr_status plain_pread(void *h, uint64_t block, const uint8_t *buf)
{
    (void)buf;
    return pread(*(int *)h, g_read_buf, BS, (off_t)(block * BS)) == (ssize_t)BS ? MR_OK : MR_IO;
}

static mr_status plain_pwrite(void *h, uint64_t block, const uint8_t *buf)
{
    int fd = *(int *)h;
    return pwrite(fd, buf, BS, (off_t)(block * BS)) == (ssize_t)BS ? MR_OK : MR_IO;
}

/* Times `n` calls of `fn` on random blocks (writes, or reads for the read rows). */
static struct result run_writes(const char *name, write_fn fn, void *h, size_t n, uint64_t blocks)
{
    static uint8_t buf[BS];
    double *lat = malloc(n * sizeof *lat);
    uint64_t seed = 0x1234567u;
    double t0, t, start = now_us();
    size_t i;
    struct result r;
    for (i = 0; i < n; i++) {
        memset(buf, (int)(i & 0xff), 64);
        t0 = now_us();
        check(name, fn(h, rnd(&seed) % blocks, buf));
        t = now_us();
        lat[i] = t - t0;
    }
    r = summarize(name, lat, n, now_us() - start);
    free(lat);
    return r;
}

static void fill_all(write_fn fn, void *h)
{
    static uint8_t buf[BS];
    uint64_t b;
    for (b = 0; b < LOCAL_BLOCKS; b++) {
        check("fill", fn(h, b, buf));
    }
}

static mr_volume *open_volume(const char *name, uint32_t backend, uint64_t blocks)
{
    mr_volume_config cfg;
    mr_volume *v = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    check("mr_volume_config_init", mr_volume_config_init(&cfg));
    cfg.block_count = blocks;
    cfg.flags = MR_VOLUME_CREATE;
    cfg.backend = backend;
    check(name, mr_volume_open(path, &cfg, &v));
    return v;
}

/* A primary and a secondary on loopback; the volume handles go to pv/sv
 * (NULL: released at once, the replications keep their own references). */
static void pair(const char *tag, uint32_t ack, uint64_t blocks, mr_repl **p, mr_repl **s, mr_volume **pv_out,
                 mr_volume **sv_out)
{
    char pname[64], sname[64], text[MR_ADDR_TEXT_MAX];
    mr_repl_config cfg;
    mr_addr a;
    mr_volume *pv, *sv;
    snprintf(pname, sizeof pname, "%s-p", tag);
    snprintf(sname, sizeof sname, "%s-s", tag);
    pv = open_volume(pname, MR_BACKEND_AUTO, blocks);
    sv = open_volume(sname, MR_BACKEND_AUTO, blocks);
    check("mr_repl_config_init", mr_repl_config_init(&cfg));
    cfg.key = (const uint8_t *)"repl_bench key, 32 bytes long!!";
    cfg.key_len = 32;
    cfg.mode = MR_REPL_SECONDARY;
    cfg.peer_timeout_ms = 30000;
    check("start secondary", mr_repl_start(sv, "127.0.0.1:0", &cfg, s));
    check("local addr", mr_repl_local_addr(*s, &a));
    check("format", mr_addr_format(&a, text, sizeof text, NULL));
    cfg.mode = MR_REPL_PRIMARY;
    cfg.ack = ack;
    check("start primary", mr_repl_start(pv, text, &cfg, p));
    check("connect", mr_repl_wait_synced(*p, 10000));
    if (pv_out != NULL && sv_out != NULL) {
        *pv_out = pv;
        *sv_out = sv;
    } else {
        mr_volume_free(pv);
        mr_volume_free(sv);
    }
}

static void row(const struct result *r, const struct result *base, const char *vs)
{
    printf("  %-36s %10.0f %9.1f %9.1f %8.2fx %s\n", r->name, r->per_sec, r->p50, r->p99, r->per_sec / base->per_sec, vs);
}

static void checkpoint_case(uint64_t dirty)
{
    static uint8_t buf[BS];
    mr_repl *p, *s;
    mr_volume *pv, *sv;
    mr_repl_counters c;
    double t0, t1, t2, t3;
    uint64_t b;
    char tag[32];
    snprintf(tag, sizeof tag, "ckpt%llu", (unsigned long long)dirty);
    pair(tag, MR_REPL_ASYNC, CKPT_BLOCKS, &p, &s, &pv, &sv);
    check("first checkpoint", mr_repl_checkpoint(p, -1));
    for (b = 0; b < dirty; b++) {
        memcpy(buf, &b, sizeof b);
        /* Spread over the volume: distinct blocks, not sequential. */
        check("write", mr_repl_write(p, (b * 7919u) % CKPT_BLOCKS, buf, BS));
    }
    t0 = now_us();
    check("wait_synced", mr_repl_wait_synced(p, -1));
    t1 = now_us();
    check("mr_repl_stats", mr_repl_stats(s, &c));
    check("flush primary", mr_volume_flush(pv));
    check("flush secondary", mr_volume_flush(sv));
    t2 = now_us();
    check("checkpoint", mr_repl_checkpoint(p, -1));
    t3 = now_us();
    printf("  %-8llu %8llu %10.2f %16.2f %16.2f %10.2f\n", (unsigned long long)dirty, (unsigned long long)c.hidden_blocks,
           (t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3, (t3 - t0) / 1e3);
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
}

static void cleanup(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "repl_bench: could not remove %s\n", g_dir);
    }
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 50000;
    struct result base, autow, uring, batch, async, burst, sync, rbase, rauto, ruring, rbatch;
    mr_volume *va, *vu, *vb;
    mr_repl *p, *s;
    char path[512];
    int fd;
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);

    snprintf(path, sizeof path, "%s/plain", g_dir);
    fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)LOCAL_BLOCKS * BS) != 0) {
        perror(path);
        return 1;
    }
    va = open_volume("auto", MR_BACKEND_AUTO, LOCAL_BLOCKS);
    vu = open_volume("uring", MR_BACKEND_URING, LOCAL_BLOCKS);
    vb = open_volume("batch", MR_BACKEND_BATCH, LOCAL_BLOCKS);
    /* Allocate every block of all three files alike, so the measured writes
     * all overwrite cached pages. */
    fill_all(plain_pwrite, &fd);
    fill_all(volume_write, va);
    fill_all(volume_write, vu);
    fill_all(volume_write, vb);
    base = run_writes("plain pwrite(2) loop (baseline)", plain_pwrite, &fd, n, LOCAL_BLOCKS);
    autow = run_writes("mr_volume_write, auto (default)", volume_write, va, n, LOCAL_BLOCKS);
    uring = run_writes("mr_volume_write, io_uring forced", volume_write, vu, n, LOCAL_BLOCKS);
    batch = run_writes("mr_volume_write, pread/pwrite", volume_write, vb, n, LOCAL_BLOCKS);
    rbase = run_writes("plain pread(2) loop (baseline)", plain_pread, &fd, n, LOCAL_BLOCKS);
    rauto = run_writes("mr_volume_read, auto (default)", volume_read, va, n, LOCAL_BLOCKS);
    ruring = run_writes("mr_volume_read, io_uring forced", volume_read, vu, n, LOCAL_BLOCKS);
    rbatch = run_writes("mr_volume_read, pread/pwrite", volume_read, vb, n, LOCAL_BLOCKS);
    close(fd);
    mr_volume_free(va);
    mr_volume_free(vu);
    mr_volume_free(vb);

    pair("async", MR_REPL_ASYNC, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    async = run_writes("mr_repl_write async, loopback", repl_write, p, n, LOCAL_BLOCKS);
    check("drain", mr_repl_wait_synced(p, -1));
    /* 1000 writes (4 MiB of frames) fit the send queue: no back-pressure. */
    burst = run_writes("  async, one 1000-write burst", repl_write, p, 1000, LOCAL_BLOCKS);
    check("drain", mr_repl_wait_synced(p, -1));
    check("async replication", mr_repl_get_error(p)); /* every timed write was replicated */
    mr_repl_free(p);
    mr_repl_free(s);
    pair("sync", MR_REPL_SYNC, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    sync = run_writes("mr_repl_write sync, loopback", repl_write, p, n, LOCAL_BLOCKS);
    check("sync replication", mr_repl_get_error(p));
    mr_repl_free(p);
    mr_repl_free(s);

    printf("Replication: %zu random 4 KiB writes per row, %u-block (64 MiB) volumes, page cache (no fsync)\n", n,
           LOCAL_BLOCKS);
    printf("  %-36s %10s %9s %9s %9s\n", "implementation", "ops/s", "p50 us", "p99 us", "ratio");
    printf("  random 4 KiB writes\n");
    row(&base, &base, "(vs pwrite loop)");
    row(&autow, &base, "(vs pwrite loop)");
    row(&uring, &base, "(vs pwrite loop)");
    row(&batch, &base, "(vs pwrite loop)");
    row(&async, &autow, "(vs local auto)");
    row(&burst, &autow, "(vs local auto)");
    row(&sync, &autow, "(vs local auto)");
    printf("  random 4 KiB reads (page cache)\n");
    row(&rbase, &rbase, "(vs pread loop)");
    row(&rauto, &rbase, "(vs pread loop)");
    row(&ruring, &rbase, "(vs pread loop)");
    row(&rbatch, &rbase, "(vs pread loop)");

    printf("\nCheckpoint after N distinct dirty blocks written async (%u-block volumes, loopback): drain = until\n"
           "the secondary acknowledged every write; the data is then made durable on both sides (mr_volume_flush),\n"
           "so the checkpoint column is the barrier round trip plus emptying the secondary's hidden layer\n", CKPT_BLOCKS);
    printf("  %-8s %8s %10s %16s %16s %10s\n", "dirty", "hidden", "drain ms", "2x fdatasync ms", "checkpoint ms", "total ms");
    checkpoint_case(1000);
    checkpoint_case(100000);
    return 0;
}
