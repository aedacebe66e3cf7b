/* feed: see feed.h. */
#define _GNU_SOURCE
#include "feed.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef enum { KIND_DEMO, KIND_LINES } FeedKind;

struct Feed {
    FeedKind kind;
    mr_bus *bus;
    GMainContext *ctx;
    FeedCallback cb;
    gpointer user;
    GThread *thread;
    gint stop;        /* atomic: the worker should end */
    _Atomic guint64 applied;
    GMutex mu;        /* guards go */
    GCond cond;
    gboolean go;
    DemoParams demo;
    int fd;           /* lines: the input (not closed when it is stdin) */
    int wake[2];      /* lines: feed_stop writes here to end a poll() */
};

/* ------------------------------------------------------------ events to the host */

typedef struct {
    FeedEvent ev;
    FeedCallback cb;
    gpointer user;
} Posted;

static gboolean dispatch(gpointer data) {
    Posted *p = data;
    p->cb(&p->ev, p->user);
    return G_SOURCE_REMOVE;
}

static void free_posted(gpointer data) {
    Posted *p = data;
    g_free(p->ev.text);
    g_free(p);
}

/* Queues an event for the host's main context; `text` is taken. */
static void post(Feed *f, FeedEventKind kind, char *text, guint64 count, gboolean bus_closed) {
    Posted *p = g_new0(Posted, 1);
    p->ev = (FeedEvent){kind, text, count, bus_closed};
    p->cb = f->cb;
    p->user = f->user;
    g_main_context_invoke_full(f->ctx, G_PRIORITY_DEFAULT, dispatch, p, free_posted);
}

static char *status_text(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    return g_strdup_printf("%s: %s: %s", what, mr_status_str(st), msg);
}

static gboolean stopping(Feed *f) { return g_atomic_int_get(&f->stop) != 0; }

/* Feeds yield the CPU to the UI thread: this thread runs at nice +10
 * (Linux applies nice per thread). Best effort: failing changes nothing. */
static void lower_priority(void) {
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) {
        /* not permitted here: run at the normal priority */
    }
}

/* ------------------------------------------------------------ the demo tailnet */

typedef struct {
    gint64 *alive;   /* IDs of the peers in the tailnet, unordered */
    guint n_alive, cap;
    gint32 *slot;    /* slot[id]: index in alive, or -1 */
    gint64 slot_cap;
    gint64 next_id;  /* the next ID a joining peer gets */
    guint64 rng;
} Demo;

static guint64 rnd(Demo *d) { /* xorshift64* */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * UINT64_C(0x2545F4914F6CDD1D);
}

static void demo_add(Demo *d, gint64 id) {
    if (id >= d->slot_cap) {
        gint64 cap = MAX(d->slot_cap * 2, id + 1024);
        d->slot = g_renew(gint32, d->slot, cap);
        for (gint64 i = d->slot_cap; i < cap; i++) d->slot[i] = -1;
        d->slot_cap = cap;
    }
    if (d->n_alive == d->cap) {
        d->cap = MAX(d->cap * 2, 1024u);
        d->alive = g_renew(gint64, d->alive, d->cap);
    }
    d->slot[id] = (gint32)d->n_alive;
    d->alive[d->n_alive++] = id;
}

static void demo_remove(Demo *d, gint64 id) {
    gint32 i = d->slot[id];
    gint64 last = d->alive[--d->n_alive];
    d->alive[i] = last;
    d->slot[last] = i;
    d->slot[id] = -1;
}

static gint64 demo_pick(Demo *d) { return d->n_alive ? d->alive[rnd(d) % d->n_alive] : 0; }

/* RFC 3339 UTC, `ago_s` seconds before now. */
static void rfc3339(char out[32], gint64 ago_s) {
    time_t t = time(NULL) - (time_t)ago_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *const roles[] = {"laptop", "build", "db", "web", "nas", "phone", "camera", "router"};
static const char *const role_os[] = {"macOS", "linux", "linux", "linux", "linux", "iOS", "linux", "linux"};

/* One tailcfg.Node. Name, addresses and role follow from the ID; the
 * rest (a router's subnet, online state, endpoint, DERP home) is drawn
 * anew each time, so a replacement changes them. */
static void node_json(GString *s, Demo *d, gint64 id) {
    guint role = (guint)(id % G_N_ELEMENTS(roles));
    guint64 v = rnd(d);
    int a = 64 + (int)((id >> 16) & 63), b = (int)((id >> 8) & 255), c = (int)(id & 255);
    g_string_append_printf(s,
                           "{\"ID\":%" G_GINT64_FORMAT ",\"StableID\":\"n%" G_GINT64_FORMAT "\","
                           "\"Name\":\"%s-%" G_GINT64_FORMAT ".tail.example.ts.net.\",\"User\":%d,"
                           "\"Addresses\":[\"100.%d.%d.%d/32\",\"fd7a:115c:a1e0::%" G_GINT64_MODIFIER "x/128\"],"
                           "\"AllowedIPs\":[\"100.%d.%d.%d/32\",\"fd7a:115c:a1e0::%" G_GINT64_MODIFIER "x/128\"",
                           id, id, roles[role], id, (int)(id % 16), a, b, c, id, a, b, c, id);
    if (role == 7) /* subnet router: one /24 (replacements move it) */
        g_string_append_printf(s, ",\"10.%d.%d.0/24\"", (int)(id % 250), (int)(v % 4));
    if (id % 97 == 0) /* exit node */
        g_string_append(s, ",\"0.0.0.0/0\",\"::/0\"");
    gboolean online = v % 10 < 8;
    g_string_append_printf(s, "],\"Endpoints\":[\"198.51.100.%d:41641\"],\"HomeDERP\":%d,\"Online\":%s",
                           (int)(v / 16 % 250 + 1), (int)(v / 4096 % 12 + 1), online ? "true" : "false");
    if (!online) {
        char ts[32];
        rfc3339(ts, (gint64)(v / 65536 % 86400));
        g_string_append_printf(s, ",\"LastSeen\":\"%s\"", ts);
    }
    g_string_append_printf(s, ",\"Hostinfo\":{\"Hostname\":\"%s-%" G_GINT64_FORMAT "\",\"OS\":\"%s\"}}",
                           roles[role], id, role_os[role]);
}

static gboolean apply(Feed *f, const GString *s, mr_status *st) {
    *st = mr_bus_apply(f->bus, (const uint8_t *)s->str, s->len);
    return *st == MR_OK;
}

/* One delta as one MapResponse into `s`. FALSE if there is nothing to change. */
static gboolean demo_delta(Demo *d, int target, GString *s) {
    g_string_truncate(s, 0);
    if (target <= 0 && d->n_alive == 0) return FALSE;
    guint r = (guint)(rnd(d) % 100);
    guint lo = (guint)(target - target / 20), hi = (guint)(target + target / 20 + 1);
    if (d->n_alive < lo || d->n_alive == 0 || (r < 10 && d->n_alive < hi)) {
        gint64 id = d->next_id++;
        g_string_append(s, "{\"PeersChanged\":[");
        node_json(s, d, id);
        g_string_append(s, "]}");
        demo_add(d, id);
    } else if (r < 20 && d->n_alive > lo) {
        gint64 id = demo_pick(d);
        g_string_append_printf(s, "{\"PeersRemoved\":[%" G_GINT64_FORMAT "]}", id);
        demo_remove(d, id);
    } else if (r < 40) {
        g_string_append(s, "{\"PeersChanged\":[");
        node_json(s, d, demo_pick(d));
        g_string_append(s, "]}");
    } else {
        gint64 id = demo_pick(d);
        guint64 v = rnd(d);
        g_string_append_printf(s, "{\"PeersChangedPatch\":[{\"NodeID\":%" G_GINT64_FORMAT, id);
        switch (v % 4) {
        case 0: g_string_append(s, ",\"Online\":true"); break;
        case 1: {
            char ts[32];
            rfc3339(ts, 0);
            g_string_append_printf(s, ",\"Online\":false,\"LastSeen\":\"%s\"", ts);
            break;
        }
        case 2: g_string_append_printf(s, ",\"DERPRegion\":%d", (int)(v / 4 % 12 + 1)); break;
        default:
            g_string_append_printf(s, ",\"Endpoints\":[\"203.0.113.%d:%d\"]", (int)(v / 4 % 250 + 1),
                                   (int)(v / 1024 % 60000 + 1024));
        }
        g_string_append(s, "}]}");
    }
    return TRUE;
}

static void demo_netmap(Demo *d, int peers, GString *s) {
    g_string_append(s, "{\"Node\":{\"ID\":1,\"StableID\":\"nself\",\"Name\":\"this-node.tail.example.ts.net.\","
                       "\"User\":0,\"Addresses\":[\"100.64.0.1/32\",\"fd7a:115c:a1e0::1/128\"],"
                       "\"Hostinfo\":{\"Hostname\":\"this-node\",\"OS\":\"linux\"}},"
                       "\"Domain\":\"tail.example.ts.net\",\"UserProfiles\":[");
    for (int u = 0; u < 16; u++)
        g_string_append_printf(s, "%s{\"ID\":%d,\"LoginName\":\"user%d@example.com\",\"DisplayName\":\"User %d\"}",
                               u ? "," : "", u, u, u);
    g_string_append(s, "],\"Peers\":[");
    for (int i = 0; i < peers; i++) {
        gint64 id = d->next_id++;
        if (i) g_string_append_c(s, ',');
        node_json(s, d, id);
        demo_add(d, id);
    }
    g_string_append(s, "]}");
}

static gpointer demo_main(gpointer data) {
    Feed *f = data;
    lower_priority();
    Demo d = {.next_id = 2, .rng = f->demo.seed ? f->demo.seed : UINT64_C(0x9E3779B97F4A7C15)};
    GString *s = g_string_sized_new(4096);
    mr_status st = MR_OK;
    char *why = NULL;
    guint64 n = 0;

    demo_netmap(&d, f->demo.peers, s);
    if (!apply(f, s, &st)) goto out;
    g_string_assign(s, "{\"State\":6}"); /* Running */
    st = mr_bus_publish(f->bus, (const uint8_t *)s->str, s->len);
    if (st != MR_OK) goto out;
    post(f, FEED_NETMAP, NULL, (guint64)f->demo.peers, FALSE);

    if (f->demo.gated) {
        g_mutex_lock(&f->mu);
        while (!f->go && !stopping(f)) g_cond_wait(&f->cond, &f->mu);
        g_mutex_unlock(&f->mu);
    }
    if (f->demo.rate <= 0 || f->demo.max_deltas == 0 || f->demo.peers == 0) {
        why = g_strdup("demo: netmap applied, no deltas to stream");
        goto out;
    }
    post(f, FEED_STREAMING, NULL, 0, FALSE);

    /* Paced stream: every ~2 ms apply what is due by now. */
    gint64 t0 = g_get_monotonic_time();
    for (;;) {
        if (stopping(f)) break;
        double elapsed = (double)(g_get_monotonic_time() - t0) / 1e6;
        if (f->demo.seconds > 0 && elapsed >= f->demo.seconds) break;
        guint64 due = (guint64)(elapsed * f->demo.rate);
        if (f->demo.max_deltas >= 0 && due > (guint64)f->demo.max_deltas) due = (guint64)f->demo.max_deltas;
        while (n < due && !stopping(f)) {
            if (!demo_delta(&d, f->demo.peers, s)) break;
            if (!apply(f, s, &st)) goto out;
            n++;
            atomic_store(&f->applied, n);
        }
        if (f->demo.max_deltas >= 0 && n >= (guint64)f->demo.max_deltas) break;
        g_usleep(2000);
    }
    why = g_strdup_printf("demo: %" G_GUINT64_FORMAT " deltas streamed", n);
out:
    if (st == MR_CLOSED) {
        g_free(why);
        post(f, FEED_DONE, g_strdup("demo: the bus is closed"), n, TRUE);
    } else if (st != MR_OK) {
        g_free(why);
        post(f, FEED_DONE, status_text("demo: feeding the bus", st), n, FALSE);
    } else {
        post(f, FEED_DONE, why, n, FALSE);
    }
    g_string_free(s, TRUE);
    g_free(d.alive);
    g_free(d.slot);
    return NULL;
}

Feed *feed_demo_start(mr_bus *bus, const DemoParams *p, GMainContext *ctx, FeedCallback cb, gpointer user) {
    Feed *f = g_new0(Feed, 1);
    f->kind = KIND_DEMO;
    f->bus = bus;
    f->ctx = ctx;
    f->cb = cb;
    f->user = user;
    f->demo = *p;
    f->fd = f->wake[0] = f->wake[1] = -1;
    g_mutex_init(&f->mu);
    g_cond_init(&f->cond);
    f->thread = g_thread_new("demo-feed", demo_main, f);
    return f;
}

/* ------------------------------------------------------------ MapResponse lines */

static gpointer lines_main(gpointer data) {
    Feed *f = data;
    lower_priority();
    GString *buf = g_string_sized_new(65536);
    guint64 line_no = 0, good = 0, bad = 0;
    char chunk[65536];
    gboolean eof = FALSE, closed = FALSE;

    while (!eof && !closed && !stopping(f)) {
        struct pollfd pfd[2] = {{f->fd, POLLIN, 0}, {f->wake[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) continue;
            post(f, FEED_ERROR, g_strdup_printf("feed: poll: %s", g_strerror(errno)), 0, FALSE);
            break;
        }
        if (pfd[1].revents) break; /* feed_stop */
        ssize_t got = read(f->fd, chunk, sizeof chunk);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            post(f, FEED_ERROR, g_strdup_printf("feed: read: %s", g_strerror(errno)), 0, FALSE);
            break;
        }
        if (got == 0) {
            eof = TRUE;
            g_string_append_c(buf, '\n'); /* a last line without its newline */
        } else {
            g_string_append_len(buf, chunk, got);
        }
        /* Apply every complete line; keep the partial tail for the next read. */
        gsize start = 0;
        for (;;) {
            char *nl = memchr(buf->str + start, '\n', buf->len - start);
            if (nl == NULL) break;
            gsize end = (gsize)(nl - buf->str);
            char *line = buf->str + start;
            gsize len = end - start;
            start = end + 1;
            line_no++;
            while (len && g_ascii_isspace(line[len - 1])) len--;
            while (len && g_ascii_isspace(*line)) line++, len--;
            if (len == 0) continue;
            mr_status st = mr_bus_apply(f->bus, (const uint8_t *)line, len);
            if (st == MR_OK) {
                atomic_store(&f->applied, ++good);
                if (good == 1) post(f, FEED_NETMAP, NULL, 0, FALSE); /* the bus has its first map */
            } else if (st == MR_CLOSED) {
                closed = TRUE;
                break;
            } else {
                bad++;
                char *what = g_strdup_printf("feed line %" G_GUINT64_FORMAT, line_no);
                post(f, FEED_ERROR, status_text(what, st), bad, FALSE);
                g_free(what);
            }
        }
        g_string_erase(buf, 0, (gssize)start);
    }
    if (closed) post(f, FEED_DONE, g_strdup("feed: the bus is closed"), good, TRUE);
    else
        post(f, FEED_DONE,
             g_strdup_printf("feed %s: %" G_GUINT64_FORMAT " lines applied, %" G_GUINT64_FORMAT " rejected",
                             eof ? "ended" : "stopped", good, bad),
             good, FALSE);
    g_string_free(buf, TRUE);
    return NULL;
}

Feed *feed_lines_start(mr_bus *bus, const char *path, GMainContext *ctx, FeedCallback cb, gpointer user,
                       GError **error) {
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
        return NULL;
    }
    Feed *f = g_new0(Feed, 1);
    f->kind = KIND_LINES;
    f->bus = bus;
    f->ctx = ctx;
    f->cb = cb;
    f->user = user;
    f->fd = fd;
    if (!g_unix_open_pipe(f->wake, FD_CLOEXEC, error)) {
        if (fd != STDIN_FILENO) close(fd);
        g_free(f);
        return NULL;
    }
    g_mutex_init(&f->mu);
    g_cond_init(&f->cond);
    f->thread = g_thread_new("line-feed", lines_main, f);
    return f;
}

/* ------------------------------------------------------------ control */

void feed_go(Feed *f) {
    if (f == NULL) return;
    g_mutex_lock(&f->mu);
    f->go = TRUE;
    g_cond_broadcast(&f->cond);
    g_mutex_unlock(&f->mu);
}

guint64 feed_applied(Feed *f) { return f ? atomic_load(&f->applied) : 0; }

void feed_stop(Feed *f) {
    if (f == NULL) return;
    g_atomic_int_set(&f->stop, 1);
    g_mutex_lock(&f->mu);
    g_cond_broadcast(&f->cond);
    g_mutex_unlock(&f->mu);
    if (f->wake[1] >= 0 && write(f->wake[1], "x", 1) < 0) {
        /* The pipe cannot be full (one byte, written once); nothing to do. */
    }
    g_thread_join(f->thread);
    if (f->kind == KIND_LINES) {
        if (f->fd != STDIN_FILENO) close(f->fd);
        close(f->wake[0]);
        close(f->wake[1]);
    }
    g_mutex_clear(&f->mu);
    g_cond_clear(&f->cond);
    g_free(f);
}
