/*
 * Volumes and replication through the C ABI: QEMU's test-replication
 * behaviours (primary/secondary read, write, start, stop, checkpoint,
 * get_error, failover; checkpoint empties the layers; reads through the
 * layers) with exact-content checks, plus resync of a late secondary and
 * bad input: wrong block size, out-of-range blocks, wrong stage, an
 * unreachable peer and corrupt streams from fake peers. The authenticated
 * link: peers without the key or with another key, a second primary, and
 * a man in the middle that changes a bit or replays a frame are each
 * refused and reported by mr_repl_get_error while the real primary keeps
 * replicating. Durable mode with concurrent writers (shared fdatasyncs),
 * batched writes, host-supplied connections (a socketpair), O_DIRECT
 * volumes. Loopback only; small volumes so the valgrind run stays quick.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "test_util.h"

#define BS 4096u
#define BLOCKS 32u

static char g_dir[256];
static int g_files;
static const uint8_t g_key[32] = "c-tests replication key 32 bytes";
static const uint8_t g_other_key[32] = "another key, also 32 bytes long!";

static void path_for(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static mr_volume *open_volume(const char *name, uint32_t backend, uint64_t blocks)
{
    mr_volume_config cfg;
    mr_volume *v = NULL;
    char path[512];
    mr_status st;
    path_for(path, sizeof path, name);
    CHECK_ST(mr_volume_config_init(&cfg), MR_OK);
    cfg.block_count = blocks;
    cfg.flags = MR_VOLUME_CREATE;
    cfg.backend = backend;
    st = mr_volume_open(path, &cfg, &v);
    if (st == MR_UNSUPPORTED) {
        char eb[256];
        printf("SKIP volume backend %u: %s\n", (unsigned)backend, last_err(eb, sizeof eb));
        return NULL;
    }
    CHECK_ST(st, MR_OK);
    g_files++;
    return v;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    size_t i;
    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 31u + i * 7u);
    }
}

typedef mr_status (*read_fn)(void *h, uint64_t block, uint8_t *buf, size_t len);

static mr_status read_repl(void *h, uint64_t block, uint8_t *buf, size_t len)
{
    return mr_repl_read((mr_repl *)h, block, buf, len);
}

static mr_status read_volume(void *h, uint64_t block, uint8_t *buf, size_t len)
{
    return mr_volume_read((mr_volume *)h, block, buf, len);
}

/* 1 if `len` bytes at `block` read with `fn` equal `want`. */
static int has(read_fn fn, void *h, uint64_t block, const uint8_t *want, size_t len)
{
    uint8_t *got = calloc(1, len); /* calloc: valgrind cannot see io_uring fill it */
    int same;
    if (got == NULL || fn(h, block, got, len) != MR_OK) {
        free(got);
        return 0;
    }
    same = memcmp(got, want, len) == 0;
    free(got);
    return same;
}

#define repl_has(r, block, want, len) has(read_repl, (r), (block), (want), (len))
#define volume_has(v, block, want, len) has(read_volume, (v), (block), (want), (len))

static void test_volume(uint32_t backend)
{
    static uint8_t a[3 * BS], b[3 * BS], zero[BS];
    mr_volume *v = open_volume(backend == MR_BACKEND_URING ? "vol-uring" : "vol-batch", backend, BLOCKS);
    mr_volume_config cfg;
    mr_volume *again = NULL;
    char path[512];
    if (v == NULL) {
        return;
    }
    CHECK_EQ_U(mr_volume_backend(v), backend);
    CHECK_EQ_U(mr_volume_block_size(v), BS);
    CHECK_EQ_U(mr_volume_block_count(v), BLOCKS);
    fill(a, sizeof a, 1);
    CHECK_ST(mr_volume_write(v, 5, a, sizeof a), MR_OK);
    CHECK_ST(mr_volume_flush(v), MR_OK);
    CHECK_ST(mr_volume_read(v, 4, b, sizeof b), MR_OK);
    CHECK(memcmp(b, zero, BS) == 0, "block 4 is still zero");
    CHECK(memcmp(b + BS, a, 2 * BS) == 0, "blocks 5..6 read back exactly");
    CHECK(volume_has(v, 7, a + 2 * BS, BS), "block 7 read back exactly");
    /* Bad sizes and ranges. */
    CHECK_FAIL(mr_volume_read(v, 0, b, BS - 1), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_write(v, 0, a, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_write(v, BLOCKS, a, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_write(v, BLOCKS - 1, a, 2 * BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_read(v, UINT64_MAX, b, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_read(v, 0, NULL, BS), MR_INVALID_ARGUMENT);
    /* The same file reopened without a count takes its size. */
    path_for(path, sizeof path, backend == MR_BACKEND_URING ? "vol-uring" : "vol-batch");
    CHECK_ST(mr_volume_open(path, NULL, &again), MR_OK);
    CHECK_EQ_U(mr_volume_block_count(again), BLOCKS);
    CHECK(volume_has(again, 5, a, BS), "reopened volume has the data");
    mr_volume_free(again);
    CHECK_ST(mr_volume_close(v), MR_OK);
    CHECK_ST(mr_volume_close(v), MR_OK);
    CHECK_FAIL(mr_volume_read(v, 0, b, BS), MR_CLOSED);
    mr_volume_free(v);
    /* Bad configs. */
    CHECK_ST(mr_volume_config_init(&cfg), MR_OK);
    cfg.block_size = 1000;
    cfg.flags = MR_VOLUME_CREATE;
    cfg.block_count = 1;
    CHECK_FAIL(mr_volume_open(path, &cfg, &again), MR_INVALID_ARGUMENT);
    CHECK(again == NULL, "out is NULL on failure");
    cfg.block_size = BS;
    cfg.flags = 0x80;
    CHECK_FAIL(mr_volume_open(path, &cfg, &again), MR_INVALID_ARGUMENT);
    cfg.flags = 0;
    cfg.struct_size = 3;
    CHECK_FAIL(mr_volume_open(path, &cfg, &again), MR_INVALID_ARGUMENT);
    path_for(path, sizeof path, "does-not-exist");
    CHECK_FAIL(mr_volume_open(path, NULL, &again), MR_IO);
    CHECK(mr_last_os_error() == ENOENT, "errno %d", mr_last_os_error());
}

static mr_repl *start_key(mr_volume *v, const char *addr, uint32_t mode, uint32_t ack, const uint8_t *key)
{
    mr_repl_config cfg;
    mr_repl *r = NULL;
    CHECK_ST(mr_repl_config_init(&cfg), MR_OK);
    cfg.key = key;
    cfg.key_len = 32;
    cfg.mode = mode;
    cfg.ack = ack;
    cfg.connect_timeout_ms = 500;
    cfg.peer_timeout_ms = g_slow ? 20000 : 3000;
    CHECK_ST(mr_repl_start(v, addr, &cfg, &r), MR_OK);
    return r;
}

static mr_repl *start(mr_volume *v, const char *addr, uint32_t mode, uint32_t ack)
{
    return start_key(v, addr, mode, ack, g_key);
}

static void secondary_addr(mr_repl *s, char *text, size_t cap)
{
    mr_addr a;
    CHECK_ST(mr_repl_local_addr(s, &a), MR_OK);
    CHECK_ST(mr_addr_format(&a, text, cap, NULL), MR_OK);
}

static mr_repl_stage stage_of(mr_repl *r)
{
    mr_repl_stage st = MR_REPL_STAGE_NONE;
    CHECK_ST(mr_repl_get_stage(r, &st), MR_OK);
    return st;
}

static int wait_ms(void)
{
    return g_slow ? 60000 : 5000;
}

/* QEMU: primary/secondary read, write, checkpoint, layers, get_error. */
static void test_pair(uint32_t ack)
{
    static uint8_t one[4 * BS], two[2 * BS], mine[BS], want[3 * BS];
    mr_volume *pv = open_volume(ack == MR_REPL_SYNC ? "p-sync" : "p-async", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume(ack == MR_REPL_SYNC ? "s-sync" : "s-async", MR_BACKEND_AUTO, BLOCKS);
    mr_repl_counters c;
    mr_repl *s, *p;
    char addr[MR_ADDR_TEXT_MAX];
    s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, ack);
    secondary_addr(s, addr, sizeof addr);
    p = start(pv, addr, MR_REPL_PRIMARY, ack);
    mr_volume_free(pv); /* the replications hold their own references */
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    CHECK_ST(mr_repl_wait_synced(s, wait_ms()), MR_OK);
    CHECK(stage_of(p) == MR_REPL_STAGE_RUNNING, "primary running");
    CHECK(stage_of(s) == MR_REPL_STAGE_RUNNING, "secondary running");
    CHECK_ST(mr_repl_get_error(p), MR_OK);
    CHECK_ST(mr_repl_get_error(s), MR_OK);

    fill(one, sizeof one, 1);
    CHECK_ST(mr_repl_write(p, 0, one, sizeof one), MR_OK);
    if (ack == MR_REPL_SYNC) {
        CHECK(volume_has(sv, 0, one, sizeof one), "sync write is on the secondary's base when it returns");
    }
    CHECK_ST(mr_repl_checkpoint(p, wait_ms()), MR_OK);
    CHECK(repl_has(s, 0, one, sizeof one), "secondary view = primary after a checkpoint");
    CHECK(repl_has(p, 0, one, sizeof one), "primary reads its own volume");

    /* Secondary writes go to active; primary overwrites keep old data in hidden. */
    fill(mine, sizeof mine, 9);
    CHECK_ST(mr_repl_write(s, 1, mine, sizeof mine), MR_OK);
    CHECK(volume_has(sv, 1, one + BS, BS), "the secondary's own write is not in the base");
    fill(two, sizeof two, 2);
    CHECK_ST(mr_repl_write(p, 0, two, sizeof two), MR_OK);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    memcpy(want, one, BS);
    memcpy(want + BS, mine, BS);
    memcpy(want + 2 * BS, one + 2 * BS, BS);
    CHECK(repl_has(s, 0, want, sizeof want), "view reads active -> hidden -> base");
    CHECK(volume_has(sv, 0, two, sizeof two), "primary writes land on the secondary's base");
    CHECK_ST(mr_repl_stats(s, &c), MR_OK);
    CHECK_EQ_U(c.active_blocks, 1);
    CHECK_EQ_U(c.hidden_blocks, 1);
    CHECK_EQ_U(c.connected, 1);

    /* The checkpoint empties both layers. */
    CHECK_ST(mr_repl_checkpoint(p, wait_ms()), MR_OK);
    CHECK_ST(mr_repl_stats(s, &c), MR_OK);
    CHECK_EQ_U(c.active_blocks, 0);
    CHECK_EQ_U(c.hidden_blocks, 0);
    CHECK_EQ_U(c.checkpoints, 2);
    memcpy(want, two, 2 * BS);
    CHECK(repl_has(s, 0, want, sizeof want), "after the checkpoint the view is the primary's");
    CHECK_ST(mr_repl_stats(p, &c), MR_OK);
    CHECK_EQ_U(c.dirty_blocks, 0);
    CHECK_EQ_U(c.checkpoints, 2);
    CHECK_EQ_U(c.stage, MR_REPL_STAGE_RUNNING);

    /* Failover after a speculative write: the base keeps the primary's data plus ours. */
    CHECK_ST(mr_repl_write(s, 3, mine, sizeof mine), MR_OK);
    CHECK_ST(mr_repl_write(p, 2, one, BS), MR_OK);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    CHECK_ST(mr_repl_failover(s), MR_OK);
    CHECK(stage_of(s) == MR_REPL_STAGE_DONE, "secondary DONE after failover");
    CHECK(repl_has(s, 2, one, BS), "primary write kept by failover");
    CHECK(repl_has(s, 3, mine, BS), "active layer committed by failover");
    CHECK(volume_has(sv, 3, mine, BS), "committed to the base volume");
    CHECK_ST(mr_repl_write(s, 4, two, BS), MR_OK);
    CHECK(volume_has(sv, 4, two, BS), "after DONE writes go straight to the volume");
    CHECK_ST(mr_volume_write(sv, 5, two, BS), MR_OK); /* released for plain use */
    /* After DONE: no-ops, and get_error says not running. */
    CHECK_ST(mr_repl_failover(s), MR_OK);
    CHECK_ST(mr_repl_checkpoint(s, 0), MR_OK);
    CHECK_ST(mr_repl_stop(s), MR_OK);
    CHECK_FAIL(mr_repl_get_error(s), MR_STATE);

    /* Primary: stop replicating, continue alone. */
    CHECK_ST(mr_repl_stop(p), MR_OK);
    CHECK(stage_of(p) == MR_REPL_STAGE_DONE, "primary DONE after stop");
    CHECK_ST(mr_repl_write(p, 6, two, BS), MR_OK);
    CHECK(repl_has(p, 6, two, BS), "primary writes locally after DONE");
    CHECK_ST(mr_repl_failover(p), MR_OK);
    CHECK_ST(mr_repl_stop(p), MR_OK);
    CHECK_FAIL(mr_repl_get_error(p), MR_STATE);
    CHECK_FAIL(mr_repl_wait_synced(p, 0), MR_STATE);

    CHECK_ST(mr_repl_close(p), MR_OK);
    CHECK_ST(mr_repl_close(p), MR_OK);
    CHECK_FAIL(mr_repl_write(p, 0, one, BS), MR_CLOSED);
    CHECK_FAIL(mr_repl_get_error(p), MR_CLOSED);
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(sv);
}

/* Failover that cannot commit: FAILOVER_FAILED with the reason, retry possible. */
static void test_failover_failed(void)
{
    static uint8_t mine[BS];
    mr_volume *pv = open_volume("ff-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("ff-s", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p;
    char addr[MR_ADDR_TEXT_MAX], eb[512];
    secondary_addr(s, addr, sizeof addr);
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    fill(mine, sizeof mine, 4);
    CHECK_ST(mr_repl_write(s, 2, mine, BS), MR_OK);
    CHECK_ST(mr_volume_close(sv), MR_OK); /* the commit will fail */
    CHECK_FAIL(mr_repl_failover(s), MR_CLOSED);
    CHECK(stage_of(s) == MR_REPL_STAGE_FAILOVER_FAILED, "stage FAILOVER_FAILED");
    CHECK_FAIL(mr_repl_get_error(s), MR_CLOSED);
    CHECK(strstr(last_err(eb, sizeof eb), "failover") != NULL, "reason names the failover: %s", eb);
    CHECK_FAIL(mr_repl_checkpoint(s, 100), MR_STATE);
    CHECK_FAIL(mr_repl_stop(s), MR_STATE);
    CHECK_FAIL(mr_repl_failover(s), MR_CLOSED); /* retried, fails the same way */
    CHECK(stage_of(s) == MR_REPL_STAGE_FAILOVER_FAILED, "still FAILOVER_FAILED");
    mr_repl_free(s);
    mr_repl_free(p);
    mr_volume_free(sv);
    mr_volume_free(pv);
}

/* A primary whose secondary is absent: writes succeed, errors are stored,
 * and a secondary that appears later is resynced with the dirty blocks. */
static void test_unreachable_then_resync(void)
{
    static uint8_t a[BS], b[2 * BS], all_p[BLOCKS * BS];
    mr_volume *pv = open_volume("late-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("late-s", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p;
    mr_repl_counters c;
    char addr[MR_ADDR_TEXT_MAX], eb[512];
    double t0;
    mr_status st = MR_OK;
    secondary_addr(s, addr, sizeof addr);
    mr_repl_free(s); /* nobody listens there now */
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    fill(a, sizeof a, 5);
    fill(b, sizeof b, 6);
    CHECK_ST(mr_repl_write(p, 3, a, BS), MR_OK);
    CHECK_ST(mr_repl_write(p, 10, b, sizeof b), MR_OK);
    t0 = now_ms();
    while (now_ms() - t0 < wait_ms() && (st = mr_repl_get_error(p)) == MR_OK) {
        sleep_ms(10);
    }
    CHECK(st == MR_IO, "get_error reports the refused connection (%s)", st_name(st));
    CHECK(strstr(last_err(eb, sizeof eb), "connect") != NULL, "reason: %s", eb);
    CHECK_FAIL(mr_repl_checkpoint(p, 100), MR_TIMEOUT);
    CHECK_FAIL(mr_repl_checkpoint(p, 0), MR_WOULD_BLOCK);
    CHECK_FAIL(mr_repl_wait_synced(p, 0), MR_WOULD_BLOCK);
    CHECK_ST(mr_repl_stats(p, &c), MR_OK);
    CHECK_EQ_U(c.dirty_blocks, 3);
    CHECK_EQ_U(c.connected, 0);
    s = start(sv, addr, MR_REPL_SECONDARY, MR_REPL_SYNC);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    CHECK_ST(mr_repl_checkpoint(p, wait_ms()), MR_OK);
    CHECK_ST(mr_repl_stats(p, &c), MR_OK);
    CHECK_EQ_U(c.resync_blocks, 3);
    CHECK_EQ_U(c.dirty_blocks, 0);
    CHECK_ST(mr_repl_read(p, 0, all_p, sizeof all_p), MR_OK);
    CHECK(repl_has(s, 0, all_p, sizeof all_p), "resynced secondary equals the primary");
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
}

static int tcp_connect(const mr_addr *a)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(a->port);
    memcpy(&sin.sin_addr, a->ip, 4);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Polls get_error until it returns `want` (other errors are skipped). */
static mr_status wait_error(mr_repl *r, mr_status want)
{
    double t0 = now_ms();
    mr_status st = MR_OK;
    while (now_ms() - t0 < wait_ms()) {
        st = mr_repl_get_error(r);
        if (st == want) {
            return st;
        }
        sleep_ms(10);
    }
    return st;
}

static void test_corrupt_peers(void)
{
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: meshring\r\n\r\n";
    mr_volume *sv = open_volume("fake-s", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *pv = open_volume("fake-p", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p;
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    mr_addr a;
    uint8_t junk[64], hello[36];
    char addr[64], eb[512];
    int fd, lfd, cfd;
    ssize_t n;

    /* A fake primary sends garbage: the secondary reports MR_PARSE and keeps running. */
    CHECK_ST(mr_repl_local_addr(s, &a), MR_OK);
    fd = tcp_connect(&a);
    CHECK(fd >= 0, "connect to the secondary");
    if (fd >= 0) {
        CHECK(write(fd, garbage, sizeof garbage - 1) == (ssize_t)(sizeof garbage - 1), "sent garbage");
        CHECK_FAIL(wait_error(s, MR_PARSE), MR_PARSE);
        CHECK(strstr(last_err(eb, sizeof eb), "corrupt") != NULL, "reason: %s", eb);
        close(fd);
    }
    CHECK(stage_of(s) == MR_REPL_STAGE_RUNNING, "secondary still running");
    mr_repl_free(s);

    /* A fake secondary answers the handshake with garbage: the primary reports MR_PARSE. */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof sin) == 0 && listen(lfd, 4) == 0, "fake secondary listens");
    CHECK(getsockname(lfd, (struct sockaddr *)&sin, &slen) == 0, "getsockname");
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    cfd = accept(lfd, NULL, NULL);
    CHECK(cfd >= 0, "primary connected to the fake secondary");
    if (cfd >= 0) {
        n = read(cfd, hello, sizeof hello);
        CHECK(n > 4 && memcmp(hello, "MRRP", 4) == 0, "primary sent a HELLO frame");
        memset(junk, 0x5a, sizeof junk);
        CHECK(write(cfd, junk, sizeof junk) == (ssize_t)sizeof junk, "sent junk");
        CHECK_FAIL(wait_error(p, MR_PARSE), MR_PARSE);
        CHECK(strstr(last_err(eb, sizeof eb), "magic") != NULL, "reason: %s", eb);
        close(cfd);
    }
    CHECK_ST(mr_repl_write(p, 0, junk, 0), MR_INVALID_ARGUMENT);
    close(lfd);
    mr_repl_free(p);
    mr_volume_free(sv);
    mr_volume_free(pv);
}

static void test_bad_input(void)
{
    static uint8_t buf[2 * BS];
    mr_volume *v = open_volume("bad", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *other = open_volume("bad-other", MR_BACKEND_AUTO, BLOCKS / 2);
    mr_repl_config cfg;
    mr_repl *r = NULL, *p, *s2 = NULL;
    mr_volume *none = NULL;
    mr_repl_stage stage;
    mr_repl_counters c;
    mr_addr a;
    char addr[MR_ADDR_TEXT_MAX], eb[512];

    CHECK_FAIL(mr_repl_config_init(NULL), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_repl_config_init(&cfg), MR_OK);
    /* The key is required, 16 to 64 bytes. */
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    CHECK(strstr(last_err(eb, sizeof eb), "key") != NULL, "reason: %s", eb);
    cfg.key = g_key;
    cfg.key_len = 8;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    cfg.key_len = 65;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    cfg.key_len = 32;
    CHECK_FAIL(mr_repl_start(NULL, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    /* A NULL address: the host hands over connections (mr_repl_add_connection). */
    CHECK_ST(mr_repl_start(v, NULL, &cfg, &r), MR_OK);
    mr_repl_free(r);
    r = NULL;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", NULL, &r), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_start(v, "not an address", &cfg, &r), MR_PARSE);
    cfg.mode = 7;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    cfg.mode = MR_REPL_PRIMARY;
    cfg.ack = 9;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    cfg.ack = MR_REPL_SYNC;
    cfg.peer_timeout_ms = 0;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    cfg.peer_timeout_ms = 1000;
    cfg.struct_size = 4;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_INVALID_ARGUMENT);
    CHECK(r == NULL, "out stays NULL");

    /* A secondary with a different geometry refuses the primary. */
    s2 = start(other, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    secondary_addr(s2, addr, sizeof addr);
    p = start(v, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_FAIL(wait_error(p, MR_INVALID_ARGUMENT), MR_INVALID_ARGUMENT);
    CHECK(strstr(last_err(eb, sizeof eb), "geometry") != NULL, "reason: %s", eb);
    CHECK_FAIL(wait_error(s2, MR_INVALID_ARGUMENT), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_wait_synced(p, 50), MR_TIMEOUT);

    /* One replication per volume; plain writes are refused while it runs. */
    CHECK_ST(mr_repl_config_init(&cfg), MR_OK);
    cfg.key = g_key;
    cfg.key_len = 32;
    CHECK_FAIL(mr_repl_start(v, "127.0.0.1:1", &cfg, &r), MR_STATE);
    CHECK_FAIL(mr_volume_write(v, 0, buf, BS), MR_STATE);
    CHECK_ST(mr_volume_read(v, 0, buf, BS), MR_OK);

    /* Wrong block size, out-of-range blocks. */
    CHECK_FAIL(mr_repl_write(p, 0, buf, BS + 1), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write(p, 0, buf, 512), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write(p, BLOCKS, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_read(p, BLOCKS - 1, buf, 2 * BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_read(s2, BLOCKS / 2, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write(s2, UINT64_MAX, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_read(p, 0, NULL, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_local_addr(p, &a), MR_INVALID_ARGUMENT);

    /* NULL handles and out parameters. */
    CHECK_FAIL(mr_repl_read(NULL, 0, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write(NULL, 0, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_checkpoint(NULL, 10), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_failover(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_stop(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_get_error(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_get_stage(NULL, &stage), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_get_stage(p, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_stats(NULL, &c), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_stats(p, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_wait_synced(NULL, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_local_addr(NULL, &a), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_close(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_read(NULL, 0, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_write(NULL, 0, buf, BS), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_flush(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_close(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_open(NULL, NULL, &none), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_volume_config_init(NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_volume_block_size(NULL) == 0 && mr_volume_block_count(NULL) == 0, "NULL volume sizes are 0");
    CHECK(mr_volume_backend(NULL) == MR_BACKEND_AUTO, "NULL volume backend");
    mr_repl_free(NULL);
    mr_volume_free(NULL);

    /* Closing the volume under a running replication. */
    mr_repl_free(s2);
    CHECK_ST(mr_volume_close(v), MR_OK);
    CHECK_FAIL(mr_repl_write(p, 0, buf, BS), MR_CLOSED);
    mr_repl_free(p);
    mr_volume_free(v);
    mr_volume_free(other);
}

/* The real primary still replicates: a sync write is on the secondary's
 * base when it returns, with no replication error stored. */
static void still_replicating(mr_repl *p, mr_volume *sv, uint64_t block, uint8_t seed, const char *after)
{
    static uint8_t buf[BS];
    fill(buf, sizeof buf, seed);
    CHECK_ST(mr_repl_write(p, block, buf, BS), MR_OK);
    CHECK_ST(mr_repl_get_error(p), MR_OK);
    CHECK(volume_has(sv, block, buf, BS), "after %s: the real primary's write reached the secondary", after);
}

/* A v2 HELLO with the right geometry whose tag was made without the key. */
static void send_keyless_hello(const mr_addr *a)
{
    uint8_t frame[20 + 44 + 16];
    uint32_t bs = BS, len = 44;
    uint64_t count = BLOCKS, zero = 0;
    int fd = tcp_connect(a);
    memset(frame, 0, sizeof frame);
    memcpy(frame, "MRRP", 4);
    frame[4] = 2; /* version */
    frame[5] = 1; /* HELLO */
    memcpy(frame + 8, &zero, 8);
    memcpy(frame + 16, &len, 4); /* little-endian hosts only, as the tests run */
    memcpy(frame + 20, &bs, 4);
    memcpy(frame + 24, &count, 8);
    CHECK(fd >= 0, "connect to the secondary");
    if (fd >= 0) {
        CHECK(write(fd, frame, sizeof frame) == (ssize_t)sizeof frame, "sent a HELLO without the key");
        (void)read(fd, frame, sizeof frame); /* its refusal, then EOF */
        close(fd);
    }
}

static void test_auth_refusals(void)
{
    mr_volume *pv = open_volume("auth-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("auth-s", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *wv = open_volume("auth-w", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *hv = open_volume("auth-h", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p, *w, *h;
    mr_repl_counters c;
    mr_addr a;
    char addr[MR_ADDR_TEXT_MAX], eb[512];
    secondary_addr(s, addr, sizeof addr);
    CHECK_ST(mr_repl_local_addr(s, &a), MR_OK);
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    still_replicating(p, sv, 0, 1, "connecting");

    /* No key. */
    send_keyless_hello(&a);
    CHECK_FAIL(wait_error(s, MR_AUTH), MR_AUTH);
    CHECK(strstr(last_err(eb, sizeof eb), "does not verify") != NULL, "reason: %s", eb);
    still_replicating(p, sv, 1, 2, "a peer without the key");

    /* Another key: both sides report MR_AUTH. */
    w = start_key(wv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC, g_other_key);
    CHECK_FAIL(wait_error(s, MR_AUTH), MR_AUTH);
    CHECK_FAIL(wait_error(w, MR_AUTH), MR_AUTH);
    CHECK(strstr(last_err(eb, sizeof eb), "pre-shared key") != NULL, "reason: %s", eb);
    mr_repl_free(w);
    still_replicating(p, sv, 2, 3, "a primary with another key");

    /* A second primary with the key: refused while the first is connected. */
    h = start(hv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_FAIL(wait_error(s, MR_STATE), MR_STATE);
    CHECK(strstr(last_err(eb, sizeof eb), "another primary is connected") != NULL, "reason: %s", eb);
    CHECK_FAIL(wait_error(h, MR_STATE), MR_STATE);
    still_replicating(p, sv, 3, 4, "a hijack attempt");
    CHECK_ST(mr_repl_stats(s, &c), MR_OK);
    CHECK(c.refused >= 3, "refused %llu connections", (unsigned long long)c.refused);
    CHECK_EQ_U(c.connections, 1);
    /* Takeover rule: when the first primary's connection ends, the second gets in. */
    mr_repl_free(p);
    CHECK_ST(mr_repl_wait_synced(h, wait_ms() * 2), MR_OK);
    mr_repl_free(h);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
    mr_volume_free(wv);
    mr_volume_free(hv);
}

/* A man in the middle: forwards both ways; `mode` changes the next WRITE
 * frame going to the secondary (1: flip a bit, 2: send it twice). */
struct mitm {
    int lfd;
    uint16_t upstream_port;
    volatile int mode;
    volatile int stop;
    pthread_t th;
};

static int read_exact_fd(int fd, uint8_t *buf, size_t len)
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

static int write_all_fd(int fd, const uint8_t *buf, size_t len)
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

static void *mitm_thread(void *arg)
{
    struct mitm *m = arg;
    static uint8_t frame[2 * (20 + 8 + BS + 16)];
    while (!m->stop) {
        struct pollfd lp = {m->lfd, POLLIN, 0};
        struct sockaddr_in sin;
        int down, up;
        if (poll(&lp, 1, 50) != 1) {
            continue;
        }
        down = accept(m->lfd, NULL, NULL);
        if (down < 0) {
            continue;
        }
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons(m->upstream_port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        up = socket(AF_INET, SOCK_STREAM, 0);
        if (up < 0 || connect(up, (struct sockaddr *)&sin, sizeof sin) != 0) {
            close(down);
            if (up >= 0) {
                close(up);
            }
            continue;
        }
        for (;;) {
            struct pollfd fds[2] = {{down, POLLIN, 0}, {up, POLLIN, 0}};
            uint8_t buf[4096];
            ssize_t n;
            if (m->stop || poll(fds, 2, 50) < 0) {
                break;
            }
            if (fds[1].revents != 0) { /* secondary -> primary: as is */
                n = read(up, buf, sizeof buf);
                if (n <= 0 || write_all_fd(down, buf, (size_t)n) != 0) {
                    break;
                }
            }
            if (fds[0].revents != 0) { /* primary -> secondary: frame by frame */
                uint32_t len;
                size_t total;
                if (read_exact_fd(down, frame, 20) != 0) {
                    break;
                }
                memcpy(&len, frame + 16, 4);
                if (len > 8 + BS) {
                    break;
                }
                total = 20 + (size_t)len + 16;
                if (read_exact_fd(down, frame + 20, total - 20) != 0) {
                    break;
                }
                if (frame[5] == 3 && m->mode == 1) {
                    frame[20 + 8 + 100] ^= 0x04;
                    m->mode = 0;
                } else if (frame[5] == 3 && m->mode == 2) {
                    memcpy(frame + total, frame, total);
                    total *= 2;
                    m->mode = 0;
                }
                if (write_all_fd(up, frame, total) != 0) {
                    break;
                }
            }
        }
        close(down);
        close(up);
    }
    return NULL;
}

static void test_man_in_the_middle(void)
{
    static uint8_t buf[BS];
    mr_volume *pv = open_volume("mitm-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("mitm-s", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p;
    struct mitm m;
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    mr_addr a;
    char addr[64], eb[512];
    int round;
    memset(&m, 0, sizeof m);
    CHECK_ST(mr_repl_local_addr(s, &a), MR_OK);
    m.upstream_port = a.port;
    m.lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(m.lfd, (struct sockaddr *)&sin, sizeof sin) == 0 && listen(m.lfd, 4) == 0, "proxy listens");
    CHECK(getsockname(m.lfd, (struct sockaddr *)&sin, &slen) == 0, "getsockname");
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    CHECK(pthread_create(&m.th, NULL, mitm_thread, &m) == 0, "proxy thread");
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    for (round = 1; round <= 2; round++) {
        m.mode = round;
        fill(buf, sizeof buf, (uint8_t)(40 + round));
        CHECK_ST(mr_repl_write(p, (uint64_t)round, buf, BS), MR_OK);
        CHECK_FAIL(wait_error(s, MR_AUTH), MR_AUTH);
        CHECK(strstr(last_err(eb, sizeof eb), "does not verify") != NULL, "round %d: %s", round, eb);
        /* The link was dropped; the primary reconnects and resyncs the block. */
        CHECK_ST(mr_repl_wait_synced(p, wait_ms() * 2), MR_OK);
        CHECK_ST(mr_repl_checkpoint(p, wait_ms()), MR_OK);
        CHECK(volume_has(sv, (uint64_t)round, buf, BS), "round %d: the block was resynced", round);
    }
    m.stop = 1;
    pthread_join(m.th, NULL);
    close(m.lfd);
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
}

struct writer {
    mr_repl *p;
    mr_volume *sv;
    uint64_t block;
    int bad;
};

static void *durable_writer(void *arg)
{
    struct writer *w = arg;
    uint8_t buf[BS];
    int i;
    for (i = 0; i < 10; i++) {
        fill(buf, sizeof buf, (uint8_t)(w->block * 16 + (uint64_t)i));
        if (mr_repl_write(w->p, w->block, buf, BS) != MR_OK || !volume_has(w->sv, w->block, buf, BS)) {
            w->bad++;
        }
    }
    return NULL;
}

/* Durable writes from several threads (each durable on both sides when it
 * returns, fdatasyncs shared), and batches. */
static void test_durable_and_batches(void)
{
    static uint8_t a[2 * BS], b[BS], c3[3 * BS], got[BS];
    mr_volume *pv = open_volume("dur-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("dur-s", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, "127.0.0.1:0", MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p;
    struct writer w[4];
    pthread_t th[4];
    mr_repl_counters pc, sc;
    mr_block_write batch[3];
    char addr[MR_ADDR_TEXT_MAX];
    int i, bad = 0;
    secondary_addr(s, addr, sizeof addr);
    p = start(pv, addr, MR_REPL_PRIMARY, MR_REPL_DURABLE);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    for (i = 0; i < 4; i++) {
        w[i].p = p;
        w[i].sv = sv;
        w[i].block = (uint64_t)i;
        w[i].bad = 0;
        CHECK(pthread_create(&th[i], NULL, durable_writer, &w[i]) == 0, "writer thread");
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
    }
    CHECK(bad == 0, "%d durable writes were not on the secondary when they returned", bad);
    CHECK_ST(mr_repl_get_error(p), MR_OK);
    CHECK_ST(mr_repl_stats(p, &pc), MR_OK);
    CHECK_ST(mr_repl_stats(s, &sc), MR_OK);
    CHECK(pc.flushes >= 1 && pc.flushes < 40, "primary: %llu fdatasyncs for 40 writes", (unsigned long long)pc.flushes);
    CHECK(sc.flushes >= 1 && sc.flushes < 40, "secondary: %llu fdatasyncs for 40 writes", (unsigned long long)sc.flushes);

    /* A batch: three extents, one call, all on the secondary when it returns. */
    fill(a, sizeof a, 7);
    fill(b, sizeof b, 8);
    fill(c3, sizeof c3, 9);
    batch[0].block = 10;
    batch[0].buf = a;
    batch[0].len = sizeof a;
    batch[1].block = 20;
    batch[1].buf = b;
    batch[1].len = sizeof b;
    batch[2].block = 14;
    batch[2].buf = c3;
    batch[2].len = sizeof c3;
    CHECK_ST(mr_repl_write_batch(p, batch, 3), MR_OK);
    CHECK(volume_has(sv, 10, a, sizeof a) && volume_has(sv, 20, b, BS) && volume_has(sv, 14, c3, sizeof c3),
          "every extent of the batch is on the secondary");
    CHECK_ST(mr_repl_write_batch(p, batch, 0), MR_OK);
    batch[1].block = 11; /* overlaps batch[0] */
    CHECK_FAIL(mr_repl_write_batch(p, batch, 2), MR_INVALID_ARGUMENT);
    batch[1].block = BLOCKS;
    CHECK_FAIL(mr_repl_write_batch(p, batch, 2), MR_INVALID_ARGUMENT);
    batch[1].buf = NULL;
    batch[1].block = 20;
    CHECK_FAIL(mr_repl_write_batch(p, batch, 2), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write_batch(p, NULL, 2), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_repl_write_batch(NULL, batch, 1), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_repl_read(p, 20, got, BS), MR_OK);
    CHECK(memcmp(got, b, BS) == 0, "nothing of a refused batch was written");
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
}

/* Connections the host makes (here a socketpair) instead of TCP. */
static void test_host_connections(void)
{
    static uint8_t buf[BS];
    mr_volume *pv = open_volume("host-p", MR_BACKEND_AUTO, BLOCKS);
    mr_volume *sv = open_volume("host-s", MR_BACKEND_AUTO, BLOCKS);
    mr_repl *s = start(sv, NULL, MR_REPL_SECONDARY, MR_REPL_SYNC);
    mr_repl *p = start(pv, NULL, MR_REPL_PRIMARY, MR_REPL_SYNC);
    mr_repl *own;
    mr_volume *ov;
    mr_addr a;
    int fds[2], udp;
    CHECK_FAIL(mr_repl_local_addr(s, &a), MR_INVALID_ARGUMENT);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    CHECK_ST(mr_repl_add_connection(p, fds[0]), MR_OK);
    CHECK_ST(mr_repl_add_connection(s, fds[1]), MR_OK);
    CHECK_ST(mr_repl_wait_synced(p, wait_ms()), MR_OK);
    fill(buf, sizeof buf, 3);
    CHECK_ST(mr_repl_write(p, 5, buf, BS), MR_OK);
    CHECK_ST(mr_repl_get_error(p), MR_OK);
    CHECK(volume_has(sv, 5, buf, BS), "replicated over the host's connection");
    /* Not a stream socket, not an fd: refused, the caller keeps it. */
    CHECK_FAIL(mr_repl_add_connection(p, -1), MR_INVALID_ARGUMENT);
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_FAIL(mr_repl_add_connection(s, udp), MR_INVALID_ARGUMENT);
    CHECK(close(udp) == 0, "the refused fd is still the caller's");
    /* A primary that connects by itself takes none. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    ov = open_volume("host-own", MR_BACKEND_AUTO, BLOCKS);
    own = start(ov, "127.0.0.1:9", MR_REPL_PRIMARY, MR_REPL_SYNC);
    CHECK_FAIL(mr_repl_add_connection(own, fds[0]), MR_STATE);
    mr_repl_free(own);
    mr_volume_free(ov);
    CHECK_FAIL(mr_repl_add_connection(NULL, fds[0]), MR_INVALID_ARGUMENT);
    CHECK(close(fds[0]) == 0 && close(fds[1]) == 0, "refused fds stay the caller's");
    mr_repl_free(p);
    mr_repl_free(s);
    mr_volume_free(pv);
    mr_volume_free(sv);
}

static void test_volume_batch_and_direct(void)
{
    static uint8_t a[BS], b[2 * BS];
    mr_volume_config cfg;
    mr_volume *v = open_volume("vbatch", MR_BACKEND_AUTO, BLOCKS), *d = NULL;
    mr_block_write w[2];
    char path[512];
    mr_status st;
    int i;
    fill(a, sizeof a, 21);
    fill(b, sizeof b, 22);
    w[0].block = 3;
    w[0].buf = a;
    w[0].len = BS;
    w[1].block = 7;
    w[1].buf = b;
    w[1].len = sizeof b;
    CHECK_ST(mr_volume_write_batch(v, w, 2), MR_OK);
    CHECK(volume_has(v, 3, a, BS) && volume_has(v, 7, b, sizeof b), "batch written");
    w[1].block = 3;
    CHECK_FAIL(mr_volume_write_batch(v, w, 2), MR_INVALID_ARGUMENT);
    mr_volume_free(v);
    /* O_DIRECT: unaligned caller buffers, batches through io_uring and pwrite. */
    for (i = 0; i < 2; i++) {
        CHECK_ST(mr_volume_config_init(&cfg), MR_OK);
        cfg.block_count = BLOCKS;
        cfg.flags = MR_VOLUME_CREATE | MR_VOLUME_DIRECT;
        cfg.backend = i == 0 ? MR_BACKEND_AUTO : MR_BACKEND_BATCH;
        path_for(path, sizeof path, i == 0 ? "direct-auto" : "direct-batch");
        st = mr_volume_open(path, &cfg, &d);
        if (st == MR_UNSUPPORTED) {
            char eb[256];
            printf("SKIP O_DIRECT volume: %s\n", last_err(eb, sizeof eb));
            return;
        }
        CHECK_ST(st, MR_OK);
        g_files++;
        w[1].block = 9;
        CHECK_ST(mr_volume_write_batch(d, w, 2), MR_OK);
        CHECK_FAIL(mr_volume_write(d, 1, b + 1, 0), MR_INVALID_ARGUMENT);
        CHECK_ST(mr_volume_write(d, 12, b + 1, BS), MR_OK); /* unaligned: bounced */
        CHECK(volume_has(d, 12, b + 1, BS), "unaligned direct write read back");
        CHECK_ST(mr_volume_flush(d), MR_OK);
        CHECK(volume_has(d, 3, a, BS) && volume_has(d, 9, b, sizeof b), "direct batch written and read back");
        mr_volume_free(d);
    }
}

static void cleanup_dir(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char path[512];
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                path_for(path, sizeof path, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(g_dir);
}

int main(int argc, char **argv)
{
    test_init(argc, argv);
    snprintf(g_dir, sizeof g_dir, "/tmp/mr-test-repl-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_volume(MR_BACKEND_BATCH);
    test_volume(MR_BACKEND_URING);
    test_pair(MR_REPL_SYNC);
    test_pair(MR_REPL_ASYNC);
    test_failover_failed();
    test_unreachable_then_resync();
    test_corrupt_peers();
    test_bad_input();
    test_auth_refusals();
    test_man_in_the_middle();
    test_durable_and_batches();
    test_host_connections();
    test_volume_batch_and_direct();
    cleanup_dir();
    return test_finish("test_repl");
}
