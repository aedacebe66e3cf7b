/*
 * routes: the lifecycle runtime with a netmap protocol fed by a notify bus
 * and a host-defined protocol that prints every route it is exported.
 *
 *   routes          the demo below (bounded, exit status 0 when the routes
 *                   the printer saw match `show route`)
 *
 * Steps: a bus gets three peers with AllowedIPs; a runtime attaches the
 * bus and commits a config with a `netmap` protocol ("tailnet"), a
 * `static` protocol ("lan") and a `printer` protocol of our own kind.
 * The printer is fed the table (one line per route), then hears peer
 * deltas (a peer changes its AllowedIPs, a peer leaves), a disable of the
 * static protocol (its routes flushed: withdrawals) and a commit that
 * reconfigures the printer in place. State events are printed from the
 * runtime's readiness fd; `show protocols` and `show route` at the end.
 */
#define _GNU_SOURCE
#include "meshring.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "routes: %s: %s\n  %s\n", what, mr_status_str(st), msg);
    exit(1);
}

#define TRY(what, call)                 \
    do {                                \
        mr_status st_ = (call);         \
        if (st_ != MR_OK) {             \
            fail(what, st_);            \
        }                               \
    } while (0)

/* ------------------------------------------------------------ the printer kind */

#define MAX_ROUTES 64

/* The prefixes the printer currently has a route to (one per prefix: an
 * export for a prefix it has replaces that route). */
typedef struct printer {
    int routes;
    char prefix[MAX_ROUTES][64];
} printer;

static void printer_track(printer *p, const mr_route *r) {
    int i;
    for (i = 0; i < p->routes && strcmp(p->prefix[i], r->prefix) != 0; i++) {
    }
    if (r->withdrawn && i < p->routes) {
        p->routes--;
        memcpy(p->prefix[i], p->prefix[p->routes], sizeof p->prefix[i]);
    } else if (!r->withdrawn && i == p->routes && p->routes < MAX_ROUTES) {
        snprintf(p->prefix[p->routes++], sizeof p->prefix[0], "%s", r->prefix);
    }
}

static uint32_t printer_start(void *ud, mr_runtime *rt, const char *proto, const char *config_json) {
    (void)ud;
    (void)rt;
    printf("  [%s] start, config %s\n", proto, config_json);
    return MR_PROTO_UP;
}

static uint32_t printer_shutdown(void *ud, mr_runtime *rt, const char *proto) {
    (void)ud;
    (void)rt;
    printf("  [%s] shutdown\n", proto);
    return MR_PROTO_DOWN;
}

static bool printer_reconfigure(void *ud, mr_runtime *rt, const char *proto, const char *old_json, const char *new_json) {
    (void)ud;
    (void)rt;
    printf("  [%s] reconfigure %s -> %s: in place\n", proto, old_json, new_json);
    return true;
}

static void printer_export(void *ud, mr_runtime *rt, const char *proto, const mr_route *r) {
    printer *p = ud;
    (void)rt;
    printer_track(p, r);
    printf("  [%s] %s %-18s from %-8s pref %3u %s\n", proto, r->withdrawn ? "withdraw" : "route   ", r->prefix, r->proto,
           (unsigned)r->preference, r->attrs_json);
}

static const mr_proto_vtable printer_vt = {printer_start, printer_shutdown, printer_reconfigure, printer_export, NULL};

/* ------------------------------------------------------------ helpers */

static void apply(mr_bus *bus, const char *json) {
    printf("bus: apply %s\n", json);
    TRY("mr_bus_apply", mr_bus_apply(bus, (const uint8_t *)json, strlen(json)));
}

/* Prints the state events pending on the runtime's readiness fd. */
static void drain_events(mr_runtime *rt) {
    struct pollfd pfd = {mr_runtime_event_fd(rt), POLLIN, 0};
    mr_bytes ev = {0};
    while (poll(&pfd, 1, 0) == 1) {
        if (mr_runtime_next_event(rt, 0, &ev) != MR_OK) {
            break;
        }
        printf("  event %.*s\n", (int)ev.len, (const char *)ev.ptr);
        mr_bytes_free(&ev);
    }
}

/* Waits until the printer has heard of `want` routes (bus deltas travel
 * through a watcher thread) and the runtime is idle. */
static void settle(mr_runtime *rt, printer *p, int want) {
    int i;
    for (i = 0; i < 500; i++) {
        TRY("mr_runtime_wait_idle", mr_runtime_wait_idle(rt, 5000));
        if (p->routes == want) {
            break;
        }
        poll(NULL, 0, 10);
    }
    drain_events(rt);
}

/* The demo's config; only the printer's own config (its format) varies. */
static void commit(mr_runtime *rt, const char *format) {
    char config[1024];
    snprintf(config, sizeof config,
             "{\"protocols\":["
             "{\"name\":\"tailnet\",\"kind\":\"netmap\"},"
             "{\"name\":\"lan\",\"kind\":\"static\",\"routes\":[{\"prefix\":\"192.168.1.0/24\",\"attrs\":{\"dev\":\"eth0\"}},"
             "{\"prefix\":\"10.1.0.0/16\",\"attrs\":{\"dev\":\"eth1\"}}]},"
             "{\"name\":\"out\",\"kind\":\"printer\",\"config\":{\"format\":\"%s\"}}]}",
             format);
    TRY("mr_runtime_commit", mr_runtime_commit(rt, config, MR_COMMIT_SOFT));
}

static size_t count(const mr_bytes *b, const char *needle) {
    size_t n = 0, nl = strlen(needle);
    const char *s = (const char *)b->ptr, *end = s + b->len;
    while (s < end && (s = memmem(s, (size_t)(end - s), needle, nl)) != NULL) {
        n++;
        s += nl;
    }
    return n;
}

int main(void) {
    mr_bus *bus = NULL;
    mr_runtime *rt = NULL;
    printer p = {0};
    mr_bytes out = {0};
    size_t best;
    size_t matched = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    TRY("mr_bus_new", mr_bus_new(NULL, &bus));
    apply(bus, "{\"Peers\":["
               "{\"ID\":1,\"StableID\":\"nA\",\"Name\":\"alpha.ts.net\",\"AllowedIPs\":[\"100.64.0.1/32\",\"10.1.0.0/16\"]},"
               "{\"ID\":2,\"StableID\":\"nB\",\"Name\":\"beta.ts.net\",\"AllowedIPs\":[\"100.64.0.2/32\"]},"
               "{\"ID\":3,\"StableID\":\"nC\",\"Name\":\"gamma.ts.net\",\"AllowedIPs\":[\"100.64.0.3/32\",\"fd7a:115c:a1e0::3/128\"]}]}");

    TRY("mr_runtime_new", mr_runtime_new(NULL, &rt));
    TRY("mr_runtime_register_kind", mr_runtime_register_kind(rt, "printer", &printer_vt, &p));
    TRY("mr_runtime_attach_bus", mr_runtime_attach_bus(rt, bus));

    printf("\ncommit: tailnet (netmap), lan (static), out (printer)\n");
    commit(rt, "text");
    settle(rt, &p, 6);

    printf("\npeer 2 moves to a subnet router, peer 3 leaves\n");
    apply(bus, "{\"PeersChanged\":[{\"ID\":2,\"StableID\":\"nB\",\"Name\":\"beta.ts.net\",\"AllowedIPs\":[\"100.64.0.2/32\",\"10.2.0.0/16\"]}],"
               "\"PeersRemoved\":[3]}");
    settle(rt, &p, 5);

    printf("\ndisable lan (its routes are flushed)\n");
    TRY("mr_runtime_disable", mr_runtime_disable(rt, "l*", &matched));
    settle(rt, &p, 4);

    printf("\ncommit: the printer's own config changes (reconfigured in place)\n");
    commit(rt, "json");
    settle(rt, &p, 4);

    TRY("mr_runtime_show_protocols", mr_runtime_show_protocols(rt, &out));
    printf("\nshow protocols: %.*s\n", (int)out.len, (const char *)out.ptr);
    mr_bytes_free(&out);
    TRY("mr_runtime_show_route", mr_runtime_show_route(rt, NULL, NULL, &out));
    printf("show route: %.*s\n", (int)out.len, (const char *)out.ptr);
    best = count(&out, "\"best\":true");
    mr_bytes_free(&out);

    mr_runtime_free(rt);
    mr_bus_free(bus);
    if ((size_t)p.routes != best) {
        printf("routes: FAIL: the printer holds %d routes, the table has %zu best routes\n", p.routes, best);
        return 1;
    }
    printf("routes: ok: the printer holds the table's %zu best routes\n", best);
    return 0;
}
