/*
 * repl_node: one side of a replication in its own process, for the
 * two-process fault test (kill -9) and the network-cut test.
 *
 *   repl_node secondary VOL LISTEN [PEER_TIMEOUT_MS]
 *       Prints "listening ADDR", then reads commands on stdin:
 *         failover LOG   fail over, then check every write listed in LOG
 *                        (written by a primary) is present byte-exact; exit 0 if so
 *         stop           stop replicating (DONE) and exit 0
 *   repl_node primary VOL PEER sync|async|durable LOG|- COUNT [PEER_TIMEOUT_MS [PACE_US]]
 *       Writes COUNT blocks (0 = until killed), each write's content unique
 *       (sequence number + pattern). After a write returns MR_OK and
 *       mr_repl_get_error says MR_OK, its sequence number is appended to
 *       LOG with write(2): the list of acknowledged writes. With COUNT > 0 it
 *       then waits until the secondary is in sync, checkpoints, prints its
 *       counters and stops.
 *
 *   repl_node verify VOL LOG [LINES]
 *       Checks a volume file (say, a killed node's) against the first LINES
 *       lines of LOG (all without LINES): every block holds its last
 *       acknowledged write or a later one; exit 0 if so.
 *
 * Volumes are VOLUME_BLOCKS blocks of 4 KiB. Both sides take the pre-shared
 * key from REPL_KEY (16 to 64 bytes; a fixed test key without it).
 * Addresses: loopback or the test's own network namespaces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meshring.h"

#define BS 4096u

static uint64_t g_blocks = 256;
static const char *g_key = "repl_node test key, not a secret";

static void die(const char *what, mr_status st)
{
    char err[512];
    mr_last_error(err, sizeof err);
    fprintf(stderr, "repl_node: %s: %s (%s)\n", what, mr_status_str(st), err);
    exit(2);
}

#define TRY(what, call)                                                                        \
    do {                                                                                       \
        mr_status st_ = (call);                                                                \
        if (st_ != MR_OK) {                                                                    \
            die(what, st_);                                                                    \
        }                                                                                      \
    } while (0)

static uint64_t block_of(uint64_t seq)
{
    return (seq * 2654435761u) % g_blocks;
}

/* The content of write `seq`: seq in the first 8 bytes, then a pattern. */
static void content(uint64_t seq, uint8_t *buf)
{
    uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
    size_t i;
    memcpy(buf, &seq, 8);
    for (i = 8; i < BS; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

static mr_volume *open_volume(const char *path)
{
    mr_volume_config cfg;
    mr_volume *v = NULL;
    TRY("mr_volume_config_init", mr_volume_config_init(&cfg));
    cfg.block_count = g_blocks;
    cfg.flags = MR_VOLUME_CREATE;
    TRY("mr_volume_open", mr_volume_open(path, &cfg, &v));
    return v;
}

static mr_repl *start(mr_volume *v, const char *addr, uint32_t mode, uint32_t ack, int peer_timeout_ms)
{
    mr_repl_config cfg;
    mr_repl *r = NULL;
    TRY("mr_repl_config_init", mr_repl_config_init(&cfg));
    cfg.mode = mode;
    cfg.ack = ack;
    cfg.connect_timeout_ms = 500;
    cfg.key = (const uint8_t *)g_key;
    cfg.key_len = strlen(g_key);
    if (peer_timeout_ms > 0) {
        cfg.peer_timeout_ms = peer_timeout_ms;
    }
    TRY("mr_repl_start", mr_repl_start(v, addr, &cfg, &r));
    return r;
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

/* Checks a volume (read with `fn`) against the first `max_lines` lines of
 * the log of acknowledged writes. */
static int verify(read_fn fn, void *h, const char *log_path, uint64_t max_lines)
{
    static uint8_t got[BS], want[BS];
    uint64_t *last = calloc(g_blocks, sizeof *last);
    uint64_t acked = 0, max_seq = 0, b, seq, lost = 0;
    FILE *f = fopen(log_path, "r");
    char line[64];
    if (f == NULL || last == NULL) {
        fprintf(stderr, "verify: cannot read %s\n", log_path);
        return 1;
    }
    while (acked < max_lines && fgets(line, sizeof line, f) != NULL) {
        if (strchr(line, '\n') == NULL) {
            break; /* a line cut by the kill */
        }
        seq = strtoull(line, NULL, 10);
        if (seq > last[block_of(seq)]) {
            last[block_of(seq)] = seq;
        }
        if (seq > max_seq) {
            max_seq = seq;
        }
        acked++;
    }
    fclose(f);
    for (b = 0; b < g_blocks; b++) {
        if (fn(h, b, got, BS) != MR_OK) {
            die("read for verification", MR_IO);
        }
        memcpy(&seq, got, 8);
        if (last[b] == 0 && seq == 0) {
            continue; /* never written */
        }
        /* Either the last acknowledged write of this block, or a later one that
         * was in flight (sync: one at a time) when the primary died. */
        content(seq, want);
        if (seq < last[b] || seq > max_seq + 1 || block_of(seq) != b || memcmp(got, want, BS) != 0) {
            fprintf(stderr, "verify: block %llu holds write %llu, last acknowledged write %llu\n", (unsigned long long)b,
                    (unsigned long long)seq, (unsigned long long)last[b]);
            lost++;
        }
    }
    free(last);
    printf("verified %llu acknowledged writes (last %llu) over %llu blocks: %llu lost\n", (unsigned long long)acked,
           (unsigned long long)max_seq, (unsigned long long)g_blocks, (unsigned long long)lost);
    return lost == 0 && acked > 0 ? 0 : 1;
}

static int secondary(const char *vol, const char *listen, int peer_timeout_ms)
{
    mr_volume *v = open_volume(vol);
    mr_repl *r = start(v, listen, MR_REPL_SECONDARY, MR_REPL_SYNC, peer_timeout_ms);
    mr_repl_counters c;
    mr_addr a;
    char text[MR_ADDR_TEXT_MAX], cmd[512];
    int rc = 1;
    TRY("mr_repl_local_addr", mr_repl_local_addr(r, &a));
    TRY("mr_addr_format", mr_addr_format(&a, text, sizeof text, NULL));
    printf("listening %s\n", text);
    fflush(stdout);
    while (fgets(cmd, sizeof cmd, stdin) != NULL) {
        cmd[strcspn(cmd, "\n")] = '\0';
        if (strncmp(cmd, "failover ", 9) == 0) {
            TRY("mr_repl_failover", mr_repl_failover(r));
            rc = verify(read_repl, r, cmd + 9, UINT64_MAX);
            break;
        }
        if (strcmp(cmd, "stop") == 0) {
            TRY("mr_repl_stats", mr_repl_stats(r, &c));
            TRY("mr_repl_stop", mr_repl_stop(r));
            printf("secondary: applied %llu writes over %llu connections\n", (unsigned long long)c.writes_applied,
                   (unsigned long long)c.connections);
            rc = 0;
            break;
        }
        fprintf(stderr, "repl_node: unknown command \"%s\"\n", cmd);
    }
    mr_repl_free(r);
    mr_volume_free(v);
    return rc;
}

static int primary(const char *vol, const char *peer, const char *mode, const char *log_path, uint64_t count,
                   int peer_timeout_ms, long pace_us)
{
    static uint8_t buf[BS];
    mr_volume *v = open_volume(vol);
    uint32_t ack = strcmp(mode, "sync") == 0 ? MR_REPL_SYNC : strcmp(mode, "durable") == 0 ? MR_REPL_DURABLE : MR_REPL_ASYNC;
    mr_repl *r = start(v, peer, MR_REPL_PRIMARY, ack, peer_timeout_ms);
    mr_repl_counters c;
    uint64_t seq, unacked = 0;
    char line[32];
    int log_fd = -1, n;
    struct timespec pace = {0, pace_us * 1000};
    if (strcmp(log_path, "-") != 0) {
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (log_fd < 0) {
            perror(log_path);
            return 2;
        }
    }
    TRY("wait for the secondary", mr_repl_wait_synced(r, 20000));
    (void)mr_repl_get_error(r); /* forget refused attempts from before the secondary listened */
    printf("writing\n");
    fflush(stdout);
    for (seq = 1; count == 0 || seq <= count; seq++) {
        content(seq, buf);
        TRY("mr_repl_write", mr_repl_write(r, block_of(seq), buf, BS));
        if (mr_repl_get_error(r) != MR_OK) {
            unacked++; /* applied locally, not (yet) on the secondary */
            continue;
        }
        if (log_fd >= 0) {
            n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)seq);
            if (write(log_fd, line, (size_t)n) != n) {
                perror("log");
                return 2;
            }
        }
        if (pace_us > 0) {
            nanosleep(&pace, NULL);
        }
    }
    TRY("wait until the secondary is in sync", mr_repl_wait_synced(r, 30000));
    TRY("mr_repl_checkpoint", mr_repl_checkpoint(r, 10000));
    TRY("mr_repl_stats", mr_repl_stats(r, &c));
    printf("primary: %llu writes (%llu with a replication error), %llu connections, %llu blocks resynced, %llu dirty\n",
           (unsigned long long)count, (unsigned long long)unacked, (unsigned long long)c.connections,
           (unsigned long long)c.resync_blocks, (unsigned long long)c.dirty_blocks);
    TRY("mr_repl_stop", mr_repl_stop(r));
    mr_repl_free(r);
    mr_volume_free(v);
    if (log_fd >= 0) {
        close(log_fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *blocks = getenv("VOLUME_BLOCKS");
    const char *key = getenv("REPL_KEY");
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (blocks != NULL) {
        g_blocks = strtoull(blocks, NULL, 10);
    }
    if (key != NULL) {
        g_key = key;
    }
    if (argc >= 4 && strcmp(argv[1], "verify") == 0) {
        mr_volume *v = open_volume(argv[2]);
        int rc = verify(read_volume, v, argv[3], argc > 4 ? strtoull(argv[4], NULL, 10) : UINT64_MAX);
        mr_volume_free(v);
        return rc;
    }
    if (argc >= 4 && strcmp(argv[1], "secondary") == 0) {
        return secondary(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 0);
    }
    if (argc >= 7 && strcmp(argv[1], "primary") == 0) {
        return primary(argv[2], argv[3], argv[4], argv[5], strtoull(argv[6], NULL, 10), argc > 7 ? atoi(argv[7]) : 0,
                       argc > 8 ? atol(argv[8]) : 0);
    }
    fprintf(stderr, "usage: repl_node secondary VOL LISTEN [PEER_TIMEOUT_MS]\n"
                    "       repl_node primary VOL PEER sync|async|durable LOG|- COUNT [PEER_TIMEOUT_MS [PACE_US]]\n"
                    "       repl_node verify VOL LOG [LINES]\n");
    return 2;
}
