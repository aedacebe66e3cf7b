/*
 * Snapshot cache microbenchmark: the pure cost of the Rust cache as seen
 * from C (no gRPC, no protobuf). For N nodes (1k, 10k): every node has the
 * same snapshot v1 (one type of 16 endpoint resources of 256 bytes, plus a
 * cluster) and one parked SOTW watch on the endpoint type (version v1 and
 * the returned state of an earlier response, so it waits). Then a snapshot
 * v2 that changes one endpoint resource is set for every node, and every
 * watch's response is taken (mr_cache_watch_next, which encodes it).
 * Reported: time in SetSnapshot (which evaluates and answers the watches),
 * time to take every response, total, and responses/s. Median of REPS.
 *
 * Usage: bench/bin/cache_bench [reps]   (default 5)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meshring.h"

#define T_EP "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#define T_CL "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define NRES 16
#define RES_BYTES 256

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, mr_status st)
{
    char msg[256];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "cache_bench: %s: %s (%s)\n", what, mr_status_str(st), msg);
    exit(1);
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        mr_status st_ = (expr);                                                                    \
        if (st_ != MR_OK) {                                                                        \
            die(#expr, st_);                                                                       \
        }                                                                                          \
    } while (0)

static mr_snapshot *make_snapshot(const char *version, int variant)
{
    mr_snapshot *s;
    uint8_t body[RES_BYTES];
    char name[32];
    int i;
    TRY(mr_snapshot_new(version, &s));
    for (i = 0; i < NRES; i++) {
        memset(body, 'a' + i, sizeof body);
        if (i == 0) {
            body[0] = (uint8_t)variant; /* the one resource that changes */
        }
        snprintf(name, sizeof name, "cla-%02d", i);
        TRY(mr_snapshot_add_resource(s, T_EP, name, body, sizeof body, 0));
    }
    TRY(mr_snapshot_add_resource(s, T_CL, "cluster-0", body, 64, 0));
    return s;
}

/* The next state of a SOTW response (see mr_cache_watch_next's encoding). */
struct state {
    size_t n;
    char *names[NRES];
    char *versions[NRES];
};

static uint32_t rd_u32(const uint8_t **p)
{
    uint32_t v = (uint32_t)(*p)[0] | (uint32_t)(*p)[1] << 8 | (uint32_t)(*p)[2] << 16 | (uint32_t)(*p)[3] << 24;
    *p += 4;
    return v;
}

static char *rd_str(const uint8_t **p)
{
    uint32_t n = rd_u32(p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n;
    return s;
}

static void skip_str(const uint8_t **p)
{
    uint32_t n = rd_u32(p);
    *p += n;
}

/* Skips a response up to its next state; returns the resource count. */
static uint32_t skip_to_next_state(const uint8_t **p)
{
    uint32_t i, n, sent;
    *p += 8;
    skip_str(p); /* version */
    skip_str(p); /* type URL */
    sent = n = rd_u32(p);
    for (i = 0; i < n; i++) {
        skip_str(p); /* name */
        skip_str(p); /* version */
        *p += 8;     /* ttl */
        skip_str(p); /* bytes */
    }
    n = rd_u32(p);
    for (i = 0; i < n; i++) {
        skip_str(p); /* removed */
    }
    return sent;
}

static void parse_state(const mr_bytes *m, struct state *st)
{
    const uint8_t *p = m->ptr;
    uint32_t i, n;
    skip_to_next_state(&p);
    n = rd_u32(&p);
    if (n > NRES) {
        fprintf(stderr, "cache_bench: unexpected next state of %u entries\n", n);
        exit(1);
    }
    st->n = n;
    for (i = 0; i < n; i++) {
        st->names[i] = rd_str(&p);
        st->versions[i] = rd_str(&p);
    }
}

struct result {
    double set_ms, take_ms, total_ms;
    size_t bytes;
};

static void run(int nodes, int own, struct result *r)
{
    mr_snapshot **own_snaps = NULL;
    mr_cache *c;
    mr_snapshot *s1 = make_snapshot("v1", 1), *s2 = make_snapshot("v2", 2);
    mr_cache_watch_h **w = calloc((size_t)nodes, sizeof *w);
    char (*keys)[24] = malloc((size_t)nodes * sizeof *keys);
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct state st;
    double t0, t1, t2;
    int i;
    size_t k;

    TRY(mr_cache_new(NULL, &c));
    for (i = 0; i < nodes; i++) {
        snprintf(keys[i], sizeof keys[i], "node-%d", i);
        TRY(mr_cache_set_snapshot(c, keys[i], s1));
    }
    /* One answered watch gives the returned state every stream would hold. */
    TRY(mr_watch_request_init(&req));
    req.node = keys[0];
    req.type_url = T_EP;
    TRY(mr_cache_watch(c, &req, &w[0]));
    TRY(mr_cache_watch_next(w[0], -1, &m));
    parse_state(&m, &st);
    mr_bytes_free(&m);
    mr_cache_watch_free(w[0]);

    req.version_info = "v1";
    req.known_names = (const char *const *)st.names;
    req.known_versions = (const char *const *)st.versions;
    req.n_known = st.n;
    for (i = 0; i < nodes; i++) {
        req.node = keys[i];
        TRY(mr_cache_watch(c, &req, &w[i]));
        if (mr_cache_watch_next(w[i], 0, &m) != MR_WOULD_BLOCK) {
            fprintf(stderr, "cache_bench: watch %d was not parked\n", i);
            exit(1);
        }
    }

    r->bytes = 0;
    if (own) {
        own_snaps = calloc((size_t)nodes, sizeof *own_snaps);
        for (i = 0; i < nodes; i++) {
            own_snaps[i] = make_snapshot("v2", 2);
        }
    }
    t0 = now_ms();
    for (i = 0; i < nodes; i++) {
        TRY(mr_cache_set_snapshot(c, keys[i], own ? own_snaps[i] : s2));
    }
    t1 = now_ms();
    for (i = 0; i < nodes; i++) {
        TRY(mr_cache_watch_next(w[i], -1, &m));
        r->bytes += m.len;
        mr_bytes_free(&m);
    }
    t2 = now_ms();
    r->set_ms = t1 - t0;
    r->take_ms = t2 - t1;
    r->total_ms = t2 - t0;

    for (i = 0; i < nodes; i++) {
        mr_cache_watch_free(w[i]);
    }
    mr_cache_free(c);
    mr_snapshot_free(s1);
    mr_snapshot_free(s2);
    if (own_snaps != NULL) {
        for (i = 0; i < nodes; i++) {
            mr_snapshot_free(own_snaps[i]);
        }
        free(own_snaps);
    }
    for (k = 0; k < st.n; k++) {
        free(st.names[k]);
        free(st.versions[k]);
    }
    free(keys);
    free(w);
}

/* ---- delta: cost of one changed resource vs the type's size ---------- */

struct dstate {
    size_t n;
    char **names, **versions;
};

static void dstate_free(struct dstate *d)
{
    size_t i;
    for (i = 0; i < d->n; i++) {
        free(d->names[i]);
        free(d->versions[i]);
    }
    free(d->names);
    free(d->versions);
    d->n = 0;
}

/* The next state of a delta response; returns the number of resources sent. */
static uint32_t parse_delta(const mr_bytes *m, struct dstate *d)
{
    const uint8_t *p = m->ptr;
    uint32_t i, n, sent = skip_to_next_state(&p);
    n = rd_u32(&p);
    dstate_free(d);
    d->names = malloc(n * sizeof *d->names);
    d->versions = malloc(n * sizeof *d->versions);
    for (i = 0; i < n; i++) {
        d->names[i] = rd_str(&p);
        d->versions[i] = rd_str(&p);
    }
    d->n = n;
    return sent;
}

/* The number of resources a response carries. */
static uint32_t sent_of(const mr_bytes *m)
{
    const uint8_t *p = m->ptr;
    return skip_to_next_state(&p);
}

struct dresult {
    double open_us, set_us, take_us;
    size_t bytes;
    uint32_t sent;
};

/* One node, one wildcard delta watch, a type of `nres` resources; each
 * update replaces one resource through mr_cache_get_snapshot +
 * remove/add (the rest stay shared) and bumps the version. Times per
 * update: reopening the watch with the stream's state (nres entries),
 * SetSnapshot (answers it), taking the encoded response. */
static void run_delta(int nres, int updates, int kept, struct dresult *r)
{
    mr_cache_watch_h *prev = NULL;
    mr_cache *c;
    mr_snapshot *s;
    mr_cache_watch_h *w;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct dstate st = {0, NULL, NULL};
    uint8_t body[64];
    char name[32], version[32];
    double t0, t1, t2, t3;
    int i, u;

    TRY(mr_cache_new(NULL, &c));
    TRY(mr_snapshot_new("v0", &s));
    for (i = 0; i < nres; i++) {
        memset(body, 'a' + i % 26, sizeof body);
        snprintf(name, sizeof name, "r%05d", i);
        TRY(mr_snapshot_add_resource(s, T_EP, name, body, sizeof body, 0));
    }
    TRY(mr_cache_set_snapshot(c, "d", s));
    mr_snapshot_free(s);
    TRY(mr_watch_request_init(&req));
    req.node = "d";
    req.type_url = T_EP;
    req.flags = MR_WATCH_WILDCARD | MR_WATCH_FIRST;
    TRY(mr_cache_delta_watch(c, &req, &w));
    TRY(mr_cache_watch_next(w, -1, &m));
    parse_delta(&m, &st);
    mr_bytes_free(&m);
    if (kept) {
        prev = w; /* the stream continues after it */
    } else {
        mr_cache_watch_free(w);
    }
    req.flags = MR_WATCH_WILDCARD;

    memset(r, 0, sizeof *r);
    for (u = 1; u <= updates; u++) {
        req.known_names = (const char *const *)st.names;
        req.known_versions = (const char *const *)st.versions;
        req.n_known = st.n;
        t0 = now_ms();
        if (kept) {
            req.known_names = NULL;
            req.known_versions = NULL;
            req.n_known = 0;
            TRY(mr_cache_delta_watch_after(c, prev, &req, &w));
        } else {
            TRY(mr_cache_delta_watch(c, &req, &w));
        }
        t1 = now_ms();
        if (mr_cache_watch_next(w, 0, &m) != MR_WOULD_BLOCK) {
            fprintf(stderr, "cache_bench: delta watch was not parked\n");
            exit(1);
        }
        TRY(mr_cache_get_snapshot(c, "d", &s));
        TRY(mr_snapshot_remove_resource(s, T_EP, "r00000"));
        memset(body, 'A' + u % 26, sizeof body);
        body[1] = (uint8_t)u;
        TRY(mr_snapshot_add_resource(s, T_EP, "r00000", body, sizeof body, 0));
        snprintf(version, sizeof version, "v%d", u);
        TRY(mr_snapshot_set_version(s, T_EP, version));
        TRY(mr_cache_set_snapshot(c, "d", s));
        t2 = now_ms();
        TRY(mr_cache_watch_next(w, -1, &m));
        t3 = now_ms();
        mr_snapshot_free(s);
        r->open_us += (t1 - t0) * 1000.0;
        r->set_us += (t2 - t1) * 1000.0;
        r->take_us += (t3 - t2) * 1000.0;
        r->bytes += m.len;
        if (kept) {
            r->sent += sent_of(&m);
            mr_cache_watch_free(prev);
            prev = w;
        } else {
            r->sent += parse_delta(&m, &st);
            mr_cache_watch_free(w);
        }
        mr_bytes_free(&m);
    }
    mr_cache_watch_free(prev);
    r->open_us /= updates;
    r->set_us /= updates;
    r->take_us /= updates;
    r->bytes /= (size_t)updates;
    r->sent /= (uint32_t)updates;
    dstate_free(&st);
    mr_cache_free(c);
}

static void delta_table(void)
{
    static const int sizes[] = {100, 1000, 10000};
    size_t s;
    int kept;
    for (kept = 0; kept < 2; kept++) {
        if (kept) {
            printf("\nSame, the stream's state kept in the library: each watch opened with mr_cache_delta_watch_after\n"
                   "(no versions passed in, none encoded out)\n");
        } else {
            printf("\ndelta: 1 node, 1 wildcard delta watch, one of N resources replaced per update (copy-on-write edit of the\n"
                   "node's snapshot), mean of 200 updates; open = reopening the watch with the stream's N-entry state\n");
        }
        printf("%8s %9s %10s %10s %12s %11s %12s\n", "N", "sent", "open us", "set us", "take us", "total us", "resp bytes");
        for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            struct dresult r;
            run_delta(sizes[s], 200, kept, &r);
            printf("%8d %9u %10.1f %10.1f %12.1f %11.1f %12zu\n", sizes[s], r.sent, r.open_us, r.set_us, r.take_us,
                   r.open_us + r.set_us + r.take_us, r.bytes);
        }
    }
}

static int by_total(const void *a, const void *b)
{
    double x = ((const struct result *)a)->total_ms, y = ((const struct result *)b)->total_ms;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const int sizes[] = {1000, 10000};
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    size_t s;
    if (reps < 1 || reps > 100) {
        reps = 5;
    }
    int own;
    for (own = getenv("CACHE_BENCH_OWN_ONLY") ? 1 : 0; own < 2; own++) {
        if (own) {
            printf("\nSame, but every node gets its own snapshot object (equal content): nothing is shared\n");
        } else {
            printf("snapshot cache from C: N nodes x 1 parked SOTW watch, SetSnapshot changing 1 of %d resources of "
                   "one type for every node (one snapshot for all; median of %d)\n",
                   NRES, reps);
        }
        printf("%8s %9s %13s %13s %11s %12s %14s %11s\n", "nodes", "watches", "set_snap ms", "take ms", "total ms",
               "us/response", "responses/s", "resp bytes");
        for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            struct result rs[100], med;
            int i;
            for (i = 0; i < reps; i++) {
                run(sizes[s], own, &rs[i]);
            }
            qsort(rs, (size_t)reps, sizeof rs[0], by_total);
            med = rs[reps / 2];
            printf("%8d %9d %13.2f %13.2f %11.2f %12.2f %14.0f %11zu\n", sizes[s], sizes[s], med.set_ms, med.take_ms,
                   med.total_ms, med.total_ms * 1000.0 / sizes[s], sizes[s] / (med.total_ms / 1000.0),
                   med.bytes / (size_t)sizes[s]);
        }
    }
    if (getenv("CACHE_BENCH_SOTW_ONLY") == NULL) {
        delta_table();
    }
    return 0;
}
