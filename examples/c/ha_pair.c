/*
 * ha_pair: an HA pair's state volume replicated on loopback.
 *
 * A primary and a secondary (two mr_repl handles over two volume files in
 * a temporary directory) replicate a small "state" volume: the primary
 * writes records (sync: each returns once the secondary has it), takes a
 * checkpoint, the secondary runs speculatively (its own write goes to its
 * active layer), the primary writes more, then the primary "dies" and the
 * secondary fails over and checks that it holds every record the primary
 * wrote, plus its own write.
 *
 *   ha_pair            run the demo (exit status 0 when everything matched)
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meshring.h"

#define BLOCK 4096u
#define BLOCKS 64u

static int fail(const char *what, mr_status st)
{
    char err[256];
    mr_last_error(err, sizeof err);
    fprintf(stderr, "ha_pair: %s: %s (%s)\n", what, mr_status_str(st), err);
    return 1;
}

#define TRY(what, call)                                                                        \
    do {                                                                                       \
        mr_status st_ = (call);                                                                \
        if (st_ != MR_OK) {                                                                    \
            return fail(what, st_);                                                            \
        }                                                                                      \
    } while (0)

/* One record per block: "lease <n> generation <g>" padded with zeros. */
static void record(uint8_t *block, unsigned n, unsigned generation)
{
    memset(block, 0, BLOCK);
    snprintf((char *)block, BLOCK, "lease %u generation %u", n, generation);
}

static int open_volume(const char *dir, const char *name, mr_volume **out)
{
    mr_volume_config cfg;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    TRY("mr_volume_config_init", mr_volume_config_init(&cfg));
    cfg.block_count = BLOCKS;
    cfg.flags = MR_VOLUME_CREATE;
    TRY("mr_volume_open", mr_volume_open(path, &cfg, out));
    return 0;
}

/* `len` random bytes from the kernel, for the pre-shared key. */
static int random_key(uint8_t *key, size_t len)
{
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f != NULL ? fread(key, 1, len, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    if (got != len) {
        fprintf(stderr, "ha_pair: cannot read /dev/urandom for the key\n");
        return 1;
    }
    return 0;
}

static const char *stage_name(mr_repl *r)
{
    static const char *names[] = {"NONE", "RUNNING", "FAILOVER", "FAILOVER_FAILED", "DONE"};
    mr_repl_stage st;
    return mr_repl_get_stage(r, &st) == MR_OK && (unsigned)st < 5 ? names[st] : "?";
}

static int run(const char *dir)
{
    static uint8_t block[BLOCK], got[BLOCK];
    mr_volume *pv = NULL, *sv = NULL;
    mr_repl *primary = NULL, *secondary = NULL;
    mr_repl_config cfg;
    mr_repl_counters c;
    mr_addr addr;
    char text[MR_ADDR_TEXT_MAX];
    unsigned i, bad = 0;
    uint8_t key[32];

    if (open_volume(dir, "primary.vol", &pv) || open_volume(dir, "secondary.vol", &sv)) {
        return 1;
    }
    printf("volumes: %u blocks of %u bytes (%s I/O)\n", (unsigned)mr_volume_block_count(pv),
           (unsigned)mr_volume_block_size(pv), mr_volume_backend(pv) == MR_BACKEND_URING ? "io_uring" : "pread/pwrite");

    /* Both sides hold the same pre-shared key; here both live in this process. */
    if (random_key(key, sizeof key) != 0) {
        return 1;
    }
    TRY("mr_repl_config_init", mr_repl_config_init(&cfg));
    cfg.key = key;
    cfg.key_len = sizeof key;
    cfg.mode = MR_REPL_SECONDARY;
    TRY("start secondary", mr_repl_start(sv, "127.0.0.1:0", &cfg, &secondary));
    TRY("mr_repl_local_addr", mr_repl_local_addr(secondary, &addr));
    TRY("mr_addr_format", mr_addr_format(&addr, text, sizeof text, NULL));
    cfg.mode = MR_REPL_PRIMARY;
    cfg.ack = MR_REPL_SYNC;
    TRY("start primary", mr_repl_start(pv, text, &cfg, &primary));
    TRY("wait for the secondary", mr_repl_wait_synced(primary, 5000));
    printf("secondary listening on %s; primary connected (sync writes)\n", text);

    for (i = 0; i < 16; i++) {
        record(block, i, 1);
        TRY("primary write", mr_repl_write(primary, i, block, BLOCK));
    }
    TRY("get_error", mr_repl_get_error(primary));
    TRY("checkpoint", mr_repl_checkpoint(primary, 5000));
    printf("primary wrote leases 0..15 and checkpointed\n");

    /* The secondary runs speculatively: its own write stays in its active layer. */
    record(block, 40, 7);
    TRY("secondary write", mr_repl_write(secondary, 40, block, BLOCK));
    for (i = 0; i < 8; i++) {
        record(block, i, 2);
        TRY("primary write", mr_repl_write(primary, i, block, BLOCK));
    }
    TRY("get_error", mr_repl_get_error(primary));
    TRY("secondary stats", mr_repl_stats(secondary, &c));
    printf("primary rewrote leases 0..7; secondary layers: active %llu block(s), hidden %llu block(s)\n",
           (unsigned long long)c.active_blocks, (unsigned long long)c.hidden_blocks);
    TRY("secondary read", mr_repl_read(secondary, 0, got, BLOCK));
    printf("secondary's speculative view of block 0: \"%s\" (as of the checkpoint)\n", (char *)got);

    /* The primary dies; the secondary takes over. */
    mr_repl_free(primary);
    primary = NULL;
    printf("primary gone; secondary fails over\n");
    TRY("failover", mr_repl_failover(secondary));
    printf("secondary stage: %s\n", stage_name(secondary));

    for (i = 0; i < 16; i++) {
        record(block, i, i < 8 ? 2 : 1);
        TRY("read", mr_repl_read(secondary, i, got, BLOCK));
        if (memcmp(block, got, BLOCK) != 0) {
            fprintf(stderr, "block %u: have \"%s\", want \"%s\"\n", i, (char *)got, (char *)block);
            bad++;
        }
    }
    record(block, 40, 7);
    TRY("read", mr_repl_read(secondary, 40, got, BLOCK));
    if (memcmp(block, got, BLOCK) != 0) {
        fprintf(stderr, "block 40: the secondary's own write was not committed\n");
        bad++;
    }
    printf("after failover: %s (16 primary records + 1 own record checked)\n", bad == 0 ? "all present, byte-exact" : "MISMATCH");
    mr_repl_free(secondary);
    mr_volume_free(pv);
    mr_volume_free(sv);
    return bad == 0 ? 0 : 1;
}

int main(void)
{
    char dir[] = "/tmp/mr-ha-pair-XXXXXX";
    char path[512];
    int rc;
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    rc = run(dir);
    snprintf(path, sizeof path, "%s/primary.vol", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/secondary.vol", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}
