/*
 * feed: control streams that drive a notify bus from a worker thread, so
 * mr_bus_apply() never runs on the UI thread.
 *
 *   demo   generates a tailnet: one MapResponse with `peers` peers (self
 *          node, 16 user profiles, addresses, subnet and exit routes,
 *          DERP homes, online / last-seen), publishes State Running, then
 *          streams deltas at `rate` per second, one MapResponse each: peers
 *          joining and leaving (kept near `peers`), full-node replacements
 *          and narrow patches (Online / LastSeen, DERPRegion, Endpoints).
 *   lines  reads MapResponse JSON, one object per line, from a file or
 *          stdin ("-") and applies each; a line the bus rejects is
 *          reported and skipped. Reading waits in poll() on the input and a
 *          wake pipe, so feed_stop() ends it promptly even on a quiet stdin.
 *
 * Progress and errors reach the host as FeedEvents, invoked on the
 * GMainContext given at start (never on the worker thread).
 */
#ifndef MESHRING_GTK_FEED_H
#define MESHRING_GTK_FEED_H

#include "meshring.h"

#include <glib.h>

typedef struct Feed Feed;

typedef enum {
    FEED_NETMAP,    /* demo: the initial netmap is applied (count = peers) */
    FEED_STREAMING, /* demo: deltas start (after feed_go() when gated) */
    FEED_ERROR,     /* text says what failed (a rejected line, an apply error) */
    FEED_DONE,      /* the stream ended: text says why; count = deltas or lines applied */
} FeedEventKind;

typedef struct {
    FeedEventKind kind;
    char *text;      /* may be NULL */
    guint64 count;
    gboolean bus_closed; /* FEED_DONE because the bus was closed */
} FeedEvent;

typedef void (*FeedCallback)(const FeedEvent *ev, gpointer user);

typedef struct {
    int peers;          /* target size of the tailnet (0: an empty netmap, no deltas) */
    double rate;        /* deltas per second (<= 0: no deltas) */
    gint64 max_deltas;  /* stop after this many (< 0: no limit) */
    double seconds;     /* stop after streaming this long (<= 0: no limit) */
    guint64 seed;       /* the generator's seed: the same seed gives the same tailnet */
    gboolean gated;     /* after the netmap, wait for feed_go() before streaming */
} DemoParams;

Feed *feed_demo_start(mr_bus *bus, const DemoParams *p, GMainContext *ctx, FeedCallback cb, gpointer user);

/* `path` "-" reads stdin. NULL (with `error` set) if the file cannot be opened. */
Feed *feed_lines_start(mr_bus *bus, const char *path, GMainContext *ctx, FeedCallback cb, gpointer user,
                       GError **error);

/* Releases a gated demo feed into its delta stream. */
void feed_go(Feed *f);

/* Deltas (demo) or lines (lines) applied so far; any thread. */
guint64 feed_applied(Feed *f);

/* Stops the worker, waits for it and frees the feed. NULL is a no-op. */
void feed_stop(Feed *f);

#endif
