/*
 * watch: a notify bus with a producer and live watchers, on meshring.
 *
 *   watch [--peers N] [--seconds S] [--rate R]   live: every Notify printed
 *   watch --demo                                 bounded (~4 s), sampled
 *                                                stream, summary, verification
 *
 * One producer applies an N-peer netmap (10 000 by default) and then
 * streams deltas for S seconds at about R deltas per second: peers added,
 * replaced, patched (Online / Endpoints) and removed, one MapResponse each.
 *
 * Three watchers read it at the same time:
 *   - "stream": InitialState|InitialStatus|PeerPatches, read from an event
 *     loop (poll on mr_watcher_fd, then mr_watcher_next(0) until
 *     MR_WOULD_BLOCK); prints one line per message, cut to 200 characters;
 *   - "changes": InitialStatus|PeerChanges (full nodes only), blocking reads;
 *   - "patches": InitialStatus|PeerPatches (narrow PeerChangedPatch), blocking.
 * All three add MR_NOTIFY_CHUNKED_INITIAL (a meshring extension): the
 * initial peers come in bounded PeersChanged chunks instead of one message
 * with every peer (tailscaled's way).
 * "changes" and "patches" rebuild the peer set from what they receive
 * (initial chunks until "InitialComplete": true, then PeersChanged /
 * PeersRemoved); once per second the main thread prints their message and
 * byte rates. At the end each rebuilt set is compared with the store
 * (same size, and every id found with mr_bus_peer); the exit status is 0
 * only if both match.
 */
#define _GNU_SOURCE
#include "meshring.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "watch: %s: %s\n  %s\n", what, mr_status_str(st), msg);
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- a set of NodeIDs */

typedef struct {
    int64_t *keys; /* open addressing; EMPTY / TOMB mark free slots */
    size_t cap, len, used;
} idset;

#define EMPTY INT64_MIN
#define TOMB (INT64_MIN + 1) /* real NodeIDs this close to INT64_MIN are not used here */

static uint64_t mix(int64_t k) {
    uint64_t x = (uint64_t)k * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static void idset_init(idset *s, size_t cap) {
    s->cap = cap;
    s->len = s->used = 0;
    s->keys = malloc(cap * sizeof *s->keys);
    if (!s->keys) { perror("malloc"); exit(1); }
    for (size_t i = 0; i < cap; i++) s->keys[i] = EMPTY;
}

static void idset_add(idset *s, int64_t k);

static void idset_grow(idset *s) {
    int64_t *old = s->keys;
    size_t oldcap = s->cap;
    idset_init(s, oldcap * 2);
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] != EMPTY && old[i] != TOMB) idset_add(s, old[i]);
    free(old);
}

static void idset_add(idset *s, int64_t k) {
    if ((s->used + 1) * 4 >= s->cap * 3) idset_grow(s);
    size_t i = mix(k) & (s->cap - 1), tomb = SIZE_MAX;
    for (;; i = (i + 1) & (s->cap - 1)) {
        if (s->keys[i] == k) return;
        if (s->keys[i] == TOMB && tomb == SIZE_MAX) tomb = i;
        if (s->keys[i] == EMPTY) break;
    }
    if (tomb != SIZE_MAX) i = tomb; else s->used++;
    s->keys[i] = k;
    s->len++;
}

static void idset_del(idset *s, int64_t k) {
    for (size_t i = mix(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->keys[i] == EMPTY) return;
        if (s->keys[i] == k) { s->keys[i] = TOMB; s->len--; return; }
    }
}

/* ---------------------------------------------------------------- a tiny JSON walker
 * Just enough to read the top level of a Notify: skip values, read the
 * "ID" of each PeersChanged node and the ids of PeersRemoved. */

typedef struct { const char *p, *end; } cur;

static void ws(cur *c) { while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\t' || *c->p == '\r')) c->p++; }

static void skip_string(cur *c) { /* at '"' */
    for (c->p++; c->p < c->end && *c->p != '"'; c->p++)
        if (*c->p == '\\') c->p++;
    c->p++;
}

static void skip_value(cur *c) {
    ws(c);
    if (c->p >= c->end) return;
    if (*c->p == '"') { skip_string(c); return; }
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        do {
            if (*c->p == '"') { skip_string(c); continue; }
            if (*c->p == '{' || *c->p == '[') depth++;
            else if (*c->p == '}' || *c->p == ']') depth--;
            c->p++;
        } while (c->p < c->end && depth > 0);
        return;
    }
    while (c->p < c->end && !strchr(",}] \n\t\r", *c->p)) c->p++;
}

/* At '"': does the key equal `k`? Leaves c after the ':'. */
static int key_is(cur *c, const char *k) {
    const char *start = c->p + 1;
    skip_string(c);
    size_t n = (size_t)(c->p - 1 - start);
    ws(c);
    if (c->p < c->end && *c->p == ':') c->p++;
    ws(c);
    return strlen(k) == n && memcmp(start, k, n) == 0;
}

static int64_t read_int(cur *c) {
    char buf[32];
    size_t n = 0;
    while (c->p < c->end && n < sizeof buf - 1 && strchr("-0123456789", *c->p)) buf[n++] = *c->p++;
    buf[n] = 0;
    return strtoll(buf, NULL, 10);
}

/* Iterates an array at c->p ('['), calling f for each element. */
static void each(cur *c, void (*f)(cur *, void *), void *arg) {
    ws(c);
    if (c->p >= c->end || *c->p != '[') { skip_value(c); return; }
    c->p++;
    for (;;) {
        ws(c);
        if (c->p >= c->end || *c->p == ']') { c->p++; return; }
        const char *before = c->p;
        f(c, arg);
        if (c->p == before) skip_value(c);
        ws(c);
        if (c->p < c->end && *c->p == ',') c->p++;
    }
}

static void node_upsert(cur *c, void *arg) { /* one tailcfg.Node object */
    ws(c);
    if (*c->p != '{') { skip_value(c); return; }
    c->p++;
    for (;;) {
        ws(c);
        if (c->p >= c->end || *c->p == '}') { c->p++; return; }
        if (*c->p == ',') { c->p++; continue; }
        if (key_is(c, "ID")) idset_add(arg, read_int(c));
        else skip_value(c);
    }
}

static void id_remove(cur *c, void *arg) { idset_del(arg, read_int(c)); }

/* Applies one Notify to `peers`; returns 1 if it carried "InitialComplete": true. */
static int apply_notify(idset *peers, const uint8_t *json, size_t len) {
    cur c = {(const char *)json, (const char *)json + len};
    int complete = 0;
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return 0;
    c.p++;
    for (;;) {
        ws(&c);
        if (c.p >= c.end || *c.p == '}') break;
        if (*c.p == ',') { c.p++; continue; }
        if (*c.p != '"') break;
        const char *k = c.p;
        if (key_is(&c, "PeersChanged")) each(&c, node_upsert, peers);
        else if ((c.p = k, key_is(&c, "PeersRemoved"))) each(&c, id_remove, peers);
        else if ((c.p = k, key_is(&c, "InitialComplete"))) { complete = *c.p == 't'; skip_value(&c); }
        else skip_value(&c);
    }
    return complete;
}

/* ---------------------------------------------------------------- watchers */

typedef struct {
    const char *name;
    uint64_t mask;
    mr_watcher *w;
    pthread_t thread;
    pthread_mutex_t mu;
    idset peers;           /* guarded by mu */
    int initial_complete;  /* guarded by mu */
    uint64_t msgs, bytes;  /* guarded by mu */
    uint64_t tick_msgs, tick_bytes;
    double initial_done_at;
    mr_status end;
} counter;

static void *counter_main(void *arg) {
    counter *k = arg;
    mr_bytes m = {NULL, 0};
    for (;;) {
        mr_status st = mr_watcher_next(k->w, -1, &m); /* mr_watcher_close ends it */
        if (st != MR_OK) { k->end = st; return NULL; }
        pthread_mutex_lock(&k->mu);
        if (apply_notify(&k->peers, m.ptr, m.len) && !k->initial_complete) {
            k->initial_complete = 1;
            k->initial_done_at = now_s();
        }
        k->msgs++;
        k->bytes += m.len;
        pthread_mutex_unlock(&k->mu);
        mr_bytes_free(&m);
    }
}

typedef struct {
    mr_watcher *w;
    int sample;        /* 0: print every message; else the first 6, then one per second */
    uint64_t msgs, bytes, printed;
    mr_status end;
} streamer;

static void print_line(uint64_t n, const mr_bytes *m) {
    int cut = m->len > 200 ? 200 : (int)m->len;
    printf("  [stream #%" PRIu64 ", %zu B] %.*s%s\n", n, m->len, cut, (const char *)m->ptr,
           m->len > 200 ? " ..." : "");
}

/* An event-loop reader: poll the readiness fd, then drain with timeout 0. */
static void *stream_main(void *arg) {
    streamer *s = arg;
    struct pollfd pfd = {.fd = mr_watcher_fd(s->w), .events = POLLIN};
    double next_print = 0;
    mr_bytes m = {NULL, 0};
    for (;;) {
        if (poll(&pfd, 1, -1) < 0) continue;
        for (;;) {
            mr_status st = mr_watcher_next(s->w, 0, &m);
            if (st == MR_WOULD_BLOCK) break;
            if (st != MR_OK) { s->end = st; return NULL; } /* MR_CLOSED: the fd stays readable */
            s->msgs++;
            s->bytes += m.len;
            double t = now_s();
            if (!s->sample || s->msgs <= 6 || t >= next_print) {
                print_line(s->msgs, &m);
                s->printed++;
                if (s->sample && s->msgs > 6) next_print = t + 1.0;
                if (s->sample && s->msgs == 6) { printf("  [stream: from here on one sampled line per second]\n"); next_print = t + 1.0; }
            }
            mr_bytes_free(&m);
        }
    }
}

/* ---------------------------------------------------------------- producer */

typedef struct {
    mr_bus *bus;
    int peers, rate;
    double seconds;
    unsigned char *alive; /* by id; ids 1..max_id */
    int64_t max_id, next_id;
    uint64_t deltas, adds, replaces, patches, removals, applied_bytes;
    double build_s, stream_s;
} producer;

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void apply(producer *p, const char *json, size_t len) {
    mr_status st = mr_bus_apply(p->bus, (const uint8_t *)json, len);
    if (st != MR_OK) fail("mr_bus_apply", st);
    p->applied_bytes += len;
}

static int node_json(char *buf, size_t cap, int64_t id, int version) {
    return snprintf(buf, cap,
                    "{\"ID\":%" PRId64 ",\"StableID\":\"n%" PRId64 "\",\"Name\":\"host-%" PRId64 ".example.ts.net.\","
                    "\"User\":%d,\"Key\":\"nodekey:%016" PRIx64 "\",\"Addresses\":[\"100.64.%d.%d/32\"],"
                    "\"Endpoints\":[\"198.51.100.%d:41641\"],\"HomeDERP\":%d,\"Online\":true,\"V\":%d}",
                    id, id, id, (int)(id % 16), (uint64_t)((uint64_t)id * UINT64_C(0x9E3779B97F4A7C15)),
                    (int)(id / 256 % 256), (int)(id % 256), (int)(id % 250 + 1), (int)(id % 20 + 1), version);
}

static void build_netmap(producer *p) {
    size_t cap = (size_t)p->peers * 400 + 4096, n = 0;
    char *j = malloc(cap);
    if (!j) { perror("malloc"); exit(1); }
    n += (size_t)snprintf(j + n, cap - n, "{\"Node\":{\"ID\":1,\"Name\":\"self.example.ts.net.\",\"User\":0},"
                                           "\"Domain\":\"example.ts.net\",\"UserProfiles\":[");
    for (int u = 0; u < 16; u++)
        n += (size_t)snprintf(j + n, cap - n, "%s{\"ID\":%d,\"LoginName\":\"user%d@example.com\",\"DisplayName\":\"User %d\"}",
                              u ? "," : "", u, u, u);
    n += (size_t)snprintf(j + n, cap - n, "],\"Peers\":[");
    for (int i = 0; i < p->peers; i++) {
        int64_t id = 2 + i;
        if (i) j[n++] = ',';
        n += (size_t)node_json(j + n, cap - n, id, 0);
        p->alive[id] = 1;
    }
    n += (size_t)snprintf(j + n, cap - n, "]}");
    p->next_id = 2 + p->peers;
    double t0 = now_s();
    apply(p, j, n);
    p->build_s = now_s() - t0;
    free(j);
}

static int64_t random_alive(producer *p) {
    for (int tries = 0; tries < 64; tries++) {
        int64_t id = 2 + (int64_t)(rnd() % (uint64_t)(p->next_id - 2));
        if (p->alive[id]) return id;
    }
    return 0;
}

/* One delta = one MapResponse: 30% add, 20% replace, 30% patch, 20% remove. */
static void one_delta(producer *p) {
    char buf[1024];
    int n;
    unsigned r = (unsigned)(rnd() % 100);
    int64_t id = r < 30 || p->next_id >= p->max_id ? 0 : random_alive(p);
    if (r < 30 && p->next_id < p->max_id) {
        char node[512];
        id = p->next_id++;
        node_json(node, sizeof node, id, 1);
        n = snprintf(buf, sizeof buf, "{\"PeersChanged\":[%s]}", node);
        p->alive[id] = 1;
        p->adds++;
    } else if (id == 0) {
        return;
    } else if (r < 50) {
        char node[512];
        node_json(node, sizeof node, id, (int)(rnd() % 1000) + 2);
        n = snprintf(buf, sizeof buf, "{\"PeersChanged\":[%s]}", node);
        p->replaces++;
    } else if (r < 80) {
        if (rnd() % 2)
            n = snprintf(buf, sizeof buf, "{\"PeersChangedPatch\":[{\"NodeID\":%" PRId64 ",\"Online\":%s}]}", id,
                         rnd() % 2 ? "true" : "false");
        else
            n = snprintf(buf, sizeof buf, "{\"PeersChangedPatch\":[{\"NodeID\":%" PRId64 ",\"Endpoints\":[\"203.0.113.%d:%d\"]}]}",
                         id, (int)(rnd() % 250 + 1), (int)(rnd() % 60000 + 1024));
        p->patches++;
    } else {
        n = snprintf(buf, sizeof buf, "{\"PeersRemoved\":[%" PRId64 "]}", id);
        p->alive[id] = 0;
        p->removals++;
    }
    apply(p, buf, (size_t)n);
    p->deltas++;
}

static long store_peer_count(mr_bus *bus) {
    mr_bytes s = {NULL, 0};
    long n = -1;
    mr_status st = mr_bus_stats(bus, &s);
    if (st != MR_OK) fail("mr_bus_status", st);
    const char *k = memmem(s.ptr, s.len, "\"PeerCount\":", 12);
    if (k) n = strtol(k + 12, NULL, 10);
    mr_bytes_free(&s);
    return n;
}

/* Every id of the rebuilt set must be in the store (sizes are compared too). */
static long missing_in_store(mr_bus *bus, idset *s) {
    long missing = 0;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->keys[i] == EMPTY || s->keys[i] == TOMB) continue;
        mr_bytes m = {NULL, 0};
        mr_status st = mr_bus_peer(bus, s->keys[i], &m);
        if (st == MR_NOT_FOUND) missing++;
        else if (st != MR_OK) fail("mr_bus_peer", st);
        mr_bytes_free(&m);
    }
    return missing;
}

static void usage(void) {
    fprintf(stderr, "usage: watch [--demo] [--peers N] [--seconds S] [--rate DELTAS_PER_S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    producer p;
    memset(&p, 0, sizeof p);
    p.peers = 10000;
    p.seconds = 3.0;
    p.rate = 20000;
    int demo = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--demo")) demo = 1;
        else if (!strcmp(argv[i], "--peers") && i + 1 < argc) p.peers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) p.seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) p.rate = atoi(argv[++i]);
        else usage();
    }
    if (p.peers < 1 || p.seconds <= 0 || p.rate < 1) usage();
    mr_log_init(NULL);

    mr_status st = mr_bus_new("{\"initial_chunk\":1000}", &p.bus);
    if (st != MR_OK) fail("mr_bus_new", st);
    p.max_id = 2 + p.peers + (int64_t)(p.seconds * p.rate) + 16;
    p.alive = calloc((size_t)p.max_id + 1, 1);
    if (!p.alive) { perror("calloc"); return 1; }

    printf("watch: notify bus demo, %d-peer netmap, then ~%d deltas/s for %.1f s\n", p.peers, p.rate, p.seconds);
    build_netmap(&p);
    printf("netmap applied: %d peers (%.1f MB of MapResponse JSON) in %.0f ms\n", p.peers,
           p.applied_bytes / 1e6, p.build_s * 1e3);

    /* Watchers start after the netmap, so each gets the chunked initial view first. */
    streamer s;
    memset(&s, 0, sizeof s);
    s.sample = demo;
    st = mr_bus_watch(p.bus, MR_NOTIFY_INITIAL_STATE | MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_PATCHES | MR_NOTIFY_CHUNKED_INITIAL, &s.w);
    if (st != MR_OK) fail("mr_bus_watch(stream)", st);
    counter k[2];
    memset(k, 0, sizeof k);
    k[0].name = "changes";
    k[0].mask = MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_CHANGES | MR_NOTIFY_CHUNKED_INITIAL;
    k[1].name = "patches";
    k[1].mask = MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_PATCHES | MR_NOTIFY_CHUNKED_INITIAL;
    double t_watch = now_s();
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&k[i].mu, NULL);
        idset_init(&k[i].peers, 1024);
        st = mr_bus_watch(p.bus, k[i].mask, &k[i].w);
        if (st != MR_OK) fail("mr_bus_watch", st);
        pthread_create(&k[i].thread, NULL, counter_main, &k[i]);
    }
    pthread_t st_thread;
    pthread_create(&st_thread, NULL, stream_main, &s);

    /* Producer on this thread: paced bursts every 10 ms; rates printed each second. */
    double t0 = now_s(), next_report = t0 + 1.0;
    uint64_t done = 0, last_deltas = 0;
    int second = 0;
    printf("streaming deltas (PeersChanged adds/replaces, PeersChangedPatch, PeersRemoved):\n");
    while (now_s() - t0 < p.seconds) {
        uint64_t due = (uint64_t)((now_s() - t0) * p.rate);
        while (done < due) { one_delta(&p); done++; }
        double t = now_s();
        if (t >= next_report) {
            second++;
            printf("  t=%ds  deltas %6" PRIu64 "/s |", second, p.deltas - last_deltas);
            last_deltas = p.deltas;
            for (int i = 0; i < 2; i++) {
                pthread_mutex_lock(&k[i].mu);
                uint64_t dm = k[i].msgs - k[i].tick_msgs, db = k[i].bytes - k[i].tick_bytes;
                k[i].tick_msgs = k[i].msgs;
                k[i].tick_bytes = k[i].bytes;
                size_t have = k[i].peers.len;
                pthread_mutex_unlock(&k[i].mu);
                printf("  %s: %6" PRIu64 " msg/s %8.1f KB/s (%zu peers)", k[i].name, dm, db / 1e3, have);
            }
            printf("\n");
            fflush(stdout);
            next_report += 1.0;
        }
        sleep_s(0.01);
    }
    p.stream_s = now_s() - t0;

    /* Let the readers catch up with the store, then close them from here. */
    long want = store_peer_count(p.bus);
    double deadline = now_s() + 3.0;
    for (;;) {
        int caught = 1;
        for (int i = 0; i < 2; i++) {
            pthread_mutex_lock(&k[i].mu);
            caught &= (long)k[i].peers.len == want;
            pthread_mutex_unlock(&k[i].mu);
        }
        if (caught || now_s() > deadline) break;
        sleep_s(0.005);
    }
    sleep_s(0.05); /* the stream reader too */
    for (int i = 0; i < 2; i++) mr_watcher_close(k[i].w);
    mr_watcher_close(s.w);
    for (int i = 0; i < 2; i++) pthread_join(k[i].thread, NULL);
    pthread_join(st_thread, NULL);

    printf("\nsummary\n");
    printf("  store: %ld peers (started with %d); %" PRIu64 " deltas in %.2f s "
           "(%" PRIu64 " adds, %" PRIu64 " replaces, %" PRIu64 " patches, %" PRIu64 " removals)\n",
           want, p.peers, p.deltas, p.stream_s, p.adds, p.replaces, p.patches, p.removals);
    printf("  %-8s %-40s %9s %11s %9s %12s %s\n", "watcher", "mask", "messages", "bytes", "peers", "initial view", "check");
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        long missing = missing_in_store(p.bus, &k[i].peers);
        int match = (long)k[i].peers.len == want && missing == 0 && k[i].initial_complete && k[i].end == MR_CLOSED;
        ok &= match;
        char init[32];
        if (k[i].initial_complete) snprintf(init, sizeof init, "%.0f ms", (k[i].initial_done_at - t_watch) * 1e3);
        else snprintf(init, sizeof init, "incomplete");
        printf("  %-8s %-40s %9" PRIu64 " %11" PRIu64 " %9zu %12s %s\n", k[i].name,
               i == 0 ? "InitialStatus|PeerChanges" : "InitialStatus|PeerPatches", k[i].msgs, k[i].bytes,
               k[i].peers.len, init,
               match ? "OK (= store)" : "MISMATCH");
        if (!match)
            printf("    %s: %zu peers vs store %ld, %ld not in the store, initial %s, ended with %s\n", k[i].name,
                   k[i].peers.len, want, missing, k[i].initial_complete ? "complete" : "INCOMPLETE", mr_status_str(k[i].end));
    }
    printf("  %-8s %-40s %9" PRIu64 " %11" PRIu64 " %9s %12s %s (%" PRIu64 " lines printed)\n", "stream",
           "InitialState|InitialStatus|PeerPatches", s.msgs, s.bytes, "-", "-",
           s.end == MR_CLOSED ? "closed OK" : "BAD END", s.printed);
    ok &= s.end == MR_CLOSED;
    if (k[0].bytes && k[1].bytes)
        printf("  PeerPatches received %.2fx the bytes of PeerChanges (narrow patches instead of whole nodes)\n",
               (double)k[1].bytes / (double)k[0].bytes);
    printf("%s\n", ok ? "watch: OK: every watcher's rebuilt peer set equals the store"
                      : "watch: FAILED: a watcher does not match the store");

    for (int i = 0; i < 2; i++) {
        mr_watcher_free(k[i].w);
        free(k[i].peers.keys);
        pthread_mutex_destroy(&k[i].mu);
    }
    mr_watcher_free(s.w);
    mr_bus_free(p.bus);
    free(p.alive);
    return ok ? 0 : 1;
}
