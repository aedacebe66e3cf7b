/*
 * The snapshot cache through the C ABI: snapshots (create, add resources,
 * per-type versions, free), set/get/clear per node, SOTW watches answered
 * at once on a version difference or parked until a SetSnapshot changes
 * their type (responses parsed per the encoding documented on
 * mr_cache_watch_next, bytes compared with what was stored), timeouts, the
 * readiness fd, cancel twice, close from another thread, freeing the cache
 * with watches open, delta watches (wildcard first response, parked with
 * the next state, then only the changed resource and the removed names),
 * fetch (MR_UP_TO_DATE / MR_NOT_FOUND), status JSON, calls on a closed
 * cache, and bad input of every kind (NULL, bad UTF-8, duplicate names,
 * inconsistent snapshots, bad requests), each failure with a non-empty
 * mr_last_error. Every mr_bytes is released with mr_bytes_free.
 */
#include "test_util.h"

#include <stdint.h>

#define T_CL "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define T_EP "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#define T_RT "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

static const char bad_utf8[] = {'n', (char)0xff, 'x', 0};

/* ------------------------------------------------------------ response decoding */

#define MAXN 16

struct res {
    char name[64];
    char version[80];
    int64_t ttl_ms;
    const uint8_t *bytes; /* points into the mr_bytes it was parsed from */
    size_t len;
};

struct resp {
    int kind;
    int flags;
    char version[64];
    char type_url[128];
    size_t n_res;
    struct res res[MAXN];
    size_t n_removed;
    char removed[MAXN][64];
    size_t n_next;
    char next_name[MAXN][64];
    char next_version[MAXN][80];
};

struct cur {
    const uint8_t *p, *end;
    int ok;
};

static uint32_t get_u32(struct cur *c)
{
    uint32_t v;
    if (!c->ok || (size_t)(c->end - c->p) < 4) {
        c->ok = 0;
        return 0;
    }
    v = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 | (uint32_t)c->p[3] << 24;
    c->p += 4;
    return v;
}

static const uint8_t *get_blob(struct cur *c, size_t *len)
{
    const uint8_t *b;
    uint32_t n = get_u32(c);
    if (!c->ok || (size_t)(c->end - c->p) < n) {
        c->ok = 0;
        *len = 0;
        return NULL;
    }
    b = c->p;
    c->p += n;
    *len = n;
    return b;
}

/* A str into a NUL-terminated buffer; no NULs inside, must fit. */
static void get_str(struct cur *c, char *buf, size_t cap)
{
    size_t n;
    const uint8_t *s = get_blob(c, &n);
    if (!c->ok || n + 1 > cap || (n > 0 && memchr(s, 0, n) != NULL)) {
        c->ok = 0;
        buf[0] = '\0';
        return;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
}

/* Decodes `m` into `r`; 1 on success (every length in bounds, nothing left over). */
static int parse(const mr_bytes *m, struct resp *r)
{
    struct cur c;
    uint32_t i, n;
    memset(r, 0, sizeof *r);
    if (m->ptr == NULL || m->len < 8 || memcmp(m->ptr, "MRX1", 4) != 0) {
        return 0;
    }
    r->kind = m->ptr[4];
    r->flags = m->ptr[5];
    if (m->ptr[6] != 0 || m->ptr[7] != 0) {
        return 0;
    }
    c.p = m->ptr + 8;
    c.end = m->ptr + m->len;
    c.ok = 1;
    get_str(&c, r->version, sizeof r->version);
    get_str(&c, r->type_url, sizeof r->type_url);
    n = get_u32(&c);
    if (n > MAXN) {
        return 0;
    }
    r->n_res = n;
    for (i = 0; i < n && c.ok; i++) {
        struct res *x = &r->res[i];
        uint64_t t = 0;
        int k;
        get_str(&c, x->name, sizeof x->name);
        get_str(&c, x->version, sizeof x->version);
        if ((size_t)(c.end - c.p) < 8) {
            return 0;
        }
        for (k = 7; k >= 0; k--) {
            t = t << 8 | c.p[k];
        }
        c.p += 8;
        x->ttl_ms = (int64_t)t;
        x->bytes = get_blob(&c, &x->len);
    }
    n = get_u32(&c);
    if (n > MAXN) {
        return 0;
    }
    r->n_removed = n;
    for (i = 0; i < n && c.ok; i++) {
        get_str(&c, r->removed[i], sizeof r->removed[i]);
    }
    n = get_u32(&c);
    if (n > MAXN) {
        return 0;
    }
    r->n_next = n;
    for (i = 0; i < n && c.ok; i++) {
        get_str(&c, r->next_name[i], sizeof r->next_name[i]);
        get_str(&c, r->next_version[i], sizeof r->next_version[i]);
    }
    return c.ok && c.p == c.end;
}

/* The resource named `name` in `r`, or NULL. */
static const struct res *find_res(const struct resp *r, const char *name)
{
    size_t i;
    for (i = 0; i < r->n_res; i++) {
        if (strcmp(r->res[i].name, name) == 0) {
            return &r->res[i];
        }
    }
    return NULL;
}

static int res_is(const struct resp *r, const char *name, const char *bytes)
{
    const struct res *x = find_res(r, name);
    return x != NULL && x->len == strlen(bytes) && memcmp(x->bytes, bytes, x->len) == 0;
}

/* Resources sorted by name, next state sorted by name. */
static int sorted(const struct resp *r)
{
    size_t i;
    for (i = 1; i < r->n_res; i++) {
        if (strcmp(r->res[i - 1].name, r->res[i].name) >= 0) {
            return 0;
        }
    }
    for (i = 1; i < r->n_next; i++) {
        if (strcmp(r->next_name[i - 1], r->next_name[i]) >= 0) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------ helpers */

static int has(const mr_bytes *m, const char *needle)
{
    return m->ptr != NULL && memmem(m->ptr, m->len, needle, strlen(needle)) != NULL;
}

static mr_status add(mr_snapshot *s, const char *type, const char *name, const char *bytes)
{
    return mr_snapshot_add_resource(s, type, name, (const uint8_t *)bytes, strlen(bytes), 0);
}

static mr_cache *new_cache(uint32_t flags)
{
    mr_cache_config cfg;
    mr_cache *c = NULL;
    CHECK_ST(mr_cache_config_init(&cfg), MR_OK);
    cfg.flags = flags;
    if (!CHECK_ST(mr_cache_new(&cfg, &c), MR_OK) || !CHECK(c != NULL, "cache handle")) {
        return NULL;
    }
    return c;
}

/* A snapshot `version` with endpoints a, b (bytes "ea"/`b_bytes`) and one cluster. */
static mr_snapshot *snap_with(const char *version, const char *b_bytes)
{
    mr_snapshot *s = NULL;
    if (!CHECK_ST(mr_snapshot_new(version, &s), MR_OK) || s == NULL) {
        return NULL;
    }
    CHECK_ST(add(s, T_EP, "a", "ea"), MR_OK);
    if (b_bytes != NULL) {
        CHECK_ST(add(s, T_EP, "b", b_bytes), MR_OK);
    }
    CHECK_ST(add(s, T_CL, "c0", "cluster-0"), MR_OK);
    return s;
}

static void set_snap(mr_cache *c, const char *node, const char *version, const char *b_bytes)
{
    mr_snapshot *s = snap_with(version, b_bytes);
    CHECK_ST(mr_cache_set_snapshot(c, node, s), MR_OK);
    mr_snapshot_free(s);
}

static void req_for(mr_watch_request *r, const char *node, const char *type, const char *version)
{
    CHECK_ST(mr_watch_request_init(r), MR_OK);
    r->node = node;
    r->type_url = type;
    r->version_info = version;
}

/* The next state of `r` as parallel arrays for a request's known_*. */
struct known {
    const char *names[MAXN];
    const char *versions[MAXN];
};

static void pass_state(mr_watch_request *req, struct known *k, const struct resp *r)
{
    size_t i;
    for (i = 0; i < r->n_next; i++) {
        k->names[i] = r->next_name[i];
        k->versions[i] = r->next_version[i];
    }
    req->known_names = k->names;
    req->known_versions = k->versions;
    req->n_known = r->n_next;
}

/* poll() on fd: 1 readable, 0 not within ms, -1 error (or fd < 0). */
static int readable_within(int fd, int ms)
{
    struct pollfd p;
    int rc;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (p.fd < 0) {
        return -1;
    }
    do {
        rc = poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : (rc > 0 && (p.revents & POLLIN) != 0);
}

static int fd_ready(mr_cache_watch_h *w, int ms)
{
    return readable_within(mr_cache_watch_fd(w), ms);
}

/* Takes the watch's response (timeout ms) and parses it; 1 on success. */
static int take(mr_cache_watch_h *w, int32_t ms, struct resp *r, mr_bytes *m)
{
    mr_status st = mr_cache_watch_next(w, ms, m);
    if (!CHECK_ST(st, MR_OK)) {
        return 0;
    }
    return CHECK(parse(m, r), "response parses per the documented encoding (%zu bytes)", m->len);
}

/* ------------------------------------------------------------ cases */

static void snapshots(void)
{
    mr_snapshot *s = NULL;
    char buf[64];
    size_t len = 0, count = 99;
    const uint8_t big[3] = {0, 1, 255};
    printf("-- snapshot create / add / versions / free\n");
    if (!CHECK_ST(mr_snapshot_new("v1", &s), MR_OK) || s == NULL) {
        return;
    }
    CHECK_ST(add(s, T_EP, "a", "ea"), MR_OK);
    CHECK_ST(mr_snapshot_add_resource(s, T_EP, "bin", big, sizeof big, 5000), MR_OK);
    CHECK_ST(mr_snapshot_add_resource(s, T_EP, "empty", NULL, 0, -1), MR_OK);
    CHECK_ST(add(s, T_CL, "a", "same name, other type"), MR_OK);
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK_EQ_U(count, 3);
    CHECK_ST(mr_snapshot_resource_count(s, T_RT, &count), MR_OK);
    CHECK_EQ_U(count, 0);

    CHECK_ST(mr_snapshot_version(s, T_EP, buf, sizeof buf, &len), MR_OK);
    CHECK(strcmp(buf, "v1") == 0 && len == 2, "default version v1, got \"%s\"", buf);
    CHECK_ST(mr_snapshot_set_version(s, T_EP, "e7"), MR_OK);
    CHECK_ST(mr_snapshot_version(s, T_EP, buf, sizeof buf, &len), MR_OK);
    CHECK(strcmp(buf, "e7") == 0 && len == 2, "own version e7, got \"%s\"", buf);
    CHECK_ST(mr_snapshot_version(s, T_RT, buf, sizeof buf, NULL), MR_OK);
    CHECK(strcmp(buf, "v1") == 0, "a type without resources has the default version");
    len = 0;
    CHECK_FAIL(mr_snapshot_version(s, T_EP, buf, 2, &len), MR_BUFFER_TOO_SMALL);
    CHECK_EQ_U(len, 2);
    CHECK_FAIL(mr_snapshot_version(s, T_EP, NULL, 0, &len), MR_INVALID_ARGUMENT);

    /* Bad input on a snapshot. */
    CHECK_FAIL(add(s, T_EP, "a", "dup"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, T_EP, NULL, big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, NULL, "x", big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, "", "x", big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, T_EP, "", big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, T_EP, "x", NULL, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, T_EP, bad_utf8, big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(s, bad_utf8, "x", big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_resource(NULL, T_EP, "x", big, 1, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_set_version(s, NULL, "v"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_set_version(s, "", "v"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_set_version(s, T_EP, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_set_version(s, T_EP, bad_utf8), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_set_version(NULL, T_EP, "v"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_reference(s, T_CL, "", T_EP, "a"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_reference(s, T_CL, "a", NULL, "a"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_reference(NULL, T_CL, "a", T_EP, "a"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_resource_count(s, T_EP, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_resource_count(NULL, T_EP, &count), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_resource_count(s, NULL, &count), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_version(NULL, T_EP, buf, sizeof buf, &len), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_version(s, bad_utf8, buf, sizeof buf, &len), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_consistent(NULL), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK(count == 3, "failed adds left the snapshot unchanged (%zu resources)", count);

    /* References: consistent only when both ends exist. */
    CHECK_ST(mr_snapshot_consistent(s), MR_OK);
    CHECK_ST(mr_snapshot_add_reference(s, T_CL, "a", T_EP, "a"), MR_OK);
    CHECK_ST(mr_snapshot_consistent(s), MR_OK);
    CHECK_ST(mr_snapshot_add_reference(s, T_CL, "a", T_EP, "missing"), MR_OK);
    CHECK_FAIL(mr_snapshot_consistent(s), MR_INVALID_ARGUMENT);
    mr_snapshot_free(s);
    mr_snapshot_free(NULL);

    s = (mr_snapshot *)(uintptr_t)1;
    CHECK_FAIL(mr_snapshot_new(bad_utf8, &s), MR_INVALID_ARGUMENT);
    CHECK(s == NULL, "*out NULL after a failed mr_snapshot_new");
    CHECK_FAIL(mr_snapshot_new("v", NULL), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_snapshot_new(NULL, &s), MR_OK); /* NULL version = "" */
    CHECK_ST(mr_snapshot_version(s, T_EP, buf, sizeof buf, &len), MR_OK);
    CHECK(len == 0 && buf[0] == '\0', "NULL version is \"\"");
    mr_snapshot_free(s);
}

static void set_get_clear(void)
{
    mr_cache *c;
    mr_snapshot *s, *got = NULL;
    char buf[64];
    size_t count = 0;
    printf("-- set / get / clear snapshot\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    s = snap_with("v1", "eb");
    CHECK_ST(mr_cache_set_snapshot(c, "node-1", s), MR_OK);
    /* Editing the handle after setting it does not change the cache's copy. */
    CHECK_ST(add(s, T_EP, "late", "x"), MR_OK);
    CHECK_ST(mr_snapshot_set_version(s, T_EP, "edited"), MR_OK);
    CHECK_ST(mr_cache_get_snapshot(c, "node-1", &got), MR_OK);
    if (CHECK(got != NULL, "got a snapshot")) {
        CHECK_ST(mr_snapshot_resource_count(got, T_EP, &count), MR_OK);
        CHECK_EQ_U(count, 2);
        CHECK_ST(mr_snapshot_version(got, T_EP, buf, sizeof buf, NULL), MR_OK);
        CHECK(strcmp(buf, "v1") == 0, "cache serves v1, got \"%s\"", buf);
        /* Editing the returned handle does not change the cache either. */
        CHECK_ST(add(got, T_EP, "mine", "y"), MR_OK);
        mr_snapshot_free(got);
        got = NULL;
        CHECK_ST(mr_cache_get_snapshot(c, "node-1", &got), MR_OK);
        CHECK_ST(mr_snapshot_resource_count(got, T_EP, &count), MR_OK);
        CHECK_EQ_U(count, 2);
        mr_snapshot_free(got);
    }
    mr_snapshot_free(s); /* the cache keeps serving it */
    got = (mr_snapshot *)(uintptr_t)1;
    CHECK_FAIL(mr_cache_get_snapshot(c, "unknown-node", &got), MR_NOT_FOUND);
    CHECK(got == NULL, "*out NULL on MR_NOT_FOUND");
    CHECK_ST(mr_cache_get_snapshot(c, "node-1", &got), MR_OK);
    mr_snapshot_free(got);

    CHECK_ST(mr_cache_clear_snapshot(c, "node-1"), MR_OK);
    CHECK_FAIL(mr_cache_get_snapshot(c, "node-1", &got), MR_NOT_FOUND);
    CHECK_ST(mr_cache_clear_snapshot(c, "node-1"), MR_OK);       /* twice */
    CHECK_ST(mr_cache_clear_snapshot(c, "unknown-node"), MR_OK); /* unknown */
    CHECK_ST(mr_cache_clear_snapshot(c, ""), MR_OK);
    mr_cache_free(c);
    mr_cache_free(NULL);
}

static void sotw_watches(void)
{
    mr_cache *c;
    mr_cache_watch_h *w = NULL, *w2 = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r, r2;
    struct known k;
    double t0, dt;
    printf("-- SOTW watches: at once on a version difference, parked otherwise\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    set_snap(c, "n1", "v1", "eb");

    /* Version "" differs from v1: answered at once, the response already waits. */
    req_for(&req, "n1", T_EP, NULL);
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    CHECK(fd_ready(w, 0) == 1, "fd readable: the response is waiting");
    if (take(w, 0, &r, &m)) {
        CHECK(r.kind == 1 && r.flags == 0, "kind %d flags %d", r.kind, r.flags);
        CHECK(strcmp(r.version, "v1") == 0, "version \"%s\"", r.version);
        CHECK(strcmp(r.type_url, T_EP) == 0, "type URL \"%s\"", r.type_url);
        CHECK(r.n_res == 2 && sorted(&r), "2 resources sorted, got %zu", r.n_res);
        CHECK(res_is(&r, "a", "ea") && res_is(&r, "b", "eb"), "bytes equal what was stored");
        CHECK(r.n_res == 2 && r.res[0].ttl_ms == -1 && r.res[0].version[0] != '\0', "ttl -1, a content version");
        CHECK(r.n_removed == 0, "no removed names in SOTW");
        CHECK(r.n_next == 2 && strcmp(r.next_name[0], "a") == 0 && strcmp(r.next_name[1], "b") == 0,
              "next state = returned resources");
    }
    CHECK(m.ptr != NULL && m.len > 0, "response bytes");
    mr_bytes_free(&m);
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_CLOSED); /* one response per watch */
    CHECK(m.ptr == NULL && m.len == 0, "{NULL, 0} on failure");
    mr_cache_watch_free(w);

    /* Another version ("v0") differs too: answered at once. */
    req.version_info = "v0";
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    CHECK_ST(mr_cache_watch_next(w, 0, &m), MR_OK);
    mr_bytes_free(&m);
    mr_cache_watch_free(w);

    /* Same version, everything returned: parked. */
    req.version_info = "v1";
    pass_state(&req, &k, &r);
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    CHECK(m.ptr == NULL, "nothing returned on MR_WOULD_BLOCK");
    t0 = now_ms();
    CHECK_FAIL(mr_cache_watch_next(w, 50, &m), MR_TIMEOUT);
    dt = now_ms() - t0;
    CHECK(dt >= 45 && dt < within_ms(1000), "50 ms timeout took %.1f ms", dt);
    CHECK(fd_ready(w, 0) == 0, "fd not readable while parked");

    /* A SetSnapshot that does not change the type (same bytes, same
       version, other types changed) leaves it parked. */
    {
        mr_snapshot *s = snap_with("v1", "eb");
        CHECK_ST(mr_snapshot_set_version(s, T_CL, "c2"), MR_OK);
        CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
        mr_snapshot_free(s);
    }
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    CHECK(fd_ready(w, 20) == 0, "still parked after an unrelated change");
    /* Other nodes' snapshots do not answer it either. */
    set_snap(c, "n2", "v9", "zz");
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);

    /* A SetSnapshot that changes the type answers it: b's bytes and the version. */
    set_snap(c, "n1", "v2", "eb2");
    CHECK(fd_ready(w, (int)within_ms(1000)) == 1, "fd readable once answered");
    if (take(w, 0, &r2, &m)) {
        CHECK(r2.kind == 1 && strcmp(r2.version, "v2") == 0, "kind %d version \"%s\"", r2.kind, r2.version);
        CHECK(strcmp(r2.type_url, T_EP) == 0, "type URL");
        /* As go-control-plane: every covered resource, each returned at
         * the type's version. */
        CHECK(r2.n_res == 2 && res_is(&r2, "b", "eb2") && res_is(&r2, "a", "ea"), "a and b, got %zu resources", r2.n_res);
        CHECK(r2.n_next == 2 && sorted(&r2), "next state a and b (%zu)", r2.n_next);
        CHECK(r2.n_next == 2 && strcmp(r2.next_version[0], "v2") == 0 && strcmp(r2.next_version[1], "v2") == 0,
              "returned at the type's version v2");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w);

    /* Full-state type (clusters): every covered resource. */
    req_for(&req, "n1", T_CL, NULL);
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    if (take(w, -1, &r, &m)) {
        CHECK(r.n_res == 1 && res_is(&r, "c0", "cluster-0"), "cluster c0");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w);

    /* Explicit names: a new name not yet returned answers at once. */
    {
        const char *names[2] = {"a", "b"};
        const char *kn[1] = {"a"};
        const char *kv[1];
        req_for(&req, "n1", T_EP, "v2");
        req.names = names;
        req.n_names = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
        if (take(w, 0, &r, &m)) {
            CHECK(r.n_res == 1 && res_is(&r, "a", "ea"), "named a only");
        }
        mr_bytes_free(&m);
        mr_cache_watch_free(w);
        kv[0] = r.n_next == 1 ? r.next_version[0] : "?";
        req.known_names = kn;
        req.known_versions = kv;
        req.n_known = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
        CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
        mr_cache_watch_free(w);
        req.n_names = 2; /* now asks for b too */
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
        if (take(w, 0, &r, &m)) {
            CHECK(r.n_res == 2 && res_is(&r, "b", "eb2"), "every requested name, b included");
            CHECK(r.n_next == 2, "next state a, b");
        }
        mr_bytes_free(&m);
        mr_cache_watch_free(w);
    }

    /* Watch on a node without a snapshot: waits until one is set. */
    req_for(&req, "later", T_EP, NULL);
    CHECK_ST(mr_cache_watch(c, &req, &w2), MR_OK);
    CHECK_FAIL(mr_cache_watch_next(w2, 0, &m), MR_WOULD_BLOCK);
    set_snap(c, "later", "L1", NULL);
    if (take(w2, (int32_t)within_ms(1000), &r, &m)) {
        CHECK(strcmp(r.version, "L1") == 0 && r.n_res == 1, "answered by the first snapshot");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w2);
    mr_cache_free(c);
}

struct blocked {
    mr_cache_watch_h *w;
    mr_status st;
    double ms;
};

static void *blocked_next(void *p)
{
    struct blocked *b = p;
    mr_bytes m = {NULL, 0};
    double t0 = now_ms();
    b->st = mr_cache_watch_next(b->w, -1, &m);
    b->ms = now_ms() - t0;
    mr_bytes_free(&m);
    return NULL;
}

static void cancel_and_free(void)
{
    mr_cache *c;
    mr_cache_watch_h *w[4] = {NULL, NULL, NULL, NULL};
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    int i;
    printf("-- cancel twice, close from another thread, free the cache with watches open\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    req_for(&req, "nosnap", T_EP, NULL); /* no snapshot: stays parked */
    CHECK_ST(mr_cache_watch(c, &req, &w[0]), MR_OK);
    CHECK_ST(mr_cache_watch_close(w[0]), MR_OK);
    CHECK_ST(mr_cache_watch_close(w[0]), MR_OK);
    CHECK(fd_ready(w[0], 0) == 1, "fd readable once closed");
    CHECK_FAIL(mr_cache_watch_next(w[0], -1, &m), MR_CLOSED);
    mr_cache_watch_free(w[0]);

    /* A blocked next returns MR_CLOSED when another thread closes the watch. */
    CHECK_ST(mr_cache_watch(c, &req, &w[0]), MR_OK);
    {
        struct blocked b = {w[0], MR_OK, 0};
        pthread_t th;
        if (CHECK(pthread_create(&th, NULL, blocked_next, &b) == 0, "thread")) {
            sleep_ms(30);
            CHECK_ST(mr_cache_watch_close(w[0]), MR_OK);
            CHECK(join_within(th, (int)within_ms(2000)) == 0, "blocked next returned");
            CHECK_ST(b.st, MR_CLOSED);
        }
    }
    mr_cache_watch_free(w[0]);

    /* A closed watch leaves the status count. */
    CHECK_ST(mr_cache_watch(c, &req, &w[0]), MR_OK);
    CHECK_ST(mr_cache_status(c, "nosnap", &m), MR_OK);
    CHECK(has(&m, "\"num_watches\":1"), "one open watch: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    CHECK_ST(mr_cache_watch_close(w[0]), MR_OK);
    CHECK_ST(mr_cache_status(c, "nosnap", &m), MR_OK);
    CHECK(has(&m, "\"num_watches\":0"), "closed watch left: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    mr_cache_watch_free(w[0]);

    /* Free the cache with watches open (parked, answered-but-unread, delta). */
    set_snap(c, "n1", "v1", "eb");
    CHECK_ST(mr_cache_watch(c, &req, &w[0]), MR_OK); /* parked, no snapshot */
    req_for(&req, "n1", T_EP, NULL);
    CHECK_ST(mr_cache_watch(c, &req, &w[1]), MR_OK); /* answered, not read */
    req.flags = MR_WATCH_WILDCARD;
    CHECK_ST(mr_cache_delta_watch(c, &req, &w[2]), MR_OK);
    req_for(&req, "n1", T_EP, "v1");
    {
        const char *names[1] = {"zzz"}; /* not in the snapshot: parked */
        req.names = names;
        req.n_names = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w[3]), MR_OK);
    }
    mr_cache_free(c);
    for (i = 0; i < 4; i++) {
        CHECK(fd_ready(w[i], 0) == 1, "watch %d: fd readable after the cache was freed", i);
        if (i == 1 || i == 2) {
            /* an undelivered response may still be there or dropped: either is fine,
               but the watch must end in MR_CLOSED */
            if (mr_cache_watch_next(w[i], 0, &m) == MR_OK) {
                mr_bytes_free(&m);
            }
        }
        CHECK_FAIL(mr_cache_watch_next(w[i], -1, &m), MR_CLOSED);
        CHECK_FAIL(mr_cache_watch_next(w[i], 0, &m), MR_CLOSED);
        CHECK_ST(mr_cache_watch_close(w[i]), MR_OK);
        CHECK_ST(mr_cache_watch_close(w[i]), MR_OK);
        mr_cache_watch_free(w[i]);
    }
    mr_cache_watch_free(NULL);
}

static void delta_watches(void)
{
    mr_cache *c;
    mr_cache_watch_h *w = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r, r2;
    struct known k;
    mr_snapshot *s;
    printf("-- delta watches: wildcard first, parked with the next state, then the change only\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    s = snap_with("v1", "eb");
    CHECK_ST(add(s, T_EP, "c", "ec"), MR_OK);
    CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
    mr_snapshot_free(s);

    req_for(&req, "n1", T_EP, NULL);
    req.flags = MR_WATCH_WILDCARD | MR_WATCH_FIRST;
    CHECK_ST(mr_cache_delta_watch(c, &req, &w), MR_OK);
    if (!take(w, 0, &r, &m)) {
        mr_bytes_free(&m);
        mr_cache_watch_free(w);
        mr_cache_free(c);
        return;
    }
    CHECK(r.kind == 2 && strcmp(r.type_url, T_EP) == 0, "delta kind %d", r.kind);
    CHECK(r.n_res == 3 && sorted(&r) && res_is(&r, "a", "ea") && res_is(&r, "b", "eb") && res_is(&r, "c", "ec"),
          "first response has all 3 resources (%zu)", r.n_res);
    CHECK(r.n_removed == 0 && r.n_next == 3, "no removals, 3 next-state entries");
    CHECK(r.n_res == 3 && strcmp(r.res[0].version, r.next_version[0]) == 0, "next state = resource versions");
    mr_bytes_free(&m);
    mr_cache_watch_free(w);

    /* Next state passed back: parked until a change. */
    req.flags = MR_WATCH_WILDCARD;
    pass_state(&req, &k, &r);
    CHECK_ST(mr_cache_delta_watch(c, &req, &w), MR_OK);
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    /* Same resources under a new version string: no resource changed, still parked. */
    {
        s = snap_with("v1b", "eb");
        CHECK_ST(add(s, T_EP, "c", "ec"), MR_OK);
        CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
        mr_snapshot_free(s);
    }
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    /* b changes, c is removed, a stays. */
    set_snap(c, "n1", "v2", "eb2");
    if (take(w, (int32_t)within_ms(1000), &r2, &m)) {
        CHECK(r2.kind == 2, "delta");
        CHECK(r2.n_res == 1 && res_is(&r2, "b", "eb2"), "only the changed resource b (%zu)", r2.n_res);
        CHECK(r2.n_removed == 1 && strcmp(r2.removed[0], "c") == 0, "removed c (%zu removed)", r2.n_removed);
        CHECK(r2.n_next == 2 && strcmp(r2.next_name[0], "a") == 0 && strcmp(r2.next_name[1], "b") == 0,
              "next state a, b");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w);

    /* Explicit subscription to b only: a change of a does not answer it. */
    {
        const char *names[1] = {"b"};
        const char *kn[1] = {"b"};
        const char *kv[1];
        kv[0] = r2.n_next == 2 ? r2.next_version[1] : "?";
        req_for(&req, "n1", T_EP, NULL);
        req.names = names;
        req.n_names = 1;
        req.known_names = kn;
        req.known_versions = kv;
        req.n_known = 1;
        CHECK_ST(mr_cache_delta_watch(c, &req, &w), MR_OK);
        CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
        s = snap_with("v3", "eb2");
        CHECK_ST(mr_snapshot_set_version(s, T_EP, "v3"), MR_OK);
        CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
        mr_snapshot_free(s);
        CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
        set_snap(c, "n1", "v4", NULL); /* b removed */
        if (take(w, (int32_t)within_ms(1000), &r, &m)) {
            CHECK(r.n_res == 0 && r.n_removed == 1 && strcmp(r.removed[0], "b") == 0, "b removed");
            CHECK(r.n_next == 0, "empty next state");
        }
        mr_bytes_free(&m);
        mr_cache_watch_free(w);
    }
    mr_cache_free(c);
}

static void fetch_and_status(void)
{
    mr_cache *c;
    mr_cache_watch_h *w = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r;
    printf("-- fetch, status, status keys\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    set_snap(c, "node-a", "v1", "eb");
    req_for(&req, "node-a", T_EP, NULL);
    CHECK_ST(mr_cache_fetch(c, &req, &m), MR_OK);
    if (CHECK(parse(&m, &r), "fetch response parses")) {
        CHECK(r.kind == 1 && strcmp(r.version, "v1") == 0 && r.n_res == 2, "fetch: v1, 2 resources");
        CHECK(res_is(&r, "a", "ea") && res_is(&r, "b", "eb"), "fetch bytes");
    }
    mr_bytes_free(&m);
    req.version_info = "v1";
    m.ptr = (const uint8_t *)"junk";
    m.len = 4;
    CHECK_FAIL(mr_cache_fetch(c, &req, &m), MR_UP_TO_DATE);
    CHECK(m.ptr == NULL && m.len == 0, "{NULL, 0} on MR_UP_TO_DATE");
    req.version_info = "v0";
    CHECK_ST(mr_cache_fetch(c, &req, &m), MR_OK);
    mr_bytes_free(&m);
    req.node = "unknown-node";
    CHECK_FAIL(mr_cache_fetch(c, &req, &m), MR_NOT_FOUND);
    CHECK(m.ptr == NULL && m.len == 0, "{NULL, 0} on MR_NOT_FOUND");

    /* Status: only nodes that opened a watch. */
    CHECK_FAIL(mr_cache_status(c, "node-a", &m), MR_NOT_FOUND);
    CHECK_ST(mr_cache_status_keys(c, &m), MR_OK);
    CHECK(m.len == 2 && memcmp(m.ptr, "[]", 2) == 0, "no keys yet: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    req_for(&req, "node-a", T_EP, "v1");
    req.names = NULL;
    {
        const char *names[1] = {"nope"};
        req.names = names;
        req.n_names = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK); /* parked */
        req.n_names = 0;
        req.names = NULL;
    }
    CHECK_ST(mr_cache_status(c, "node-a", &m), MR_OK);
    CHECK(has(&m, "\"node\":\"node-a\"") && has(&m, "\"num_watches\":1") && has(&m, "\"num_delta_watches\":0") &&
              has(&m, "\"last_delta_watch_request_unix_ms\":null") && !has(&m, "\"last_watch_request_unix_ms\":null"),
          "status JSON: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    CHECK_ST(mr_cache_status_keys(c, &m), MR_OK);
    CHECK(m.len == strlen("[\"node-a\"]") && has(&m, "[\"node-a\"]"), "keys: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    CHECK_FAIL(mr_cache_status(c, "unknown-node", &m), MR_NOT_FOUND);
    CHECK(m.ptr == NULL, "{NULL, 0} on failure");
    mr_cache_watch_free(w);
    /* Cleared: no status any more. */
    CHECK_ST(mr_cache_clear_snapshot(c, "node-a"), MR_OK);
    CHECK_FAIL(mr_cache_status(c, "node-a", &m), MR_NOT_FOUND);
    CHECK_ST(mr_cache_status_keys(c, &m), MR_OK);
    CHECK(m.len == 2, "no keys after clear");
    mr_bytes_free(&m);
    mr_cache_free(c);
}

static void cleared_node(void)
{
    mr_cache *c;
    mr_cache_watch_h *w = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r;
    printf("-- watches on a cleared node\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    set_snap(c, "n1", "v1", "eb");
    req_for(&req, "n1", T_EP, "v1");
    {
        const char *names[1] = {"nope"};
        req.names = names;
        req.n_names = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
        req.names = NULL;
        req.n_names = 0;
    }
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    CHECK_ST(mr_cache_clear_snapshot(c, "n1"), MR_OK);
    /* Header: its open watches end, mr_cache_watch_next returns MR_CLOSED. */
    CHECK(fd_ready(w, (int)within_ms(1000)) == 1, "fd readable after clear");
    CHECK_FAIL(mr_cache_watch_next(w, -1, &m), MR_CLOSED);
    CHECK_ST(mr_cache_watch_close(w), MR_OK);
    mr_cache_watch_free(w);
    /* A later watch for the node waits for a new snapshot. */
    req.version_info = NULL;
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    CHECK_FAIL(mr_cache_watch_next(w, 20, &m), MR_TIMEOUT);
    req.flags = MR_WATCH_WILDCARD | MR_WATCH_FIRST;
    {
        mr_cache_watch_h *dw = NULL;
        CHECK_ST(mr_cache_delta_watch(c, &req, &dw), MR_OK);
        CHECK_FAIL(mr_cache_watch_next(dw, 0, &m), MR_WOULD_BLOCK); /* no snapshot, even first wildcard */
        set_snap(c, "n1", "v2", NULL);
        if (take(dw, (int32_t)within_ms(1000), &r, &m)) {
            CHECK(r.kind == 2 && r.n_res == 1, "delta answered by the new snapshot");
        }
        mr_bytes_free(&m);
        mr_cache_watch_free(dw);
    }
    if (take(w, (int32_t)within_ms(1000), &r, &m)) {
        CHECK(strcmp(r.version, "v2") == 0 && r.n_res == 1 && res_is(&r, "a", "ea"), "answered by the new snapshot");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w);
    mr_cache_free(c);
}

static void consistency(void)
{
    mr_cache *c;
    mr_snapshot *s = NULL, *got = NULL;
    printf("-- MR_CACHE_CHECK_CONSISTENCY\n");
    if ((c = new_cache(MR_CACHE_CHECK_CONSISTENCY)) == NULL) {
        return;
    }
    CHECK_ST(mr_snapshot_new("v1", &s), MR_OK);
    CHECK_ST(add(s, T_CL, "c0", "cluster"), MR_OK);
    CHECK_ST(mr_snapshot_add_reference(s, T_CL, "c0", T_EP, "c0"), MR_OK);
    CHECK_FAIL(mr_cache_set_snapshot(c, "n1", s), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_get_snapshot(c, "n1", &got), MR_NOT_FOUND); /* rejected: not set */
    CHECK_ST(add(s, T_EP, "c0", "cla"), MR_OK);
    CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
    mr_snapshot_free(s);
    mr_cache_free(c);

    /* Without the flag an inconsistent snapshot is accepted. */
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    CHECK_ST(mr_snapshot_new("v1", &s), MR_OK);
    CHECK_ST(mr_snapshot_add_reference(s, T_CL, "c0", T_EP, "c0"), MR_OK);
    CHECK_ST(mr_cache_set_snapshot(c, "n1", s), MR_OK);
    mr_snapshot_free(s);
    mr_cache_free(c);
}

static void bad_input(void)
{
    mr_cache *c, *c2 = NULL;
    mr_cache_config cfg;
    mr_cache_watch_h *w = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    mr_snapshot *s = NULL, *got = NULL;
    const char *null_names[2] = {"a", NULL};
    const char *names[1] = {"a"};
    const char *bad_names[1] = {bad_utf8};
    printf("-- bad input: NULLs, bad UTF-8, bad requests, bad configs\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    set_snap(c, "n1", "v1", "eb");
    CHECK_ST(mr_snapshot_new("v1", &s), MR_OK);

    /* Config. */
    CHECK_FAIL(mr_cache_config_init(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_new(NULL, NULL), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_cache_new(NULL, &c2), MR_OK); /* NULL cfg = defaults */
    mr_cache_free(c2);
    mr_cache_config_init(&cfg);
    cfg.flags = 0x100;
    c2 = (mr_cache *)(uintptr_t)1;
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    CHECK(c2 == NULL, "*out NULL after a failed mr_cache_new");
    mr_cache_config_init(&cfg);
    cfg.struct_size = 1;
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    mr_cache_config_init(&cfg);
    cfg.heartbeat_interval_ms = -5;
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    mr_cache_config_init(&cfg);
    cfg.n_full_state_types = 2; /* NULL array with a count */
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    cfg.full_state_types = null_names;
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    cfg.full_state_types = bad_names;
    cfg.n_full_state_types = 1;
    CHECK_FAIL(mr_cache_new(&cfg, &c2), MR_INVALID_ARGUMENT);
    CHECK(c2 == NULL, "no cache made");

    /* NULL handles / outs / strings on the cache calls. */
    CHECK_FAIL(mr_cache_set_snapshot(NULL, "n1", s), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_set_snapshot(c, NULL, s), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_set_snapshot(c, "n1", NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_set_snapshot(c, bad_utf8, s), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_get_snapshot(NULL, "n1", &got), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_get_snapshot(c, NULL, &got), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_get_snapshot(c, "n1", NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_get_snapshot(c, bad_utf8, &got), MR_INVALID_ARGUMENT);
    CHECK(got == NULL, "no snapshot handle");
    CHECK_FAIL(mr_cache_clear_snapshot(NULL, "n1"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_clear_snapshot(c, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_clear_snapshot(c, bad_utf8), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status(NULL, "n1", &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status(c, NULL, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status(c, "n1", NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status(c, bad_utf8, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status_keys(NULL, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_status_keys(c, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_close(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_watch_request_init(NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_cache_watch_fd(NULL) == -1, "fd of NULL is -1");
    CHECK_FAIL(mr_cache_watch_next(NULL, 0, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_watch_close(NULL), MR_INVALID_ARGUMENT);

    /* Requests: watch, delta watch and fetch share the checks. */
    {
        int which;
        for (which = 0; which < 3; which++) {
            mr_status st;
#define CALL(cache, r)                                                                         \
    (which == 0   ? mr_cache_watch((cache), (r), &w)                                         \
     : which == 1 ? mr_cache_delta_watch((cache), (r), &w)                                   \
                  : mr_cache_fetch((cache), (r), &m))
            printf("     request checks for %s\n", which == 0 ? "mr_cache_watch" : which == 1 ? "mr_cache_delta_watch" : "mr_cache_fetch");
            req_for(&req, "n1", T_EP, NULL);
            CHECK_FAIL(CALL(NULL, &req), MR_INVALID_ARGUMENT);
            CHECK_FAIL(CALL(c, NULL), MR_INVALID_ARGUMENT);
            req.node = NULL;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.node = bad_utf8;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.node = "n1";
            req.type_url = NULL;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.type_url = "";
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.type_url = bad_utf8;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.type_url = T_EP;
            req.version_info = bad_utf8;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.version_info = NULL;
            req.n_names = 1; /* NULL names with a count */
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.names = null_names;
            req.n_names = 2; /* a NULL name */
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.names = bad_names;
            req.n_names = 1;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.names = names;
            req.n_known = 1; /* NULL known arrays with a count */
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.known_names = names;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT); /* known_versions NULL */
            req.known_versions = bad_names;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.n_known = 0;
            req.flags = 0x80;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.flags = 0;
            req.struct_size = 3;
            CHECK_FAIL(CALL(c, &req), MR_INVALID_ARGUMENT);
            req.struct_size = (uint32_t)sizeof req;
            if (which < 2) {
                CHECK_FAIL(which == 0 ? mr_cache_watch(c, &req, NULL) : mr_cache_delta_watch(c, &req, NULL),
                           MR_INVALID_ARGUMENT);
                CHECK(w == NULL, "*out NULL after failures");
            } else {
                CHECK_FAIL(mr_cache_fetch(c, &req, NULL), MR_INVALID_ARGUMENT);
                CHECK(m.ptr == NULL, "no bytes after failures");
            }
            /* The valid request works. */
            st = CALL(c, &req);
            CHECK_ST(st, MR_OK);
            if (which < 2) {
                mr_cache_watch_free(w);
                w = NULL;
            } else {
                mr_bytes_free(&m);
            }
#undef CALL
        }
    }

    /* Unknown node: get/status/fetch MR_NOT_FOUND; a watch parks. */
    CHECK_FAIL(mr_cache_get_snapshot(c, "ghost", &got), MR_NOT_FOUND);
    CHECK_FAIL(mr_cache_status(c, "ghost", &m), MR_NOT_FOUND);
    req_for(&req, "ghost", T_EP, NULL);
    CHECK_FAIL(mr_cache_fetch(c, &req, &m), MR_NOT_FOUND);
    CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
    CHECK_FAIL(mr_cache_watch_next(w, 0, &m), MR_WOULD_BLOCK);
    CHECK_FAIL(mr_cache_watch_next(w, 0, NULL), MR_INVALID_ARGUMENT);
    mr_cache_watch_free(w);
    w = NULL;

    /* Duplicate names in a snapshot. */
    CHECK_ST(add(s, T_EP, "dup", "1"), MR_OK);
    CHECK_FAIL(add(s, T_EP, "dup", "2"), MR_INVALID_ARGUMENT);

    /* Calls on a closed cache: MR_CLOSED (the handle stays valid until free). */
    CHECK_ST(mr_cache_close(c), MR_OK);
    CHECK_ST(mr_cache_close(c), MR_OK);
    CHECK_FAIL(mr_cache_set_snapshot(c, "n1", s), MR_CLOSED);
    CHECK_FAIL(mr_cache_get_snapshot(c, "n1", &got), MR_CLOSED);
    CHECK_FAIL(mr_cache_clear_snapshot(c, "n1"), MR_CLOSED);
    CHECK_FAIL(mr_cache_status(c, "n1", &m), MR_CLOSED);
    CHECK_FAIL(mr_cache_status_keys(c, &m), MR_CLOSED);
    CHECK(m.ptr == NULL, "no bytes");
    req_for(&req, "n1", T_EP, NULL);
    CHECK_FAIL(mr_cache_watch(c, &req, &w), MR_CLOSED);
    CHECK_FAIL(mr_cache_delta_watch(c, &req, &w), MR_CLOSED);
    CHECK_FAIL(mr_cache_fetch(c, &req, &m), MR_CLOSED);
    CHECK(w == NULL && m.ptr == NULL, "no outputs on a closed cache");
    mr_cache_free(c);
    mr_snapshot_free(s);
}

static void create_free_cycles(void)
{
    int i, n = g_slow ? 30 : 300;
    long rss0, rss1;
    printf("-- cache/snapshot/watch create/free cycles\n");
    rss0 = rss_kib();
    for (i = 0; i < n; i++) {
        mr_cache *c = NULL;
        mr_cache_watch_h *w = NULL, *dw = NULL;
        mr_watch_request req;
        mr_bytes m = {NULL, 0};
        char ver[16];
        if (mr_cache_new(NULL, &c) != MR_OK) {
            CHECK(0, "mr_cache_new failed in cycle %d", i);
            break;
        }
        snprintf(ver, sizeof ver, "v%d", i);
        set_snap(c, "n", ver, "eb");
        mr_watch_request_init(&req);
        req.node = "n";
        req.type_url = T_EP;
        mr_cache_watch(c, &req, &w);
        req.flags = MR_WATCH_WILDCARD;
        req.node = "other";
        mr_cache_delta_watch(c, &req, &dw);
        if (mr_cache_watch_next(w, 0, &m) == MR_OK) {
            mr_bytes_free(&m);
        }
        if (i % 2) {
            mr_cache_close(c);
        }
        mr_cache_free(c);
        mr_cache_watch_free(w);
        mr_cache_watch_free(dw);
    }
    rss1 = rss_kib();
    printf("     %d cycles, RSS %ld -> %ld KiB\n", n, rss0, rss1);
    CHECK(rss1 - rss0 < 16 * 1024, "RSS grew by %ld KiB over %d cycles", rss1 - rss0, n);
}

static int queue_ready(mr_cache *c, int ms)
{
    return readable_within(mr_cache_ready_fd(c), ms);
}

static void ready_queue(void)
{
    mr_cache *c = new_cache(0);
    mr_cache_watch_h *w[4] = {NULL, NULL, NULL, NULL};
    const char *nodes[4] = {"q0", "q1", "q2", "q3"};
    const char *names[1] = {"a"};
    mr_cache_ready ev[8];
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r;
    size_t n = 99, i;
    int seen[4] = {0, 0, 0, 0}, have_state = 0;
    printf("-- ready queue: queued watches, mr_cache_take_ready, mr_cache_ready_fd\n");
    if (c == NULL) {
        return;
    }
    for (i = 0; i < 4; i++) {
        req_for(&req, nodes[i], T_EP, "");
        req.flags = MR_WATCH_QUEUED;
        req.token = 1000 + i;
        req.names = names;
        req.n_names = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w[i]), MR_OK);
        CHECK_ST(mr_cache_watch_next(w[i], 0, &m), MR_WOULD_BLOCK);
    }
    CHECK(queue_ready(c, 0) == 0, "ready fd not readable: nothing answered yet");
    CHECK_ST(mr_cache_take_ready(c, 0, ev, 8, &n), MR_WOULD_BLOCK);
    CHECK(n == 0, "*n_out 0 on MR_WOULD_BLOCK");
    CHECK_ST(mr_cache_take_ready(c, 20, ev, 8, &n), MR_TIMEOUT);
    set_snap(c, "q0", "v1", "eb");
    set_snap(c, "q2", "v1", "eb");
    CHECK_ST(mr_cache_clear_snapshot(c, "q3"), MR_OK);
    CHECK_ST(mr_cache_watch_close(w[1]), MR_OK); /* the host's own cancel is not reported */
    CHECK(queue_ready(c, 0) == 1, "ready fd readable after answers");
    if (CHECK_ST(mr_cache_take_ready(c, 0, ev, 8, &n), MR_OK)) {
        CHECK(n == 3, "three events (two answers, one cleared node), got %zu", n);
        for (i = 0; i < n; i++) {
            if (ev[i].token >= 1000 && ev[i].token < 1004) {
                seen[ev[i].token - 1000]++;
            }
            if (ev[i].token == 1003) {
                CHECK_ST(ev[i].status, MR_CLOSED);
                CHECK(ev[i].response.ptr == NULL, "no response for a cleared node");
            } else if (CHECK_ST(ev[i].status, MR_OK)) {
                have_state = CHECK(parse(&ev[i].response, &r) && r.n_res == 1 && res_is(&r, "a", "ea"),
                                   "token %llu: the response, in the mr_cache_watch_next encoding",
                                   (unsigned long long)ev[i].token);
            }
            mr_bytes_free(&ev[i].response);
        }
        CHECK(seen[0] == 1 && seen[1] == 0 && seen[2] == 1 && seen[3] == 1, "each reported once, the cancelled one never");
    }
    CHECK(queue_ready(c, 0) == 0, "ready fd clear once drained");
    CHECK_ST(mr_cache_watch_next(w[0], 0, &m), MR_CLOSED); /* the queue took it */
    /* Answered during the open: taken with next, not queued. */
    mr_cache_watch_free(w[0]);
    req_for(&req, "q0", T_EP, "");
    req.flags = MR_WATCH_QUEUED;
    req.token = 77;
    CHECK_ST(mr_cache_watch(c, &req, &w[0]), MR_OK);
    CHECK_ST(mr_cache_watch_next(w[0], 0, &m), MR_OK);
    mr_bytes_free(&m);
    CHECK_ST(mr_cache_take_ready(c, 0, ev, 8, &n), MR_WOULD_BLOCK);
    /* mr_cache_set_snapshot_take: the caller gets the answers directly. */
    mr_cache_watch_free(w[2]);
    req_for(&req, "q2", T_EP, "v1");
    req.flags = MR_WATCH_QUEUED;
    req.token = 55;
    req.names = names;
    req.n_names = 1;
    if (CHECK(have_state, "an answered queued watch gave a's version")) {
        struct known k;
        mr_snapshot *s2 = snap_with("v2", "eb");
        k.names[0] = "a";
        k.versions[0] = r.next_version[0];
        req.known_names = k.names;
        req.known_versions = k.versions;
        req.n_known = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w[2]), MR_OK);
        CHECK_ST(mr_cache_watch_next(w[2], 0, &m), MR_WOULD_BLOCK);
        CHECK_FAIL(mr_cache_set_snapshot_take(c, "q2", s2, NULL, 4, &n), MR_INVALID_ARGUMENT);
        CHECK_FAIL(mr_cache_set_snapshot_take(c, "q2", s2, ev, 4, NULL), MR_INVALID_ARGUMENT);
        if (CHECK_ST(mr_cache_set_snapshot_take(c, "q2", s2, ev, 4, &n), MR_OK)) {
            CHECK(n == 1 && ev[0].token == 55 && ev[0].status == MR_OK, "the answer comes back from the call (n=%zu)", n);
            CHECK(n == 1 && parse(&ev[0].response, &r) && strcmp(r.version, "v2") == 0, "at the new version");
            for (i = 0; i < n; i++) {
                mr_bytes_free(&ev[i].response);
            }
        }
        CHECK_ST(mr_cache_take_ready(c, 0, ev, 8, &n), MR_WOULD_BLOCK);
        mr_snapshot_free(s2);
    }
    /* Bad input. */
    CHECK_FAIL(mr_cache_take_ready(NULL, 0, ev, 8, &n), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_take_ready(c, 0, NULL, 8, &n), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_take_ready(c, 0, ev, 0, &n), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_take_ready(c, 0, ev, 8, NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_cache_ready_fd(NULL) == -1, "ready fd of NULL is -1");
    mr_cache_watch_free(w[3]);
    w[3] = NULL;
    req_for(&req, "q9", T_EP, "");
    req.flags = 0x100;
    CHECK_FAIL(mr_cache_watch(c, &req, &w[3]), MR_INVALID_ARGUMENT);
    CHECK(w[3] == NULL, "*out NULL after a failed open");
    /* Close: the open queued watch reports closed, then MR_CLOSED. */
    req_for(&req, "q9", T_EP, "");
    req.flags = MR_WATCH_QUEUED;
    req.token = 9;
    CHECK_ST(mr_cache_watch(c, &req, &w[3]), MR_OK);
    CHECK_ST(mr_cache_close(c), MR_OK);
    CHECK(queue_ready(c, 0) == 1, "ready fd readable after close");
    if (CHECK_ST(mr_cache_take_ready(c, -1, ev, 8, &n), MR_OK)) {
        CHECK(n == 1 && ev[0].token == 9 && ev[0].status == MR_CLOSED, "the open watch reports closed");
    }
    CHECK_FAIL(mr_cache_take_ready(c, -1, ev, 8, &n), MR_CLOSED);
    for (i = 0; i < 4; i++) {
        mr_cache_watch_free(w[i]);
    }
    mr_cache_free(c);
}

static void put_u32(uint8_t **p, uint32_t v)
{
    (*p)[0] = (uint8_t)v;
    (*p)[1] = (uint8_t)(v >> 8);
    (*p)[2] = (uint8_t)(v >> 16);
    (*p)[3] = (uint8_t)(v >> 24);
    *p += 4;
}

static void put_blob(uint8_t **p, const char *s)
{
    size_t n = strlen(s);
    put_u32(p, (uint32_t)n);
    memcpy(*p, s, n);
    *p += n;
}

static void packed_snapshot(void)
{
    uint8_t buf[256], *p = buf;
    mr_snapshot *s = NULL;
    size_t count = 0, len = 0;
    char ver[16];
    int k;
    printf("-- mr_snapshot_add_packed\n");
    memcpy(p, "MRS1", 4);
    p += 4;
    put_u32(&p, 1);
    put_blob(&p, T_EP);
    *p++ = 1;
    put_blob(&p, "e9");
    put_u32(&p, 2);
    put_blob(&p, "a");
    for (k = 0; k < 8; k++) {
        *p++ = 0xff; /* ttl -1 */
    }
    put_blob(&p, "ea");
    put_blob(&p, "b");
    memset(p, 0, 8);
    p += 8;
    put_blob(&p, "eb");
    if (!CHECK_ST(mr_snapshot_new("v1", &s), MR_OK)) {
        return;
    }
    CHECK_FAIL(mr_snapshot_add_packed(s, buf, (size_t)(p - buf) - 1), MR_PARSE);
    CHECK_FAIL(mr_snapshot_add_packed(s, (const uint8_t *)"XXXX\0\0\0\0", 8), MR_PARSE);
    CHECK_FAIL(mr_snapshot_add_packed(s, NULL, 4), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_add_packed(NULL, buf, (size_t)(p - buf)), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK(count == 0, "failed packed adds left the snapshot unchanged (%zu)", count);
    CHECK_ST(mr_snapshot_add_packed(s, buf, (size_t)(p - buf)), MR_OK);
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK(count == 2, "two resources added, got %zu", count);
    CHECK_ST(mr_snapshot_version(s, T_EP, ver, sizeof ver, &len), MR_OK);
    CHECK(strcmp(ver, "e9") == 0, "type version from the buffer, got \"%s\"", ver);
    CHECK_FAIL(mr_snapshot_add_packed(s, buf, (size_t)(p - buf)), MR_INVALID_ARGUMENT); /* duplicates */
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK(count == 2, "a duplicate batch adds nothing, got %zu", count);
    CHECK_ST(mr_snapshot_remove_resource(s, T_EP, "a"), MR_OK);
    CHECK_FAIL(mr_snapshot_remove_resource(s, T_EP, "a"), MR_NOT_FOUND);
    CHECK_FAIL(mr_snapshot_remove_resource(s, "type.example/none", "b"), MR_NOT_FOUND);
    CHECK_FAIL(mr_snapshot_remove_resource(s, T_EP, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_snapshot_remove_resource(NULL, T_EP, "b"), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_snapshot_resource_count(s, T_EP, &count), MR_OK);
    CHECK(count == 1, "one resource left after removing a, got %zu", count);
    CHECK_ST(add(s, T_EP, "a", "ea-new"), MR_OK); /* replace = remove + add */
    mr_snapshot_free(s);
}

/* A queued watch whose event nobody takes: freeing the cache releases the
 * event and the watch (valgrind and LeakSanitizer see any leak), also over
 * many cycles (RSS stays flat). */
static void untaken_events_are_freed(void)
{
    int round, rounds = g_slow ? 200 : 20000;
    long before = 0;
    printf("-- queued events nobody takes are freed with the cache\n");
    for (round = 0; round < rounds; round++) {
        mr_cache *c = NULL;
        mr_cache_watch_h *w = NULL;
        mr_watch_request req;
        mr_snapshot *s;
        if (round == rounds / 10) {
            before = rss_kib();
        }
        if (!CHECK_ST(mr_cache_new(NULL, &c), MR_OK)) {
            return;
        }
        req_for(&req, "n", T_EP, "");
        req.flags = MR_WATCH_QUEUED;
        req.token = 1;
        CHECK_ST(mr_cache_watch(c, &req, &w), MR_OK);
        s = snap_with("v1", "eb");
        CHECK_ST(mr_cache_set_snapshot(c, "n", s), MR_OK);
        mr_snapshot_free(s);
        if (round & 1) {
            mr_cache_watch_free(w);
            mr_cache_free(c);
        } else {
            mr_cache_free(c);
            mr_cache_watch_free(w);
        }
    }
#if !defined(__SANITIZE_ADDRESS__) /* ASan's allocator keeps its own memory; LeakSanitizer checks leaks there */
    if (!g_slow) {
        long after = rss_kib();
        CHECK(after - before < 2048, "RSS over %d cycles: %ld -> %ld KiB (a leak of ~270 B per cycle adds 5 MiB)", rounds, before, after);
    }
#else
    (void)before;
#endif
}

/* Watches of several nodes that ask the same of one snapshot get the same
 * bytes (one shared, read-only buffer); each mr_bytes is released on its
 * own, in any order, and the bytes stay valid until the last release. */
static void shared_answers(void)
{
    mr_cache *c = NULL;
    mr_cache_watch_h *w[3] = {NULL, NULL, NULL};
    mr_bytes m[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    mr_watch_request req;
    mr_snapshot *s = snap_with("v1", "eb");
    const char *nodes[3] = {"n0", "n1", "n2"};
    uint8_t copy[4096];
    size_t len;
    int i;
    printf("-- one answer shared by the watches that asked the same\n");
    if (!CHECK_ST(mr_cache_new(NULL, &c), MR_OK)) {
        mr_snapshot_free(s);
        return;
    }
    for (i = 0; i < 3; i++) {
        CHECK_ST(mr_cache_set_snapshot(c, nodes[i], s), MR_OK);
        req_for(&req, nodes[i], T_EP, "");
        CHECK_ST(mr_cache_watch(c, &req, &w[i]), MR_OK);
        CHECK_ST(mr_cache_watch_next(w[i], 0, &m[i]), MR_OK);
    }
    CHECK(m[0].ptr != NULL && m[0].ptr == m[1].ptr && m[1].ptr == m[2].ptr && m[0].len == m[2].len,
          "three watches, one buffer (%p %p %p)", (const void *)m[0].ptr, (const void *)m[1].ptr, (const void *)m[2].ptr);
    len = m[0].len < sizeof copy ? m[0].len : sizeof copy;
    memcpy(copy, m[0].ptr, len);
    mr_bytes_free(&m[1]);
    for (i = 0; i < 3; i++) {
        mr_cache_watch_free(w[i]);
    }
    mr_snapshot_free(s);
    mr_cache_free(c);
    /* m[0] and m[2] outlive their watches and the cache. */
    CHECK(m[1].ptr == NULL && m[1].len == 0, "a released mr_bytes is reset");
    CHECK(memcmp(copy, m[2].ptr, len) == 0, "bytes intact after other releases and the cache's end");
    mr_bytes_free(&m[0]);
    CHECK(memcmp(copy, m[2].ptr, len) == 0, "bytes intact until the last release");
    mr_bytes_free(&m[2]);
    mr_bytes_free(&m[2]); /* released already: a no-op */
}

/* A delta stream that continues in the library: each watch opened after the
 * previous one, with no versions passed in or encoded out. */
static void delta_after(void)
{
    mr_cache *c;
    mr_cache_watch_h *w = NULL, *w2 = NULL, *w3 = NULL, *sotw = NULL;
    mr_watch_request req;
    mr_bytes m = {NULL, 0};
    struct resp r;
    mr_snapshot *s;
    const char *names[1] = {"a"};
    const char *versions[1] = {"x"};
    printf("-- delta watches opened after the previous one (state kept in the library)\n");
    if ((c = new_cache(0)) == NULL) {
        return;
    }
    s = snap_with("v1", "eb");
    CHECK_ST(mr_cache_set_snapshot(c, "n", s), MR_OK);
    req_for(&req, "n", T_EP, NULL);
    req.flags = MR_WATCH_WILDCARD | MR_WATCH_FIRST;
    CHECK_ST(mr_cache_delta_watch(c, &req, &w), MR_OK);
    /* Not taken yet: nothing to continue from. */
    req.flags = MR_WATCH_WILDCARD;
    CHECK_FAIL(mr_cache_delta_watch_after(c, w, &req, &w2), MR_INVALID_ARGUMENT);
    CHECK(w2 == NULL, "no handle on failure");
    if (take(w, 0, &r, &m)) {
        CHECK(r.n_res == 2 && r.n_next == 2 && (r.flags & 2) == 0, "first answer: both, with its next state");
    }
    mr_bytes_free(&m);
    /* Bad continuations. */
    CHECK_FAIL(mr_cache_delta_watch_after(c, NULL, &req, &w2), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_cache_delta_watch_after(NULL, w, &req, &w2), MR_INVALID_ARGUMENT);
    req.known_names = names;
    req.known_versions = versions;
    req.n_known = 1;
    CHECK_FAIL(mr_cache_delta_watch_after(c, w, &req, &w2), MR_INVALID_ARGUMENT);
    req.known_names = NULL;
    req.known_versions = NULL;
    req.n_known = 0;
    req.type_url = T_CL;
    CHECK_FAIL(mr_cache_delta_watch_after(c, w, &req, &w2), MR_INVALID_ARGUMENT);
    req.type_url = T_EP;
    CHECK_ST(mr_cache_watch(c, &req, &sotw), MR_OK);
    CHECK_FAIL(mr_cache_delta_watch_after(c, sotw, &req, &w2), MR_INVALID_ARGUMENT);
    mr_cache_watch_free(sotw);

    /* The continuation parks (nothing changed); the previous handle can go. */
    CHECK_ST(mr_cache_delta_watch_after(c, w, &req, &w2), MR_OK);
    mr_cache_watch_free(w);
    CHECK(mr_cache_watch_pending(w2) == 1, "parked: nothing changed");
    CHECK_ST(mr_snapshot_remove_resource(s, T_EP, "b"), MR_OK);
    CHECK_ST(add(s, T_EP, "b", "eb2"), MR_OK);
    CHECK_ST(mr_snapshot_remove_resource(s, T_EP, "a"), MR_OK);
    CHECK_ST(mr_cache_set_snapshot(c, "n", s), MR_OK);
    if (take(w2, 0, &r, &m)) {
        CHECK(r.n_res == 1 && res_is(&r, "b", "eb2"), "only the changed resource");
        CHECK(r.n_removed == 1 && strcmp(r.removed[0], "a") == 0, "and the removed one");
        CHECK(r.n_next == 0 && (r.flags & 2) != 0, "no next state encoded: kept in the library (flags %#x)", r.flags);
    }
    mr_bytes_free(&m);
    /* And again after that one. */
    CHECK_ST(mr_cache_delta_watch_after(c, w2, &req, &w3), MR_OK);
    mr_cache_watch_free(w2);
    CHECK(mr_cache_watch_pending(w3) == 1, "parked again");
    CHECK_ST(add(s, T_EP, "a", "ea3"), MR_OK);
    CHECK_ST(mr_cache_set_snapshot(c, "n", s), MR_OK);
    if (take(w3, 0, &r, &m)) {
        CHECK(r.n_res == 1 && res_is(&r, "a", "ea3") && r.n_removed == 0, "the re-added resource alone");
    }
    mr_bytes_free(&m);
    mr_cache_watch_free(w3);
    mr_snapshot_free(s);
    mr_cache_free(c);
}

int main(int argc, char **argv)
{
    test_init(argc, argv);
    shared_answers();
    delta_after();
    ready_queue();
    packed_snapshot();
    snapshots();
    set_get_clear();
    sotw_watches();
    cancel_and_free();
    delta_watches();
    fetch_and_status();
    cleared_node();
    consistency();
    bad_input();
    create_free_cycles();
    untaken_events_are_freed();
    return test_finish("test_cache");
}
