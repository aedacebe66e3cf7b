/*
 * Replication benchmark, printed as tables with ratios, every row measured
 * in the same run as the row it is compared with:
 *
 *   1. 4 KiB random writes on a local volume: mr_volume_write with the
 *      default backend (AUTO: measures io_uring against pwrite per kind of
 *      operation and uses the faster), forced io_uring, pread/pwrite, and a
 *      plain pwrite(2) loop (the baseline). Page cache only (no fsync). The
 *      same for reads, against a pread(2) loop.
 *   2. Sync replication latency on loopback against a bare TCP ping-pong
 *      of a 4 KiB frame answered by 32 bytes (two threads, TCP_NODELAY,
 *      blocking sockets): the floor for any acknowledged write over TCP.
 *   3. Async replication, sustained (back-pressure) and a burst that fits
 *      the send queue, against the local AUTO volume.
 *   4. Durable writes (MR_REPL_DURABLE: fdatasync on both sides before the
 *      acknowledgement) with 16 concurrent writers, against 16 writers each
 *      doing its own pwrite + fdatasync on a local file, and 1 writer.
 *   5. O_DIRECT: batches of 32 random 4 KiB writes through
 *      mr_volume_write_batch on an MR_VOLUME_DIRECT volume (io_uring: 32 in
 *      flight), against pwrite(2) on an O_DIRECT fd for the same blocks.
 *   6. Checkpoint latency after 1k and 100k distinct dirty blocks.
 *   repl_bench rss N: the process's RSS with a primary and a secondary on
 *      loopback after N distinct blocks were overwritten since the last
 *      checkpoint (N hidden blocks on the secondary), run by bench/run.sh in
 *      a fresh process per N.
 *
 * Usage: repl_bench [WRITES]   (default 50000; temp files under /tmp)
 *        repl_bench rss N
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "meshring.h"

#define BS 4096u
#define LOCAL_BLOCKS 16384u   /* 64 MiB */
#define CKPT_BLOCKS 131072u   /* 512 MiB, sparse */
#define DURABLE_WRITERS 16
#define DIRECT_QD 32u

static char g_dir[] = "/tmp/mr-repl-bench-XXXXXX";
static const uint8_t g_key[32] = "repl_bench key, 32 bytes long!!";

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

static void die(const char *what)
{
    perror(what);
    exit(1);
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

static void fill_all(write_fn fn, void *h, uint64_t blocks)
{
    static uint8_t buf[BS];
    uint64_t b;
    for (b = 0; b < blocks; b++) {
        check("fill", fn(h, b, buf));
    }
}

static mr_volume *open_volume_flags(const char *name, uint32_t backend, uint64_t blocks, uint32_t flags)
{
    mr_volume_config cfg;
    mr_volume *v = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    check("mr_volume_config_init", mr_volume_config_init(&cfg));
    cfg.block_count = blocks;
    cfg.flags = MR_VOLUME_CREATE | flags;
    cfg.backend = backend;
    check(name, mr_volume_open(path, &cfg, &v));
    return v;
}

static mr_volume *open_volume(const char *name, uint32_t backend, uint64_t blocks)
{
    return open_volume_flags(name, backend, blocks, 0);
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
    cfg.key = g_key;
    cfg.key_len = sizeof g_key;
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
    printf("  %-40s %10.0f %9.1f %9.1f %8.2fx %s\n", r->name, r->per_sec, r->p50, r->p99, r->per_sec / base->per_sec, vs);
}

/* Latency rows compare p50s: ratio = this p50 / the baseline's p50. */
static void lat_row(const struct result *r, const struct result *base, const char *vs)
{
    printf("  %-40s %10.0f %9.1f %9.1f %8.2fx %s\n", r->name, r->per_sec, r->p50, r->p99, r->p50 / base->p50, vs);
}

/* ---- 2. TCP ping-pong: 4 KiB out, 32 B back ---- */

static int read_full(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);
        if (n <= 0) {
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n <= 0) {
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static void *pong_server(void *arg)
{
    int lfd = *(int *)arg, one = 1, fd;
    uint8_t frame[BS], reply[32];
    memset(reply, 1, sizeof reply);
    fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        die("accept");
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (read_full(fd, frame, sizeof frame) == 0 && write_full(fd, reply, sizeof reply) == 0) {
    }
    close(fd);
    return NULL;
}

static struct result tcp_ping_pong(size_t n)
{
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    pthread_t th;
    uint8_t frame[BS], reply[32];
    double *lat = malloc(n * sizeof *lat), t0, start;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fd, one = 1;
    size_t i;
    struct result r;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sin, &slen) != 0) {
        die("ping-pong listen");
    }
    pthread_create(&th, NULL, pong_server, &lfd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        die("ping-pong connect");
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(frame, 7, sizeof frame);
    start = now_us();
    for (i = 0; i < n; i++) {
        t0 = now_us();
        if (write_full(fd, frame, sizeof frame) != 0 || read_full(fd, reply, sizeof reply) != 0) {
            die("ping-pong");
        }
        lat[i] = now_us() - t0;
    }
    r = summarize("TCP ping-pong 4 KiB / 32 B (floor)", lat, n, now_us() - start);
    close(fd);
    pthread_join(th, NULL);
    close(lfd);
    free(lat);
    return r;
}

/* ---- 4. durable writes with concurrent writers ---- */

struct dwriter {
    int kind; /* 0: mr_repl_write on a durable primary; 1: pwrite + fdatasync */
    mr_repl *p;
    int fd;
    uint64_t first, count, ops;
    double until;
};

static void *durable_writer(void *arg)
{
    struct dwriter *w = arg;
    uint8_t buf[BS];
    uint64_t seed = 0x9e3779b9u + w->first, b;
    memset(buf, (int)w->first, sizeof buf);
    while (now_us() < w->until) {
        b = w->first + rnd(&seed) % w->count;
        if (w->kind == 0) {
            check("durable write", mr_repl_write(w->p, b, buf, BS));
        } else if (pwrite(w->fd, buf, BS, (off_t)(b * BS)) != (ssize_t)BS || fdatasync(w->fd) != 0) {
            die("pwrite+fdatasync");
        }
        w->ops++;
    }
    return NULL;
}

/* Writes/s of `threads` writers for `secs` seconds, each on its own blocks. */
static double durable_run(int kind, mr_repl *p, int fd, int threads, double secs)
{
    struct dwriter w[DURABLE_WRITERS];
    pthread_t th[DURABLE_WRITERS];
    double start = now_us(), until = start + secs * 1e6;
    uint64_t total = 0;
    int i;
    for (i = 0; i < threads; i++) {
        w[i].kind = kind;
        w[i].p = p;
        w[i].fd = fd;
        w[i].first = (uint64_t)i * (LOCAL_BLOCKS / DURABLE_WRITERS);
        w[i].count = LOCAL_BLOCKS / DURABLE_WRITERS;
        w[i].ops = 0;
        w[i].until = until;
        pthread_create(&th[i], NULL, durable_writer, &w[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].ops;
    }
    return (double)total / ((now_us() - start) / 1e6);
}

static void durable_section(void)
{
    mr_repl *p, *s;
    mr_repl_counters pc, sc;
    char path[512];
    double local16, local1, repl16, repl1;
    int fd;
    snprintf(path, sizeof path, "%s/fsync-local", g_dir);
    fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)LOCAL_BLOCKS * BS) != 0) {
        die(path);
    }
    fill_all(plain_pwrite, &fd, LOCAL_BLOCKS);
    fdatasync(fd);
    local1 = durable_run(1, NULL, fd, 1, 2.0);
    local16 = durable_run(1, NULL, fd, DURABLE_WRITERS, 2.0);
    close(fd);
    pair("durable", MR_REPL_DURABLE, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    repl1 = durable_run(0, p, -1, 1, 2.0);
    check("stats", mr_repl_stats(p, &pc));
    check("stats", mr_repl_stats(s, &sc));
    repl16 = durable_run(0, p, -1, DURABLE_WRITERS, 2.0);
    {
        mr_repl_counters pc2, sc2;
        check("stats", mr_repl_stats(p, &pc2));
        check("stats", mr_repl_stats(s, &sc2));
        check("durable replication", mr_repl_get_error(p));
        printf("\nDurable writes (MR_REPL_DURABLE: fdatasync on both sides before the ack), random 4 KiB, 2 s per row\n");
        printf("  %-52s %10s %9s\n", "implementation", "writes/s", "ratio");
        printf("  %-52s %10.0f %8.2fx\n", "local pwrite + fdatasync per write, 1 writer", local1, 1.0);
        printf("  %-52s %10.0f %8.2fx (vs 1 local writer)\n", "local pwrite + fdatasync per write, 16 writers", local16,
               local16 / local1);
        printf("  %-52s %10.0f %8.2fx (vs local, 1 writer)\n", "mr_repl_write durable, loopback, 1 writer", repl1, repl1 / local1);
        printf("  %-52s %10.0f %8.2fx (vs local fdatasync per write, 16 writers; goal >= 4x)\n",
               "mr_repl_write durable, loopback, 16 writers", repl16, repl16 / local16);
        printf("  %-52s %10.0f %8.2fx (vs local fdatasync per write, 1 writer)\n", "", repl16, repl16 / local1);
        printf("  16 writers: %llu writes shared %llu fdatasyncs on the primary and %llu on the secondary\n",
               (unsigned long long)(sc2.writes_applied - sc.writes_applied), (unsigned long long)(pc2.flushes - pc.flushes),
               (unsigned long long)(sc2.flushes - sc.flushes));
    }
    mr_repl_free(p);
    mr_repl_free(s);
}

/* ---- 5. O_DIRECT, queue depth 32 ---- */

static void direct_section(size_t batches)
{
    static uint8_t *bufs;
    mr_block_write w[DIRECT_QD];
    mr_volume *vu, *vb;
    char path[512];
    double t0, uring_t, batch_t, plain_t;
    uint64_t seed = 42, blocks[DIRECT_QD];
    size_t i, j;
    int fd;
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, (size_t)DIRECT_QD * BS) != 0) {
        die("posix_memalign");
    }
    bufs = mem;
    memset(bufs, 0x5a, (size_t)DIRECT_QD * BS);
    vu = open_volume_flags("direct-uring", MR_BACKEND_URING, LOCAL_BLOCKS, MR_VOLUME_DIRECT);
    vb = open_volume_flags("direct-batch", MR_BACKEND_BATCH, LOCAL_BLOCKS, MR_VOLUME_DIRECT);
    snprintf(path, sizeof path, "%s/direct-plain", g_dir);
    fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)LOCAL_BLOCKS * BS) != 0) {
        die(path);
    }
    /* Allocate every block first so the timed writes are overwrites. */
    for (i = 0; i < LOCAL_BLOCKS; i += DIRECT_QD) {
        for (j = 0; j < DIRECT_QD; j++) {
            w[j].block = i + j;
            w[j].buf = bufs + j * BS;
            w[j].len = BS;
            if (pwrite(fd, bufs + j * BS, BS, (off_t)((i + j) * BS)) != (ssize_t)BS) {
                die("pwrite O_DIRECT");
            }
        }
        check("fill", mr_volume_write_batch(vu, w, DIRECT_QD));
        check("fill", mr_volume_write_batch(vb, w, DIRECT_QD));
    }
    fdatasync(fd);
    check("flush", mr_volume_flush(vu));
    check("flush", mr_volume_flush(vb));
    for (int pass = 0; pass < 3; pass++) {
        double *acc = pass == 0 ? &plain_t : pass == 1 ? &uring_t : &batch_t;
        seed = 42;
        t0 = now_us();
        for (i = 0; i < batches; i++) {
            for (j = 0; j < DIRECT_QD; j++) {
                /* Distinct blocks within a batch. */
                blocks[j] = (rnd(&seed) % (LOCAL_BLOCKS / DIRECT_QD)) * DIRECT_QD + j;
                w[j].block = blocks[j];
                w[j].buf = bufs + j * BS;
                w[j].len = BS;
            }
            if (pass == 0) {
                for (j = 0; j < DIRECT_QD; j++) {
                    if (pwrite(fd, bufs + j * BS, BS, (off_t)(blocks[j] * BS)) != (ssize_t)BS) {
                        die("pwrite O_DIRECT");
                    }
                }
            } else {
                check("write_batch", mr_volume_write_batch(pass == 1 ? vu : vb, w, DIRECT_QD));
            }
        }
        *acc = now_us() - t0;
    }
    {
        double n = (double)batches * DIRECT_QD;
        double plain = n / (plain_t / 1e6), uring = n / (uring_t / 1e6), batch = n / (batch_t / 1e6);
        printf("\nO_DIRECT volume (MR_VOLUME_DIRECT), %zu batches of %u random 4 KiB overwrites, %u-block file\n", batches,
               DIRECT_QD, LOCAL_BLOCKS);
        printf("  %-52s %10s %9s %9s\n", "implementation", "writes/s", "us/write", "ratio");
        printf("  %-52s %10.0f %9.1f %8.2fx\n", "pwrite(2) on an O_DIRECT fd, one at a time (baseline)", plain, 1e6 / plain, 1.0);
        printf("  %-52s %10.0f %9.1f %8.2fx (goal >= 1.5x)\n", "mr_volume_write_batch, io_uring, 32 in flight", uring,
               1e6 / uring, uring / plain);
        printf("  %-52s %10.0f %9.1f %8.2fx\n", "mr_volume_write_batch, pread/pwrite backend", batch, 1e6 / batch,
               batch / plain);
    }
    close(fd);
    mr_volume_free(vu);
    mr_volume_free(vb);
    free(mem);
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

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, n) == 0) {
            v = strtol(line + n, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

/* One process: a pair, N distinct blocks overwritten since the last checkpoint. */
static int rss_case(uint64_t dirty)
{
    static uint8_t buf[BS];
    uint64_t blocks = dirty + dirty / 8 + 1024, b;
    mr_repl *p, *s;
    mr_repl_counters c;
    long before, after, peak;
    double t0;
    pair("rss", MR_REPL_ASYNC, blocks, &p, &s, NULL, NULL);
    check("first checkpoint", mr_repl_checkpoint(p, -1));
    before = status_kib("VmRSS:");
    t0 = now_us();
    for (b = 0; b < dirty; b++) {
        memcpy(buf, &b, sizeof b);
        check("write", mr_repl_write(p, (b * 7919u) % blocks, buf, BS));
    }
    check("wait_synced", mr_repl_wait_synced(p, -1));
    check("stats", mr_repl_stats(s, &c));
    after = status_kib("VmRSS:");
    peak = status_kib("VmHWM:");
    printf("  %-9llu %9llu %9llu %12.1f %12.1f %12.1f %10.1f %s\n", (unsigned long long)dirty,
           (unsigned long long)c.hidden_blocks, (unsigned long long)blocks, before / 1024.0, after / 1024.0, peak / 1024.0,
           (now_us() - t0) / 1e6, dirty >= 1000000 ? (peak <= 64 * 1024 ? "(goal <= 64 MB: met)" : "(goal <= 64 MB: MISSED)") : "");
    mr_repl_free(p);
    mr_repl_free(s);
    return 0;
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
    struct result base, autow, uring, batch, async, burst, sync, durable1, pong, rbase, rauto, ruring, rbatch;
    mr_volume *va, *vu, *vb;
    mr_repl *p, *s;
    char path[512];
    int fd;
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    if (argc > 2 && strcmp(argv[1], "rss") == 0) {
        return rss_case(strtoull(argv[2], NULL, 10));
    }
    if (argc > 2 && (strcmp(argv[1], "sync") == 0 || strcmp(argv[1], "async") == 0)) {
        /* One replicated row alone, for profiling (perf record). */
        uint32_t ack = strcmp(argv[1], "sync") == 0 ? MR_REPL_SYNC : MR_REPL_ASYNC;
        n = (size_t)strtoul(argv[2], NULL, 10);
        pong = tcp_ping_pong(n);
        lat_row(&pong, &pong, "(the floor)");
        pair(argv[1], ack, LOCAL_BLOCKS, &p, &s, NULL, NULL);
        fill_all(repl_write, p, LOCAL_BLOCKS);
        check("drain", mr_repl_wait_synced(p, -1));
        sync = run_writes(argv[1], repl_write, p, n, LOCAL_BLOCKS);
        check("drain", mr_repl_wait_synced(p, -1));
        lat_row(&sync, &pong, "(vs TCP ping-pong p50)");
        mr_repl_free(p);
        mr_repl_free(s);
        return 0;
    }

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
    fill_all(plain_pwrite, &fd, LOCAL_BLOCKS);
    fill_all(volume_write, va, LOCAL_BLOCKS);
    fill_all(volume_write, vu, LOCAL_BLOCKS);
    fill_all(volume_write, vb, LOCAL_BLOCKS);
    base = run_writes("plain pwrite(2) loop (baseline)", plain_pwrite, &fd, n, LOCAL_BLOCKS);
    autow = run_writes("mr_volume_write, auto (default)", volume_write, va, n, LOCAL_BLOCKS);
    uring = run_writes("mr_volume_write, io_uring forced", volume_write, vu, n, LOCAL_BLOCKS);
    batch = run_writes("mr_volume_write, pread/pwrite", volume_write, vb, n, LOCAL_BLOCKS);
    rbase = run_writes("plain pread(2) loop (baseline)", plain_pread, &fd, n, LOCAL_BLOCKS);
    rauto = run_writes("mr_volume_read, auto (default)", volume_read, va, n, LOCAL_BLOCKS);
    ruring = run_writes("mr_volume_read, io_uring forced", volume_read, vu, n, LOCAL_BLOCKS);
    rbatch = run_writes("mr_volume_read, pread/pwrite", volume_read, vb, n, LOCAL_BLOCKS);
    close(fd);
    mr_volume_free(vu);
    mr_volume_free(vb);

    pong = tcp_ping_pong(n);
    pair("sync", MR_REPL_SYNC, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    sync = run_writes("mr_repl_write sync, loopback", repl_write, p, n, LOCAL_BLOCKS);
    check("sync replication", mr_repl_get_error(p));
    mr_repl_free(p);
    mr_repl_free(s);
    pair("durable1", MR_REPL_DURABLE, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    durable1 = run_writes("mr_repl_write durable, loopback", repl_write, p, n / 10, LOCAL_BLOCKS);
    check("durable replication", mr_repl_get_error(p));
    mr_repl_free(p);
    mr_repl_free(s);

    /* The local row again, just before the async rows (the same page cache state). */
    autow = run_writes("mr_volume_write, auto (default)", volume_write, va, n, LOCAL_BLOCKS);
    pair("async", MR_REPL_ASYNC, LOCAL_BLOCKS, &p, &s, NULL, NULL);
    async = run_writes("mr_repl_write async, loopback", repl_write, p, n, LOCAL_BLOCKS);
    check("drain", mr_repl_wait_synced(p, -1));
    /* 1000 writes (4 MiB of frames) fit the send queue: no back-pressure. */
    burst = run_writes("  async, one 1000-write burst", repl_write, p, 1000, LOCAL_BLOCKS);
    check("drain", mr_repl_wait_synced(p, -1));
    check("async replication", mr_repl_get_error(p)); /* every timed write was replicated */
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(va);

    printf("Replication: %zu random 4 KiB writes per row, %u-block (64 MiB) volumes, page cache (no fsync)\n", n,
           LOCAL_BLOCKS);
    printf("  %-40s %10s %9s %9s %9s\n", "implementation", "ops/s", "p50 us", "p99 us", "ratio");
    printf("  random 4 KiB writes (ratio: ops/s)\n");
    row(&base, &base, "(vs pwrite loop)");
    row(&autow, &base, "(vs pwrite loop)");
    row(&uring, &base, "(vs pwrite loop)");
    row(&batch, &base, "(vs pwrite loop)");
    printf("  random 4 KiB reads, page cache (ratio: ops/s)\n");
    row(&rbase, &rbase, "(vs pread loop)");
    row(&rauto, &rbase, "(vs pread loop)");
    row(&ruring, &rbase, "(vs pread loop)");
    row(&rbatch, &rbase, "(vs pread loop)");
    printf("  acknowledged writes, loopback (ratio: p50 latency, lower is better)\n");
    lat_row(&pong, &pong, "(the floor)");
    lat_row(&sync, &pong, "(vs TCP ping-pong p50; goal <= 1.5x)");
    lat_row(&durable1, &pong, "(vs TCP ping-pong p50; fdatasync on both sides)");
    printf("  async replication (ratio: ops/s)\n");
    row(&autow, &autow, "(local, measured again)");
    row(&async, &autow, "(vs local auto; goal >= 0.8x)");
    row(&burst, &autow, "(vs local auto)");

    durable_section();
    direct_section(n / 50 > 200 ? n / 50 : 200);

    printf("\nCheckpoint after N distinct dirty blocks written async (%u-block volumes, loopback): drain = until\n"
           "the secondary acknowledged every write; the data is then made durable on both sides (mr_volume_flush),\n"
           "so the checkpoint column is the barrier round trip plus emptying the secondary's hidden layer\n", CKPT_BLOCKS);
    printf("  %-8s %8s %10s %16s %16s %10s\n", "dirty", "hidden", "drain ms", "2x fdatasync ms", "checkpoint ms", "total ms");
    checkpoint_case(1000);
    checkpoint_case(100000);
    return 0;
}
