/*
 * meshring-gtk: "meshring node", a GTK 4 window onto an embedded meshring.
 *
 *   meshring-gtk --demo [--peers N] [--rate R]    a generated tailnet with churn
 *   meshring-gtk --feed FILE|-                    MapResponse JSON lines
 *   meshring-gtk                                  an empty bus (empty state)
 *   meshring-gtk --script --dump-model M.json --screenshot S.png [--close-bus] ...
 *   meshring-gtk --bench SECONDS                  main-loop stall under 20k deltas/s
 *
 * What runs where:
 *   - A notify bus (mr_bus) holds the network map. A feed thread (feed.c)
 *     is the only writer: it calls mr_bus_apply, never the UI thread.
 *     Feed threads run at nice +10, so under load the UI thread gets the CPU.
 *   - One watcher (mr_watcher, InitialNetMap | PeerPatches, plus the
 *     library's chunked initial view: the map arrives in INITIAL_CHUNK-peer
 *     messages instead of one message of every peer) is read on the UI
 *     thread: its readiness fd is a GLib source (g_unix_fd_add), and each
 *     dispatch reads messages with timeout 0 and applies them for at most
 *     DRAIN_BUDGET_US (a large message is applied in steps across
 *     dispatches), so the thread never waits in the library and a burst is
 *     spread over several main-loop iterations. The source runs below
 *     GTK's redraw priority: frames are drawn between drains however busy
 *     the bus is. --unchunked asks for the whole map in one first message.
 *   - Each message is parsed with json-glib and applied to PeerTable
 *     (peer_model.c): rows are updated in place, only changed properties
 *     notify, only inserted / removed rows emit items-changed (new rows at
 *     the end join in one splice per dispatch). The GtkColumnView creates
 *     widgets for the visible rows only, so the cost per delta does not
 *     grow with the peer count (100k peers work). With GTK 4.8 the list
 *     widget's own work per inserted / removed row (~0.1 ms) and per
 *     frame (layout ~10-15 ms under 20k deltas/s) is the main cost; see
 *     --bench, which also reports where the time went.
 *   - A lifecycle runtime (mr_runtime) with a `netmap` protocol attached
 *     to the bus and two `static` protocols fills the protocols pane: its
 *     event fd is another GLib source (state events, applied in place);
 *     enable / disable / restart run on a GTask worker thread, because
 *     they return only after the protocol's callbacks have run.
 *   - A poller thread asks the library once a second for what has no
 *     event (mr_bus_stats: backend state; show protocols: route counts)
 *     and hands the answers to the UI thread.
 *
 * Every meshring call's status is checked; failures show in the status
 * line (or on stderr before the window exists) with mr_last_error().
 */
#define _GNU_SOURCE
#include "feed.h"
#include "json_util.h"
#include "meshring.h"
#include "peer_model.h"
#include "proto_model.h"

#include <gtk/gtk.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* How long one dispatch of the watcher source may apply messages. */
#define DRAIN_BUDGET_US 4000
/* Below GDK_PRIORITY_REDRAW (G_PRIORITY_HIGH_IDLE + 20): drawing wins. */
#define WATCH_PRIORITY (G_PRIORITY_HIGH_IDLE + 30)
/* Peers per initial-view message (the bus's initial_chunk option). */
#define INITIAL_CHUNK 500
/* The longest a --script session may take before it fails. */
#define SCRIPT_DEADLINE_S 60

/* The runtime's configuration: the tailnet's routes from the bus, two static tables. */
static const char *const RUNTIME_CONFIG =
    "{\"protocols\":["
    "{\"name\":\"tailnet\",\"kind\":\"netmap\"},"
    "{\"name\":\"lan\",\"kind\":\"static\",\"routes\":["
    "{\"prefix\":\"192.168.1.0/24\",\"attrs\":{\"dev\":\"eth0\"}},"
    "{\"prefix\":\"192.168.2.0/24\",\"attrs\":{\"dev\":\"eth0\"}}]},"
    "{\"name\":\"blackhole\",\"kind\":\"static\",\"preference\":50,\"routes\":["
    "{\"prefix\":\"198.18.0.0/15\",\"attrs\":{\"type\":\"blackhole\"}}]}]}";

typedef struct {
    gboolean demo;
    char *feed_path;
    int peers;
    double rate;
    gint64 deltas;
    gint64 seed;
    gboolean unchunked;
    gboolean script;
    char *dump_path;
    char *shot_path;
    gboolean close_bus;
    char *disable_name;
    double bench_seconds;
} Options;

typedef enum { SC_FEED, SC_CATCH_UP, SC_DISABLE, SC_WAIT_ACTION, SC_REFRESH, SC_DRAW, SC_FINISH } ScriptStep;

typedef struct Poller Poller;

typedef struct {
    Options opt;
    GtkApplication *gapp;
    int exit_code;

    /* library handles */
    mr_bus *bus;
    mr_watcher *watcher;
    mr_runtime *rt;
    guint watcher_src, runtime_src;
    atomic_int actions_in_flight; /* GTask workers using rt */

    /* view model */
    JsonParser *parser;
    PeerTable *peers;
    PeerApplyCursor cursor;   /* the message being applied, if any */
    guint continue_src;
    GListStore *protos;
    Feed *feed;
    Poller *poller;
    gboolean bus_closed, initial_complete, feed_done;
    char *backend_state, *feed_text, *error_text, *action_text;
    guint64 messages, deltas, deltas_at_tick, feed_errors, polls;
    gint64 tick_time;
    double deltas_per_s;

    /* widgets */
    GtkWidget *window, *self_label, *banner, *stack, *empty_label, *status_label;
    GtkWidget *action_label, *btn_enable, *btn_disable, *btn_restart;
    GtkSingleSelection *proto_sel;
    gboolean action_running;

    /* --script */
    ScriptStep step;
    gint64 script_deadline, draw_frames_at;
    guint64 polls_at;
    guint frames;
    int quiet_ticks;
    gboolean closed_by_script;

    /* --bench: gaps between invocations of a 1 ms high-priority timeout */
    gint64 last_beat, max_gap, load_max_gap, bench_start;
    guint64 gaps_over_16ms, frames_at_start, msgs_at_start;
    gint64 frame_start, layout_end, max_frame, max_layout, max_paint, max_drain; /* where the time went */
    gsize max_msg;
    gboolean drain_clean;
} App;

static void update_status(App *app);
static void update_empty_state(App *app);

/* ------------------------------------------------------------ errors */

/* "what: MR_X: message" for a failed call (read on the calling thread). */
static char *mr_error_text(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    return g_strdup_printf("%s: %s: %s", what, mr_status_str(st), msg);
}

/* A readiness-fd getter returned -1. */
static char *fd_error_text(const char *what) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    return g_strdup_printf("%s returned -1: %s", what, msg);
}

/* Before the window exists: print and exit. */
static void die(const char *what, mr_status st) {
    char *t = mr_error_text(what, st);
    g_printerr("meshring-gtk: %s\n", t);
    g_free(t);
    exit(1);
}

/* In the window: the status line shows the last error. */
static void show_error(App *app, char *text /* taken */) {
    g_printerr("meshring-gtk: %s\n", text);
    g_free(app->error_text);
    app->error_text = text;
    update_status(app);
}

/* ------------------------------------------------------------ the watcher source */

static void on_bus_closed(App *app) {
    if (app->bus_closed) return;
    app->bus_closed = TRUE;
    gtk_widget_set_visible(app->banner, TRUE);
    update_status(app);
}

/* Book-keeping once a message is fully applied. */
static void message_done(App *app, const PeerApplyResult *r) {
    app->messages++;
    /* Peer changes after the initial view count as deltas (the view's load does not). */
    if (app->initial_complete) app->deltas += r->added + r->updated + r->removed + r->patched;
    if (r->state >= 0) {
        g_free(app->backend_state);
        app->backend_state = g_strdup(ipn_state_name(r->state));
    }
    if (r->netmap || r->initial_complete) {
        char *self = g_strdup_printf("this node: %s   %s", app->peers->self_name ? app->peers->self_name : "?",
                                     app->peers->self_addresses ? app->peers->self_addresses : "");
        gtk_label_set_text(GTK_LABEL(app->self_label), self);
        g_free(self);
    }
    /* The initial view is complete with the NetMap message itself, or, in
     * chunks, with the message marked InitialComplete. */
    if (!app->initial_complete && (r->initial_complete || (r->netmap && app->opt.unchunked))) {
        app->initial_complete = TRUE;
        if (app->opt.bench_seconds > 0) {
            /* Load done: measure the stream from here on. */
            app->load_max_gap = app->max_gap;
            app->max_gap = 0;
            app->gaps_over_16ms = 0;
            app->last_beat = g_get_monotonic_time();
            app->bench_start = app->last_beat;
            app->frames_at_start = app->frames;
            app->msgs_at_start = app->messages;
            app->max_frame = app->max_drain = app->max_layout = app->max_paint = 0;
            app->drain_clean = FALSE;
            feed_go(app->feed);
        }
        update_status(app);
    }
}

static gboolean on_watcher_continue(gpointer data);

/* Applies pending messages for at most DRAIN_BUDGET_US: reads them with
 * timeout 0 and applies each in steps, so even a large message yields
 * when the budget is spent; the rest follows on a later iteration, after
 * GTK has drawn. New rows join the list once per call (peer_table_flush).
 * FALSE once the watcher has ended (bus closed or an error). */
static gboolean drain(App *app) {
    gint64 start = g_get_monotonic_time(), deadline = start + DRAIN_BUDGET_US;
    gboolean alive = TRUE;
    for (;;) {
        if (app->cursor.root == NULL) {
            mr_bytes msg = {NULL, 0};
            mr_status st = mr_watcher_next(app->watcher, 0, &msg);
            if (st == MR_WOULD_BLOCK) break;
            if (st == MR_CLOSED) {
                on_bus_closed(app);
                alive = FALSE;
                break;
            }
            if (st != MR_OK) {
                show_error(app, mr_error_text("mr_watcher_next", st));
                alive = FALSE;
                break;
            }
            if (msg.len > app->max_msg && app->initial_complete) app->max_msg = msg.len;
            GError *err = NULL;
            gboolean parsed = json_parser_load_from_data(app->parser, (const char *)msg.ptr, (gssize)msg.len, &err);
            mr_bytes_free(&msg);
            if (!parsed) {
                show_error(app, g_strdup_printf("a Notify message is not JSON: %s", err->message));
                g_error_free(err);
                continue;
            }
            peer_table_begin(app->peers, &app->cursor, json_parser_steal_root(app->parser));
        }
        if (!peer_table_step(app->peers, &app->cursor, deadline)) break; /* budget spent mid-message */
        message_done(app, &app->cursor.result);
        if (g_get_monotonic_time() >= deadline) break;
    }
    peer_table_flush(app->peers);
    update_empty_state(app);
    /* A message cut short is finished from an idle callback: the fd may
     * not fire again if it was the last one. */
    if (app->cursor.root && !app->continue_src)
        app->continue_src = g_idle_add_full(WATCH_PRIORITY, on_watcher_continue, app, NULL);
    gint64 took = g_get_monotonic_time() - start;
    if (app->drain_clean && took > app->max_drain) app->max_drain = took;
    app->drain_clean = app->initial_complete; /* measure whole dispatches after the load only */
    return alive;
}

static gboolean on_watcher_continue(gpointer data) {
    App *app = data;
    app->continue_src = 0;
    if (!drain(app) && app->watcher_src) {
        g_source_remove(app->watcher_src);
        app->watcher_src = 0;
    }
    return G_SOURCE_REMOVE;
}

/* The watcher's fd is readable: drain (see drain()). Returning with
 * messages left keeps the fd readable, so the source fires again. */
static gboolean on_watcher_ready(int fd, GIOCondition cond, gpointer data) {
    App *app = data;
    (void)fd;
    (void)cond;
    if (drain(app)) return G_SOURCE_CONTINUE;
    app->watcher_src = 0;
    return G_SOURCE_REMOVE;
}

/* Starts the watch. Done once the feed's first MapResponse is in the bus,
 * so the network map arrives as the initial view (in INITIAL_CHUNK-peer
 * messages) instead of one large PeersChanged. */
static void ensure_watcher(App *app) {
    if (app->watcher || app->bus_closed) return;
    uint64_t mask = MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_PEER_PATCHES;
    if (!app->opt.unchunked) mask |= MR_NOTIFY_CHUNKED_INITIAL;
    mr_status st = mr_bus_watch(app->bus, mask, &app->watcher);
    if (st == MR_CLOSED) {
        on_bus_closed(app);
        return;
    }
    if (st != MR_OK) {
        show_error(app, mr_error_text("mr_bus_watch", st));
        return;
    }
    int fd = mr_watcher_fd(app->watcher);
    if (fd < 0) {
        show_error(app, fd_error_text("mr_watcher_fd"));
        return;
    }
    app->watcher_src = g_unix_fd_add_full(WATCH_PRIORITY, fd, G_IO_IN, on_watcher_ready, app, NULL);
}

/* ------------------------------------------------------------ the runtime's events */

static void apply_protocol_json(App *app, JsonNode *root) {
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) return;
    JsonObject *o = json_node_get_object(root);
    JsonObject *p = ju_object(o, "Protocol");
    proto_list_apply(app->protos, p ? p : o);
}

static gboolean on_runtime_ready(int fd, GIOCondition cond, gpointer data) {
    App *app = data;
    (void)fd;
    (void)cond;
    for (;;) {
        mr_bytes ev = {NULL, 0};
        mr_status st = mr_runtime_next_event(app->rt, 0, &ev);
        if (st == MR_WOULD_BLOCK) return G_SOURCE_CONTINUE;
        if (st != MR_OK) {
            if (st != MR_CLOSED) show_error(app, mr_error_text("mr_runtime_next_event", st));
            app->runtime_src = 0;
            return G_SOURCE_REMOVE;
        }
        GError *err = NULL;
        if (json_parser_load_from_data(app->parser, (const char *)ev.ptr, (gssize)ev.len, &err))
            apply_protocol_json(app, json_parser_get_root(app->parser));
        else {
            show_error(app, g_strdup_printf("a runtime event is not JSON: %s", err->message));
            g_error_free(err);
        }
        mr_bytes_free(&ev);
    }
}

/* Fills the pane from `show protocols`. Events queued before this call
 * are drained first; events after it are newer than the snapshot. */
static void load_protocols(App *app) {
    on_runtime_ready(-1, G_IO_IN, app);
    mr_bytes show = {NULL, 0};
    mr_status st = mr_runtime_show_protocols(app->rt, &show);
    if (st != MR_OK) die("mr_runtime_show_protocols", st);
    JsonParser *p = json_parser_new();
    if (json_parser_load_from_data(p, (const char *)show.ptr, (gssize)show.len, NULL)) {
        JsonNode *root = json_parser_get_root(p);
        JsonArray *a = root && JSON_NODE_HOLDS_ARRAY(root) ? json_node_get_array(root) : NULL;
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
            JsonObject *o = ju_array_object(a, i);
            if (o) proto_list_apply(app->protos, o);
        }
    }
    g_object_unref(p);
    mr_bytes_free(&show);
}

/* ------------------------------------------------------------ enable / disable / restart */

typedef enum { OP_ENABLE, OP_DISABLE, OP_RESTART } ProtoOp;
static const char *const op_names[] = {"enable", "disable", "restart"};

typedef struct {
    App *app;
    mr_runtime *rt;
    ProtoOp op;
    char *name;
} ActionData;

static void action_data_free(gpointer p) {
    ActionData *a = p;
    g_free(a->name);
    g_free(a);
}

/* Worker thread: the call returns once the protocol's callbacks have run;
 * then wait (bounded) until its routes are flushed or fed. The name is
 * used as the pattern: it matches itself (protocol names have no glob
 * characters in this config). */
static void action_thread(GTask *task, gpointer src, gpointer data, GCancellable *c) {
    ActionData *a = data;
    App *app = a->app; /* `a` belongs to the task once its result is returned */
    (void)src;
    (void)c;
    size_t matched = 0;
    mr_status st = a->op == OP_ENABLE    ? mr_runtime_enable(a->rt, a->name, &matched)
                   : a->op == OP_DISABLE ? mr_runtime_disable(a->rt, a->name, &matched)
                                         : mr_runtime_restart(a->rt, a->name, &matched);
    if (st == MR_OK) st = mr_runtime_wait_idle(a->rt, 10000);
    if (st != MR_OK) {
        char *what = g_strdup_printf("%s %s", op_names[a->op], a->name);
        char *t = mr_error_text(what, st);
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", t);
        g_free(t);
        g_free(what);
    } else {
        g_task_return_int(task, (gssize)matched);
    }
    atomic_fetch_sub(&app->actions_in_flight, 1);
}

static void update_buttons(App *app) {
    gboolean sel = gtk_single_selection_get_selected_item(app->proto_sel) != NULL;
    gboolean ok = sel && !app->action_running && app->rt != NULL;
    gtk_widget_set_sensitive(app->btn_enable, ok);
    gtk_widget_set_sensitive(app->btn_disable, ok);
    gtk_widget_set_sensitive(app->btn_restart, ok);
}

static void action_done(GObject *src, GAsyncResult *res, gpointer data) {
    App *app = data;
    (void)src;
    ActionData *a = g_task_get_task_data(G_TASK(res));
    GError *err = NULL;
    gssize matched = g_task_propagate_int(G_TASK(res), &err);
    g_free(app->action_text);
    if (err) {
        app->action_text = g_strdup(err->message);
        g_printerr("meshring-gtk: %s\n", err->message);
        g_error_free(err);
    } else {
        app->action_text = g_strdup_printf("%s %s: done (%zd matched)", op_names[a->op], a->name, matched);
    }
    gtk_label_set_text(GTK_LABEL(app->action_label), app->action_text);
    app->action_running = FALSE;
    update_buttons(app);
}

static gboolean start_action(App *app, ProtoOp op, const char *name) {
    if (app->action_running || name == NULL) return FALSE;
    ActionData *a = g_new0(ActionData, 1);
    *a = (ActionData){app, app->rt, op, g_strdup(name)};
    app->action_running = TRUE;
    update_buttons(app);
    char *t = g_strdup_printf("%s %s ...", op_names[op], name);
    gtk_label_set_text(GTK_LABEL(app->action_label), t);
    g_free(t);
    atomic_fetch_add(&app->actions_in_flight, 1);
    GTask *task = g_task_new(NULL, NULL, action_done, app);
    g_task_set_task_data(task, a, action_data_free);
    g_task_run_in_thread(task, action_thread);
    g_object_unref(task);
    return TRUE;
}

static void on_action_clicked(GtkButton *b, gpointer data) {
    App *app = data;
    MrProtoRow *r = gtk_single_selection_get_selected_item(app->proto_sel);
    if (r) start_action(app, (ProtoOp)GPOINTER_TO_INT(g_object_get_data(G_OBJECT(b), "op")), mr_proto_row_get_name(r));
}

/* ------------------------------------------------------------ the once-a-second poller */

struct Poller {
    App *app;
    mr_bus *bus;
    mr_runtime *rt;
    GThread *thread;
    GMutex mu;
    GCond cond;
    gboolean stop;
    gboolean kick; /* poll now instead of at the next second */
};

typedef struct {
    App *app;
    char *backend_state; /* NULL: unchanged / unknown */
    char *show;          /* show protocols JSON, or NULL */
    char *error;
} PollResult;

static void poll_result_free(gpointer p) {
    PollResult *r = p;
    g_free(r->backend_state);
    g_free(r->show);
    g_free(r->error);
    g_free(r);
}

static gboolean poll_result_apply(gpointer p) {
    PollResult *r = p;
    App *app = r->app;
    if (r->backend_state && !app->bus_closed) {
        g_free(app->backend_state);
        app->backend_state = g_strdup(r->backend_state);
    }
    if (r->show) {
        JsonParser *jp = json_parser_new();
        if (json_parser_load_from_data(jp, r->show, -1, NULL)) {
            JsonNode *root = json_parser_get_root(jp);
            if (root && JSON_NODE_HOLDS_ARRAY(root)) proto_list_apply_routes(app->protos, json_node_get_array(root));
        }
        g_object_unref(jp);
    }
    if (r->error) show_error(app, g_steal_pointer(&r->error));
    /* deltas/s over the last period */
    gint64 now = g_get_monotonic_time();
    if (app->tick_time) app->deltas_per_s = (double)(app->deltas - app->deltas_at_tick) * 1e6 / (double)(now - app->tick_time);
    app->tick_time = now;
    app->deltas_at_tick = app->deltas;
    app->polls++;
    update_status(app);
    return G_SOURCE_REMOVE;
}

static gpointer poller_main(gpointer data) {
    Poller *p = data;
    gboolean bus_gone = FALSE;
    for (gboolean first = TRUE;; first = FALSE) {
        g_mutex_lock(&p->mu);
        gint64 until = g_get_monotonic_time() + G_TIME_SPAN_SECOND;
        while (!first && !p->stop && !p->kick && g_cond_wait_until(&p->cond, &p->mu, until)) {
        }
        gboolean stop = p->stop;
        p->kick = FALSE;
        g_mutex_unlock(&p->mu);
        if (stop) return NULL;

        PollResult *r = g_new0(PollResult, 1);
        r->app = p->app;
        mr_bytes b = {NULL, 0};
        if (!bus_gone) {
            mr_status st = mr_bus_stats(p->bus, &b);
            if (st == MR_OK) {
                JsonParser *jp = json_parser_new();
                if (json_parser_load_from_data(jp, (const char *)b.ptr, (gssize)b.len, NULL)) {
                    JsonNode *root = json_parser_get_root(jp);
                    const char *s = root && JSON_NODE_HOLDS_OBJECT(root)
                                        ? ju_str(json_node_get_object(root), "BackendState")
                                        : NULL;
                    r->backend_state = g_strdup(s ? s : "NoState");
                }
                g_object_unref(jp);
                mr_bytes_free(&b);
            } else if (st == MR_CLOSED) {
                bus_gone = TRUE; /* the watcher reports it to the window */
            } else {
                r->error = mr_error_text("mr_bus_stats", st);
            }
        }
        mr_status st = mr_runtime_show_protocols(p->rt, &b);
        if (st == MR_OK) {
            r->show = g_strndup((const char *)b.ptr, b.len);
            mr_bytes_free(&b);
        } else if (st != MR_CLOSED && r->error == NULL) {
            r->error = mr_error_text("mr_runtime_show_protocols", st);
        }
        g_main_context_invoke_full(NULL, G_PRIORITY_DEFAULT, poll_result_apply, r, poll_result_free);
    }
}

static Poller *poller_start(App *app) {
    Poller *p = g_new0(Poller, 1);
    *p = (Poller){.app = app, .bus = app->bus, .rt = app->rt};
    g_mutex_init(&p->mu);
    g_cond_init(&p->cond);
    p->thread = g_thread_new("poller", poller_main, p);
    return p;
}

/* Asks for a poll now (its answer arrives like the periodic ones). */
static void poller_kick(Poller *p) {
    g_mutex_lock(&p->mu);
    p->kick = TRUE;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->mu);
}

static void poller_stop(Poller *p) {
    if (p == NULL) return;
    g_mutex_lock(&p->mu);
    p->stop = TRUE;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->mu);
    g_thread_join(p->thread);
    g_mutex_clear(&p->mu);
    g_cond_clear(&p->cond);
    g_free(p);
}

/* ------------------------------------------------------------ feed events */

static void on_feed_event(const FeedEvent *ev, gpointer data) {
    App *app = data;
    switch (ev->kind) {
    case FEED_NETMAP: ensure_watcher(app); break;
    case FEED_STREAMING:
        g_free(app->feed_text);
        app->feed_text = g_strdup("demo feed: streaming");
        break;
    case FEED_ERROR:
        app->feed_errors++;
        show_error(app, g_strdup(ev->text));
        break;
    case FEED_DONE:
        ensure_watcher(app);
        app->feed_done = TRUE;
        g_free(app->feed_text);
        app->feed_text = g_strdup(ev->text);
        break;
    }
    update_status(app);
}

/* ------------------------------------------------------------ status, empty state */

static void update_status(App *app) {
    if (app->status_label == NULL) return;
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "backend: %s  ·  %u peers  ·  %.0f deltas/s  ·  bus %s",
                           app->bus_closed ? "closed" : (app->backend_state ? app->backend_state : "NoState"),
                           peer_table_count(app->peers), app->deltas_per_s, app->bus_closed ? "closed" : "open");
    if (!app->initial_complete && app->watcher) g_string_append(s, "  ·  loading network map");
    if (app->feed_text) g_string_append_printf(s, "  ·  %s", app->feed_text);
    if (app->error_text) g_string_append_printf(s, "  ·  last error: %s", app->error_text);
    gtk_label_set_text(GTK_LABEL(app->status_label), s->str);
    g_string_free(s, TRUE);
}

static void update_empty_state(App *app) {
    if (app->stack == NULL) return;
    gboolean empty = peer_table_count(app->peers) == 0;
    const char *want = empty ? "empty" : "peers";
    if (g_strcmp0(gtk_stack_get_visible_child_name(GTK_STACK(app->stack)), want) != 0)
        gtk_stack_set_visible_child_name(GTK_STACK(app->stack), want);
}

/* ------------------------------------------------------------ list cells */

typedef char *(*CellText)(gpointer item);
typedef void (*CellStyle)(GtkWidget *cell, gpointer item);

typedef struct {
    const char *title;
    const char *signal;  /* "notify::<property>" the cell follows */
    CellText text;
    CellStyle style;     /* may be NULL */
    gboolean expand;     /* takes a share of spare width */
    int width;           /* fixed (minimum) width in pixels: with every column
                          * fixed, layout never measures all cells of a column
                          * for its natural width */
    float xalign;
} ColumnSpec;

static void cell_refresh(GtkWidget *cell, gpointer item, const ColumnSpec *spec) {
    char *t = spec->text(item);
    gtk_inscription_set_text(GTK_INSCRIPTION(cell), t);
    g_free(t);
    if (spec->style) spec->style(cell, item);
}

static void on_item_notify(GObject *item, GParamSpec *ps, gpointer cell) {
    (void)ps;
    cell_refresh(cell, item, g_object_get_data(G_OBJECT(cell), "spec"));
}

/* Cells are GtkInscriptions, GTK's text widget for list cells: its size
 * does not depend on its text, so a cell whose text changes is redrawn
 * without a new layout of the list (a GtkLabel would queue a resize). */
static void cell_setup(GtkSignalListItemFactory *f, GtkListItem *li, gpointer data) {
    const ColumnSpec *spec = data;
    (void)f;
    GtkWidget *cell = gtk_inscription_new(NULL);
    gtk_inscription_set_xalign(GTK_INSCRIPTION(cell), spec->xalign);
    gtk_inscription_set_text_overflow(GTK_INSCRIPTION(cell), GTK_INSCRIPTION_OVERFLOW_ELLIPSIZE_END);
    gtk_widget_add_css_class(cell, "cell");
    g_object_set_data(G_OBJECT(cell), "spec", (gpointer)spec);
    gtk_list_item_set_child(li, cell);
}

/* A cell follows its row's property while bound: one handler per visible cell. */
static void cell_bind(GtkSignalListItemFactory *f, GtkListItem *li, gpointer data) {
    const ColumnSpec *spec = data;
    (void)f;
    GtkWidget *l = gtk_list_item_get_child(li);
    gpointer item = gtk_list_item_get_item(li);
    cell_refresh(l, item, spec);
    gulong id = g_signal_connect(item, spec->signal, G_CALLBACK(on_item_notify), l);
    g_object_set_data(G_OBJECT(li), "notify-handler", GSIZE_TO_POINTER(id));
}

static void cell_unbind(GtkSignalListItemFactory *f, GtkListItem *li, gpointer data) {
    (void)f;
    (void)data;
    gulong id = GPOINTER_TO_SIZE(g_object_get_data(G_OBJECT(li), "notify-handler"));
    gpointer item = gtk_list_item_get_item(li);
    if (id && item) g_signal_handler_disconnect(item, id);
    g_object_set_data(G_OBJECT(li), "notify-handler", NULL);
}

static void add_columns(GtkColumnView *view, const ColumnSpec *specs, guint n) {
    for (guint i = 0; i < n; i++) {
        GtkListItemFactory *f = gtk_signal_list_item_factory_new();
        g_signal_connect(f, "setup", G_CALLBACK(cell_setup), (gpointer)&specs[i]);
        g_signal_connect(f, "bind", G_CALLBACK(cell_bind), (gpointer)&specs[i]);
        g_signal_connect(f, "unbind", G_CALLBACK(cell_unbind), (gpointer)&specs[i]);
        GtkColumnViewColumn *c = gtk_column_view_column_new(specs[i].title, f);
        gtk_column_view_column_set_resizable(c, TRUE);
        gtk_column_view_column_set_expand(c, specs[i].expand);
        if (specs[i].width) gtk_column_view_column_set_fixed_width(c, specs[i].width);
        gtk_column_view_append_column(view, c);
        g_object_unref(c);
    }
}

static char *peer_name(gpointer r) { return g_strdup(mr_peer_row_get_name(r)); }
static char *peer_addresses(gpointer r) { return mr_peer_row_addresses_text(r); }
static char *peer_last_seen(gpointer r) { return mr_peer_row_last_seen_text(r); }
static char *peer_routes(gpointer r) { return mr_peer_row_routes_text(r); }
static char *peer_online(gpointer r) { return g_strdup(mr_peer_row_get_online(r) < 0 ? "○" : "●"); }
static char *peer_derp(gpointer r) {
    gint64 d = mr_peer_row_get_home_derp(r);
    return d ? g_strdup_printf("%" G_GINT64_FORMAT, d) : g_strdup("–");
}
static void peer_online_style(GtkWidget *l, gpointer r) {
    int on = mr_peer_row_get_online(r);
    const char *cls[] = {"cell", on > 0 ? "dot-online" : on == 0 ? "dot-offline" : "dot-unknown", NULL};
    gtk_widget_set_css_classes(l, cls);
}

static const ColumnSpec peer_columns[] = {
    {"Name", "notify::name", peer_name, NULL, TRUE, 170, 0.0f},
    {"Addresses", "notify::addresses", peer_addresses, NULL, TRUE, 330, 0.0f},
    {"Online", "notify::online", peer_online, peer_online_style, FALSE, 70, 0.5f},
    {"Last seen", "notify::last-seen", peer_last_seen, NULL, FALSE, 190, 0.0f},
    {"DERP", "notify::home-derp", peer_derp, NULL, FALSE, 60, 0.5f},
    {"Routes", "notify::routes", peer_routes, NULL, TRUE, 200, 0.0f},
};

static char *proto_name(gpointer r) { return g_strdup(mr_proto_row_get_name(r)); }
static char *proto_kind(gpointer r) { return g_strdup(mr_proto_row_get_kind(r)); }
static char *proto_state(gpointer r) { return mr_proto_row_state_text(r); }
static char *proto_routes(gpointer r) { return g_strdup_printf("%" G_GINT64_FORMAT, mr_proto_row_get_routes(r)); }
static char *proto_info(gpointer r) { return g_strdup(mr_proto_row_get_info(r)); }
static char *proto_since(gpointer r) { return mr_proto_row_since_text(r); }
static void proto_state_style(GtkWidget *l, gpointer r) {
    const char *st = mr_proto_row_get_state(r);
    const char *cls[] = {"cell",
                         g_strcmp0(st, "up") == 0 ? "state-up" : g_strcmp0(st, "down") == 0 ? "state-down" : "state-busy",
                         NULL};
    gtk_widget_set_css_classes(l, cls);
}

static const ColumnSpec proto_columns[] = {
    {"Protocol", "notify::revision", proto_name, NULL, FALSE, 140, 0.0f},
    {"Kind", "notify::revision", proto_kind, NULL, FALSE, 90, 0.0f},
    {"State", "notify::revision", proto_state, proto_state_style, FALSE, 260, 0.0f},
    {"Routes", "notify::revision", proto_routes, NULL, FALSE, 80, 1.0f},
    {"Since", "notify::revision", proto_since, NULL, FALSE, 90, 0.0f},
    {"Info", "notify::revision", proto_info, NULL, TRUE, 200, 0.0f},
};

/* ------------------------------------------------------------ the window */

static const char *const CSS =
    ".banner { background: #c01c28; color: white; padding: 6px 12px; font-weight: bold; }\n"
    ".self { padding: 6px 12px; font-weight: bold; }\n"
    ".status { padding: 4px 12px; border-top: 1px solid alpha(currentColor, 0.15); }\n"
    ".pane-title { padding: 6px 12px; font-weight: bold; }\n"
    ".empty { font-size: 1.3em; opacity: 0.7; }\n"
    ".cell { padding: 2px 6px; }\n"
    "row:selected .cell { color: inherit; }\n"
    ".dot-online { color: #26a269; }\n"
    ".dot-offline { color: #9a9996; }\n"
    ".dot-unknown { color: #9a9996; }\n"
    ".state-up { color: #26a269; }\n"
    ".state-down { color: #c01c28; }\n"
    ".state-busy { color: #e5a50a; }\n";

static void on_selection_changed(GtkSelectionModel *m, guint pos, guint n, gpointer data) {
    (void)m;
    (void)pos;
    (void)n;
    update_buttons(data);
}

static void on_before_paint(GdkFrameClock *clock, gpointer data) {
    (void)clock;
    ((App *)data)->frame_start = g_get_monotonic_time();
}

static void on_layout(GdkFrameClock *clock, gpointer data) {
    App *app = data;
    (void)clock;
    app->layout_end = g_get_monotonic_time(); /* GTK's own layout handler ran first */
    if (app->initial_complete && app->frame_start && app->layout_end - app->frame_start > app->max_layout)
        app->max_layout = app->layout_end - app->frame_start;
}

static void on_paint(GdkFrameClock *clock, gpointer data) {
    App *app = data;
    (void)clock;
    gint64 t = g_get_monotonic_time() - app->layout_end;
    if (app->initial_complete && app->layout_end && t > app->max_paint) app->max_paint = t;
}

/* Counts frames; with --bench also the longest one (update, layout, paint). */
static void on_after_paint(GdkFrameClock *clock, gpointer data) {
    App *app = data;
    (void)clock;
    app->frames++;
    gint64 t = g_get_monotonic_time() - app->frame_start;
    if (app->initial_complete && app->frame_start && t > app->max_frame) app->max_frame = t;
}

static GtkWidget *button(App *app, const char *label, ProtoOp op) {
    GtkWidget *b = gtk_button_new_with_label(label);
    g_object_set_data(G_OBJECT(b), "op", GINT_TO_POINTER(op));
    g_signal_connect(b, "clicked", G_CALLBACK(on_action_clicked), app);
    return b;
}

static void build_window(App *app) {
    GtkCssProvider *css = gtk_css_provider_new();
    gtk_css_provider_load_from_data(css, CSS, -1);
    gtk_style_context_add_provider_for_display(gdk_display_get_default(), GTK_STYLE_PROVIDER(css),
                                               GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
    g_object_unref(css);

    app->window = gtk_application_window_new(app->gapp);
    gtk_window_set_title(GTK_WINDOW(app->window), "meshring node");
    gtk_window_set_default_size(GTK_WINDOW(app->window), 1200, 800);
    GtkWidget *root = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    gtk_window_set_child(GTK_WINDOW(app->window), root);

    /* Top: this node, the bus-closed banner, the peers (or the empty state). */
    GtkWidget *top = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    app->self_label = gtk_label_new("this node: (waiting for the network map)");
    gtk_label_set_xalign(GTK_LABEL(app->self_label), 0);
    gtk_widget_add_css_class(app->self_label, "self");
    gtk_box_append(GTK_BOX(top), app->self_label);

    app->banner = gtk_label_new("bus closed — the list shows the last network map received");
    gtk_label_set_xalign(GTK_LABEL(app->banner), 0);
    gtk_widget_add_css_class(app->banner, "banner");
    gtk_widget_set_visible(app->banner, FALSE);
    gtk_box_append(GTK_BOX(top), app->banner);

    GtkNoSelection *peer_sel = gtk_no_selection_new(G_LIST_MODEL(g_object_ref(app->peers->store)));
    GtkWidget *peer_view = gtk_column_view_new(GTK_SELECTION_MODEL(peer_sel));
    gtk_column_view_set_show_row_separators(GTK_COLUMN_VIEW(peer_view), TRUE);
    add_columns(GTK_COLUMN_VIEW(peer_view), peer_columns, G_N_ELEMENTS(peer_columns));
    GtkWidget *peer_scroll = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(peer_scroll), peer_view);

    app->empty_label = gtk_label_new(app->opt.demo || app->opt.feed_path
                                         ? "No peers: the network map has no other nodes."
                                         : "No peers yet. Start with --demo, or --feed FILE for MapResponse lines.");
    gtk_widget_add_css_class(app->empty_label, "empty");

    app->stack = gtk_stack_new();
    gtk_stack_add_named(GTK_STACK(app->stack), peer_scroll, "peers");
    gtk_stack_add_named(GTK_STACK(app->stack), app->empty_label, "empty");
    gtk_widget_set_vexpand(app->stack, TRUE);
    gtk_box_append(GTK_BOX(top), app->stack);

    /* Bottom: the runtime's protocols with their actions. */
    GtkWidget *bottom = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    GtkWidget *bar = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    GtkWidget *title = gtk_label_new("Protocols");
    gtk_widget_add_css_class(title, "pane-title");
    gtk_box_append(GTK_BOX(bar), title);
    app->btn_enable = button(app, "Enable", OP_ENABLE);
    app->btn_disable = button(app, "Disable", OP_DISABLE);
    app->btn_restart = button(app, "Restart", OP_RESTART);
    gtk_box_append(GTK_BOX(bar), app->btn_enable);
    gtk_box_append(GTK_BOX(bar), app->btn_disable);
    gtk_box_append(GTK_BOX(bar), app->btn_restart);
    app->action_label = gtk_label_new("");
    gtk_label_set_xalign(GTK_LABEL(app->action_label), 0);
    gtk_widget_set_margin_start(app->action_label, 12);
    gtk_box_append(GTK_BOX(bar), app->action_label);
    gtk_box_append(GTK_BOX(bottom), bar);

    app->proto_sel = gtk_single_selection_new(G_LIST_MODEL(g_object_ref(app->protos)));
    gtk_single_selection_set_autoselect(app->proto_sel, FALSE);
    gtk_single_selection_set_can_unselect(app->proto_sel, TRUE);
    gtk_single_selection_set_selected(app->proto_sel, GTK_INVALID_LIST_POSITION);
    g_signal_connect(app->proto_sel, "selection-changed", G_CALLBACK(on_selection_changed), app);
    GtkWidget *proto_view = gtk_column_view_new(GTK_SELECTION_MODEL(app->proto_sel));
    add_columns(GTK_COLUMN_VIEW(proto_view), proto_columns, G_N_ELEMENTS(proto_columns));
    GtkWidget *proto_scroll = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(proto_scroll), proto_view);
    gtk_widget_set_vexpand(proto_scroll, TRUE);
    gtk_box_append(GTK_BOX(bottom), proto_scroll);

    GtkWidget *paned = gtk_paned_new(GTK_ORIENTATION_VERTICAL);
    gtk_paned_set_start_child(GTK_PANED(paned), top);
    gtk_paned_set_end_child(GTK_PANED(paned), bottom);
    gtk_paned_set_position(GTK_PANED(paned), 540);
    gtk_widget_set_vexpand(paned, TRUE);
    gtk_box_append(GTK_BOX(root), paned);

    app->status_label = gtk_label_new("");
    gtk_label_set_xalign(GTK_LABEL(app->status_label), 0);
    gtk_label_set_ellipsize(GTK_LABEL(app->status_label), PANGO_ELLIPSIZE_END);
    gtk_widget_add_css_class(app->status_label, "status");
    gtk_box_append(GTK_BOX(root), app->status_label);

    update_buttons(app);
    update_empty_state(app);
    update_status(app);
    gtk_window_present(GTK_WINDOW(app->window));
    GdkFrameClock *clock = gtk_widget_get_frame_clock(app->window);
    g_signal_connect(clock, "before-paint", G_CALLBACK(on_before_paint), app);
    g_signal_connect(clock, "layout", G_CALLBACK(on_layout), app);
    g_signal_connect(clock, "paint", G_CALLBACK(on_paint), app);
    g_signal_connect(clock, "after-paint", G_CALLBACK(on_after_paint), app);
}

/* ------------------------------------------------------------ model dump and screenshot */

/* The view model, then what the library itself says, in one JSON file:
 * {"view":{...,"rows":[...],"protocols":[...]},
 *  "library":{"netmap":<mr_bus_netmap or null when closed>,"show_protocols":<...>}} */
static gboolean dump_model(App *app, const char *path, GError **error) {
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "bus");
    json_builder_add_string_value(b, app->bus_closed ? "closed" : "open");
    json_builder_set_member_name(b, "banner_visible");
    json_builder_add_boolean_value(b, gtk_widget_get_mapped(app->banner));
    json_builder_set_member_name(b, "banner");
    json_builder_add_string_value(b, gtk_label_get_text(GTK_LABEL(app->banner)));
    json_builder_set_member_name(b, "empty_state_visible");
    json_builder_add_boolean_value(b, gtk_widget_get_mapped(app->empty_label));
    json_builder_set_member_name(b, "empty_state");
    json_builder_add_string_value(b, gtk_label_get_text(GTK_LABEL(app->empty_label)));
    json_builder_set_member_name(b, "status_line");
    json_builder_add_string_value(b, gtk_label_get_text(GTK_LABEL(app->status_label)));
    json_builder_set_member_name(b, "backend_state");
    json_builder_add_string_value(b, app->backend_state ? app->backend_state : "NoState");
    json_builder_set_member_name(b, "initial_complete");
    json_builder_add_boolean_value(b, app->initial_complete);
    json_builder_set_member_name(b, "messages");
    json_builder_add_int_value(b, (gint64)app->messages);
    json_builder_set_member_name(b, "deltas");
    json_builder_add_int_value(b, (gint64)app->deltas);
    json_builder_set_member_name(b, "feed_errors");
    json_builder_add_int_value(b, (gint64)app->feed_errors);
    json_builder_set_member_name(b, "feed");
    json_builder_add_string_value(b, app->feed_text ? app->feed_text : "");
    json_builder_set_member_name(b, "action");
    json_builder_add_string_value(b, app->action_text ? app->action_text : "");
    json_builder_set_member_name(b, "self");
    json_builder_add_string_value(b, app->peers->self_name ? app->peers->self_name : "");
    json_builder_set_member_name(b, "peer_count");
    json_builder_add_int_value(b, peer_table_count(app->peers));
    json_builder_set_member_name(b, "rows");
    json_builder_begin_array(b);
    peer_table_dump(app->peers, b);
    json_builder_end_array(b);
    json_builder_set_member_name(b, "protocols");
    json_builder_begin_array(b);
    proto_list_dump(app->protos, b);
    json_builder_end_array(b);
    json_builder_end_object(b);
    JsonGenerator *g = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(g, root);
    char *view = json_generator_to_data(g, NULL);
    json_node_unref(root);
    g_object_unref(g);
    g_object_unref(b);

    /* The library's own answers, embedded as they came. This runs on the
     * UI thread, once, at the end of a session. */
    GString *out = g_string_new("{\"view\":");
    g_string_append(out, view);
    g_free(view);
    mr_bytes nm = {NULL, 0}, sp = {NULL, 0};
    mr_status st = mr_bus_netmap(app->bus, &nm);
    g_string_append(out, ",\"library\":{\"netmap\":");
    if (st == MR_OK) g_string_append_len(out, (const char *)nm.ptr, (gssize)nm.len);
    else if (st == MR_CLOSED) g_string_append(out, "null");
    else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", mr_error_text("mr_bus_netmap", st));
        g_string_free(out, TRUE);
        return FALSE;
    }
    mr_bytes_free(&nm);
    st = mr_runtime_show_protocols(app->rt, &sp);
    if (st != MR_OK) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", mr_error_text("mr_runtime_show_protocols", st));
        g_string_free(out, TRUE);
        return FALSE;
    }
    g_string_append(out, ",\"show_protocols\":");
    g_string_append_len(out, (const char *)sp.ptr, (gssize)sp.len);
    mr_bytes_free(&sp);
    g_string_append(out, "}}\n");
    gboolean ok = g_file_set_contents(path, out->str, (gssize)out->len, error);
    g_string_free(out, TRUE);
    return ok;
}

/* Renders the window the way it is on screen: the widget's snapshot into
 * a render node, the window's own renderer into a texture, a PNG. */
static gboolean save_screenshot(GtkWidget *w, const char *path, GError **error) {
    int width = gtk_widget_get_width(w), height = gtk_widget_get_height(w);
    if (width <= 0 || height <= 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the window has no size (not mapped?)");
        return FALSE;
    }
    GdkPaintable *paintable = gtk_widget_paintable_new(w);
    GtkSnapshot *snap = gtk_snapshot_new();
    gdk_paintable_snapshot(paintable, GDK_SNAPSHOT(snap), width, height);
    GskRenderNode *node = gtk_snapshot_free_to_node(snap);
    g_object_unref(paintable);
    if (node == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the window drew nothing");
        return FALSE;
    }
    GskRenderer *renderer = gtk_native_get_renderer(GTK_NATIVE(w));
    graphene_rect_t bounds = GRAPHENE_RECT_INIT(0, 0, (float)width, (float)height);
    GdkTexture *tex = gsk_renderer_render_texture(renderer, node, &bounds);
    gsk_render_node_unref(node);
    gboolean ok = gdk_texture_save_to_png(tex, path);
    g_object_unref(tex);
    if (!ok) g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot write the PNG", path);
    return ok;
}

/* ------------------------------------------------------------ --script */

/* A scripted session, one step per 20 ms tick:
 *   SC_FEED         the feed applies its netmap and deltas (with
 *                   --close-bus the bus is closed once half the deltas
 *                   are in, while the feed is still streaming)
 *   SC_CATCH_UP     the view has read everything: the feed is done and
 *                   the watcher fd stayed unreadable for 5 ticks (or the
 *                   watcher reported the bus closed)
 *   SC_DISABLE      disables a protocol through the same path as the button
 *   SC_WAIT_ACTION  waits for it and for its state events
 *   SC_REFRESH      waits for a fresh poll (backend state, route counts)
 *   SC_DRAW         lets the window paint two frames
 *   SC_FINISH       writes --dump-model and --screenshot, quits */
static gboolean fd_readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return fd >= 0 && poll(&p, 1, 0) == 1;
}

/* The view holds everything the bus has sent: the initial view is in, no
 * message is half applied and the watcher has nothing pending. */
static gboolean caught_up(App *app) {
    return app->initial_complete && app->cursor.root == NULL && !fd_readable(mr_watcher_fd(app->watcher));
}

static void script_fail(App *app, const char *why) {
    g_printerr("meshring-gtk: script: %s\n", why);
    app->exit_code = 1;
    g_application_quit(G_APPLICATION(app->gapp));
}

static gboolean script_tick(gpointer data) {
    App *app = data;
    if (g_get_monotonic_time() > app->script_deadline) {
        static const char *const steps[] = {"feeding", "catching up", "disabling", "waiting for the action",
                                            "refreshing", "drawing", "finishing"};
        char *t = g_strdup_printf("timed out after %d s while %s (%u rows, %" G_GUINT64_FORMAT
                                  " messages, feed %s, watcher fd %s)",
                                  SCRIPT_DEADLINE_S, steps[app->step], peer_table_count(app->peers), app->messages,
                                  app->feed_done ? "done" : "running",
                                  app->watcher && fd_readable(mr_watcher_fd(app->watcher)) ? "readable" : "quiet");
        script_fail(app, t);
        g_free(t);
        return G_SOURCE_REMOVE;
    }
    switch (app->step) {
    case SC_FEED:
        if (app->opt.close_bus && !app->closed_by_script && app->watcher &&
            (app->feed_done || feed_applied(app->feed) * 2 >= (guint64)MAX(app->opt.deltas, 0))) {
            mr_status st = mr_bus_close(app->bus);
            if (st != MR_OK) {
                char *t = mr_error_text("mr_bus_close", st);
                script_fail(app, t);
                g_free(t);
                return G_SOURCE_REMOVE;
            }
            app->closed_by_script = TRUE;
            g_print("script: bus closed after %" G_GUINT64_FORMAT " deltas\n", feed_applied(app->feed));
        }
        if (app->feed_done || app->feed == NULL) app->step = SC_CATCH_UP;
        break;
    case SC_CATCH_UP:
        if (app->opt.close_bus ? app->bus_closed : caught_up(app)) {
            if (++app->quiet_ticks >= 5) app->step = SC_DISABLE;
        } else {
            app->quiet_ticks = 0;
        }
        break;
    case SC_DISABLE: {
        /* Select the row, as a user would before pressing Disable. */
        guint pos;
        if (proto_list_find(app->protos, app->opt.disable_name, &pos))
            gtk_single_selection_set_selected(app->proto_sel, pos);
        if (!start_action(app, OP_DISABLE, app->opt.disable_name)) {
            script_fail(app, "could not start the disable action");
            return G_SOURCE_REMOVE;
        }
        app->step = SC_WAIT_ACTION;
        break;
    }
    case SC_WAIT_ACTION:
        if (!app->action_running && !fd_readable(mr_runtime_event_fd(app->rt))) {
            app->step = SC_REFRESH;
            app->polls_at = app->polls;
            poller_kick(app->poller);
        }
        break;
    case SC_REFRESH:
        if (app->polls > app->polls_at) {
            app->step = SC_DRAW;
            app->draw_frames_at = app->frames;
            gtk_widget_queue_draw(app->window);
        }
        break;
    case SC_DRAW:
        /* Two painted frames after the last change: what is on screen is the model. */
        if (app->frames >= app->draw_frames_at + 2) app->step = SC_FINISH;
        else gtk_widget_queue_draw(app->window);
        break;
    case SC_FINISH: {
        GError *err = NULL;
        if (app->opt.dump_path && !dump_model(app, app->opt.dump_path, &err)) {
            script_fail(app, err->message);
            g_error_free(err);
            return G_SOURCE_REMOVE;
        }
        if (app->opt.shot_path && !save_screenshot(app->window, app->opt.shot_path, &err)) {
            script_fail(app, err->message);
            g_error_free(err);
            return G_SOURCE_REMOVE;
        }
        g_print("script: %u rows, %" G_GUINT64_FORMAT " messages, bus %s%s%s%s%s\n", peer_table_count(app->peers),
                app->messages, app->bus_closed ? "closed" : "open", app->opt.dump_path ? ", model in " : "",
                app->opt.dump_path ? app->opt.dump_path : "", app->opt.shot_path ? ", screenshot in " : "",
                app->opt.shot_path ? app->opt.shot_path : "");
        g_application_quit(G_APPLICATION(app->gapp));
        return G_SOURCE_REMOVE;
    }
    }
    return G_SOURCE_CONTINUE;
}

/* ------------------------------------------------------------ --bench */

/* A 1 ms timeout at G_PRIORITY_HIGH: the gap between two of its runs is
 * how long the main loop was busy with something else (a drain, a frame). */
static gboolean heartbeat(gpointer data) {
    App *app = data;
    gint64 now = g_get_monotonic_time();
    if (app->last_beat) {
        gint64 gap = now - app->last_beat;
        if (gap > app->max_gap) app->max_gap = gap;
        if (app->initial_complete && gap > 16000) app->gaps_over_16ms++;
    }
    app->last_beat = now;
    return G_SOURCE_CONTINUE;
}

static gboolean bench_tick(gpointer data) {
    App *app = data;
    if (!app->feed_done || !app->initial_complete) return G_SOURCE_CONTINUE;
    if (!caught_up(app)) return G_SOURCE_CONTINUE; /* the view is still catching up */
    double secs = (double)(g_get_monotonic_time() - app->bench_start) / 1e6;
    printf("max main-loop stall: %.1f ms (goal <= 16 ms), deltas applied: %" G_GUINT64_FORMAT "\n",
           (double)app->max_gap / 1000.0, feed_applied(app->feed));
    fflush(stdout);
    g_printerr("bench: %d peers; initial view loaded with a max stall of %.1f ms; stream: %.1f s, "
               "%" G_GUINT64_FORMAT " Notify messages, %" G_GUINT64_FORMAT " peer updates in the view, "
               "%u frames drawn, %" G_GUINT64_FORMAT " gaps over 16 ms; view %u rows\n"
               "bench: longest watcher drain %.1f ms (budget %.1f ms, largest message %zu bytes), longest frame %.1f ms (layout %.1f, paint %.1f)\n",
               app->opt.peers, (double)app->load_max_gap / 1000.0, secs, app->messages - app->msgs_at_start,
               app->deltas, app->frames - (guint)app->frames_at_start, app->gaps_over_16ms,
               peer_table_count(app->peers), (double)app->max_drain / 1000.0, DRAIN_BUDGET_US / 1000.0,
               app->max_msg, (double)app->max_frame / 1000.0, (double)app->max_layout / 1000.0,
               (double)app->max_paint / 1000.0);
    g_application_quit(G_APPLICATION(app->gapp));
    return G_SOURCE_REMOVE;
}

/* ------------------------------------------------------------ startup */

/* Ctrl-C / SIGTERM quit through the normal teardown (feeds stopped, handles freed). */
static gboolean on_quit_signal(gpointer data) {
    g_application_quit(G_APPLICATION(((App *)data)->gapp));
    return G_SOURCE_CONTINUE;
}

static void on_activate(GtkApplication *gapp, gpointer data) {
    App *app = data;
    if (app->window) {
        gtk_window_present(GTK_WINDOW(app->window));
        return;
    }
    /* GApplication holds a reference for the window's lifetime. */
    (void)gapp;
    build_window(app);

    if (app->opt.demo) {
        DemoParams p = {
            .peers = app->opt.peers,
            .rate = app->opt.rate,
            .max_deltas = app->opt.deltas,
            .seconds = app->opt.bench_seconds,
            .seed = (guint64)app->opt.seed,
            .gated = app->opt.bench_seconds > 0,
        };
        app->feed = feed_demo_start(app->bus, &p, NULL, on_feed_event, app);
        app->feed_text = g_strdup_printf("demo feed: %d peers", app->opt.peers);
    } else if (app->opt.feed_path) {
        GError *err = NULL;
        app->feed = feed_lines_start(app->bus, app->opt.feed_path, NULL, on_feed_event, app, &err);
        if (app->feed == NULL) {
            show_error(app, g_strdup(err->message));
            g_error_free(err);
            ensure_watcher(app);
        } else {
            app->feed_text = g_strdup_printf("feed: %s", strcmp(app->opt.feed_path, "-") ? app->opt.feed_path : "stdin");
        }
    } else {
        ensure_watcher(app);
    }
    app->poller = poller_start(app);
    if (app->opt.script) {
        app->script_deadline = g_get_monotonic_time() + SCRIPT_DEADLINE_S * G_TIME_SPAN_SECOND;
        g_timeout_add(20, script_tick, app);
    }
    if (app->opt.bench_seconds > 0) {
        g_timeout_add_full(G_PRIORITY_HIGH, 1, heartbeat, app, NULL);
        g_timeout_add(50, bench_tick, app);
    }
    update_status(app);
}

static void usage_and_exit(GOptionContext *ctx, const char *why) {
    char *help = g_option_context_get_help(ctx, TRUE, NULL);
    g_printerr("meshring-gtk: %s\n\n%s", why, help);
    g_free(help);
    exit(2);
}

static void parse_options(Options *o, int *argc, char ***argv) {
    o->peers = 10000;
    o->rate = -1;
    o->deltas = -2; /* unset */
    o->seed = 1;
    char *rate_text = NULL;
    GOptionEntry entries[] = {
        {"demo", 0, 0, G_OPTION_ARG_NONE, &o->demo, "Feed a generated tailnet with churn", NULL},
        {"feed", 0, 0, G_OPTION_ARG_FILENAME, &o->feed_path, "Feed MapResponse JSON lines from FILE ('-': stdin)", "FILE"},
        {"peers", 0, 0, G_OPTION_ARG_INT, &o->peers, "Demo: peers in the tailnet (10000)", "N"},
        {"rate", 0, 0, G_OPTION_ARG_STRING, &rate_text, "Demo: deltas per second (1000; --bench 20000)", "R"},
        {"deltas", 0, 0, G_OPTION_ARG_INT64, &o->deltas, "Demo: stop after N deltas (default: no limit; --script 4000)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &o->seed, "Demo: generator seed (1)", "S"},
        {"unchunked", 0, 0, G_OPTION_ARG_NONE, &o->unchunked, "Receive the initial network map as one message", NULL},
        {"script", 0, 0, G_OPTION_ARG_NONE, &o->script, "Run the scripted session and exit (see --dump-model, --screenshot)", NULL},
        {"dump-model", 0, 0, G_OPTION_ARG_FILENAME, &o->dump_path, "Script: write the view model and the library's view as JSON", "PATH"},
        {"screenshot", 0, 0, G_OPTION_ARG_FILENAME, &o->shot_path, "Script: write a PNG of the window", "PATH"},
        {"close-bus", 0, 0, G_OPTION_ARG_NONE, &o->close_bus, "Script: close the bus in the middle of the delta stream", NULL},
        {"disable", 0, 0, G_OPTION_ARG_STRING, &o->disable_name, "Script: the protocol to disable (lan)", "NAME"},
        {"bench", 0, 0, G_OPTION_ARG_DOUBLE, &o->bench_seconds, "Stream 20k deltas/s at 10k peers for SECONDS, print the longest main-loop stall, exit", "SECONDS"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *ctx = g_option_context_new("- meshring node: peers and protocols of an embedded meshring");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *err = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &err)) usage_and_exit(ctx, err->message);
    if (*argc > 1) usage_and_exit(ctx, "unexpected arguments");
    if (o->demo && o->feed_path) usage_and_exit(ctx, "--demo and --feed are exclusive");
    if (o->peers < 0) usage_and_exit(ctx, "--peers must be >= 0");
    if (o->bench_seconds < 0) usage_and_exit(ctx, "--bench must be > 0");
    if (o->script && o->bench_seconds > 0) usage_and_exit(ctx, "--script and --bench are exclusive");
    if ((o->dump_path || o->shot_path || o->close_bus || o->disable_name) && !o->script)
        usage_and_exit(ctx, "--dump-model, --screenshot, --close-bus and --disable belong to --script");
    if (rate_text) {
        char *end;
        o->rate = g_ascii_strtod(rate_text, &end);
        if (*end || o->rate < 0) usage_and_exit(ctx, "--rate must be a number >= 0");
        g_free(rate_text);
    }
    if (o->bench_seconds > 0) {
        o->demo = TRUE;
        o->feed_path = NULL;
        if (o->rate < 0) o->rate = 20000;
    }
    if (o->script && !o->feed_path) o->demo = TRUE;
    if (o->rate < 0) o->rate = o->script ? 20000 : 1000;
    if (o->deltas == -2) o->deltas = o->script ? 4000 : -1;
    if (!o->disable_name) o->disable_name = g_strdup("lan");
    g_option_context_free(ctx);
}

int main(int argc, char **argv) {
    App *app = g_new0(App, 1);
    parse_options(&app->opt, &argc, &argv);
    mr_status st = mr_log_init(NULL); /* MESHRING_LOG, default "warn" */
    if (st != MR_OK) die("mr_log_init", st);
    if (mr_version_number() != MR_VERSION_NUMBER) {
        g_printerr("meshring-gtk: header %s, library %s: rebuild against the library you link\n", MR_VERSION,
                   mr_version());
        return 1;
    }

    /* The bus (large netmaps allowed: 100k peers are ~45 MB of JSON), the
     * runtime attached to it, the protocols committed. */
    char *bus_opts = g_strdup_printf("{\"initial_chunk\":%d,\"max_apply_bytes\":%d}", INITIAL_CHUNK, 256 << 20);
    st = mr_bus_new(bus_opts, &app->bus);
    g_free(bus_opts);
    if (st != MR_OK) die("mr_bus_new", st);
    if ((st = mr_runtime_new(NULL, &app->rt)) != MR_OK) die("mr_runtime_new", st);
    if ((st = mr_runtime_attach_bus(app->rt, app->bus)) != MR_OK) die("mr_runtime_attach_bus", st);
    if ((st = mr_runtime_commit(app->rt, RUNTIME_CONFIG, MR_COMMIT_SOFT)) != MR_OK) die("mr_runtime_commit", st);

    app->parser = json_parser_new();
    app->peers = peer_table_new();
    app->protos = g_list_store_new(MR_TYPE_PROTO_ROW);
    load_protocols(app);
    int efd = mr_runtime_event_fd(app->rt);
    if (efd < 0) {
        char *t = fd_error_text("mr_runtime_event_fd");
        g_printerr("meshring-gtk: %s\n", t);
        g_free(t);
        return 1;
    }
    app->runtime_src = g_unix_fd_add_full(G_PRIORITY_DEFAULT, efd, G_IO_IN, on_runtime_ready, app, NULL);

    app->gapp = gtk_application_new("org.meshring.Node", G_APPLICATION_NON_UNIQUE);
    g_signal_connect(app->gapp, "activate", G_CALLBACK(on_activate), app);
    g_unix_signal_add(SIGINT, on_quit_signal, app);
    g_unix_signal_add(SIGTERM, on_quit_signal, app);
    char *args[] = {argv[0], NULL};
    int rc = g_application_run(G_APPLICATION(app->gapp), 1, args);
    if (rc == 0) rc = app->exit_code;

    /* Teardown: writers and pollers first, then the handles they use. */
    feed_stop(app->feed);
    poller_stop(app->poller);
    if (app->watcher_src) g_source_remove(app->watcher_src);
    if (app->continue_src) g_source_remove(app->continue_src);
    if (app->cursor.root) json_node_unref(app->cursor.root);
    if (app->runtime_src) g_source_remove(app->runtime_src);
    mr_runtime_close(app->rt); /* an action still running returns MR_CLOSED */
    while (atomic_load(&app->actions_in_flight) > 0) g_usleep(1000);
    mr_watcher_free(app->watcher);
    mr_runtime_free(app->rt);
    mr_bus_free(app->bus);
    g_object_unref(app->gapp);
    g_object_unref(app->parser);
    g_object_unref(app->protos);
    peer_table_free(app->peers);
    g_free(app->backend_state);
    g_free(app->feed_text);
    g_free(app->error_text);
    g_free(app->action_text);
    g_free(app->opt.feed_path);
    g_free(app->opt.dump_path);
    g_free(app->opt.shot_path);
    g_free(app->opt.disable_name);
    g_free(app);
    return rc;
}
