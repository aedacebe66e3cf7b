/*
 * The lifecycle runtime through the C ABI: host-defined kinds (vtable
 * callbacks on the loop thread), static routes fed to a host protocol,
 * asynchronous start/stop reported with mr_proto_notify_state, legal and
 * illegal transitions, imports and withdrawals, flush on disable, commit
 * (reconfigure in place vs restart, removal, failed commit changes
 * nothing), pattern commands, the restart limit, events with the
 * readiness fd, netmap routes from a bus, re-entrant calls from a callback,
 * close/free (free_userdata once, calls after close) and bad input of every
 * kind: NULL pointers, NULL vtable functions, bad JSON, unknown kind,
 * duplicate names, invalid prefixes, bad state values, removed protocols.
 * Every mr_bytes is released, so ASan/valgrind catch leaks.
 */
#include "test_util.h"

#include <stdint.h>

/* ------------------------------------------------------------ a host kind */

typedef struct host {
    pthread_mutex_t mu;
    int starts, shutdowns, reconfigures, exports, withdrawals, freed;
    uint32_t start_answer;     /* what start returns */
    int reconfigure_answer;    /* what reconfigure returns */
    int reenter;               /* export_route calls mr_runtime_show_route */
    int reenter_ok;
    char last_prefix[64];
    char last_config[128];
} host;

static void host_init(host *h)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    h->start_answer = MR_PROTO_UP;
    h->reconfigure_answer = 1;
}

static int host_get(host *h, const int *field)
{
    int v;
    pthread_mutex_lock(&h->mu);
    v = *field;
    pthread_mutex_unlock(&h->mu);
    return v;
}

static uint32_t h_start(void *ud, mr_runtime *rt, const char *proto, const char *config_json)
{
    host *h = ud;
    (void)rt;
    (void)proto;
    pthread_mutex_lock(&h->mu);
    h->starts++;
    snprintf(h->last_config, sizeof h->last_config, "%s", config_json);
    pthread_mutex_unlock(&h->mu);
    return h->start_answer;
}

static uint32_t h_shutdown(void *ud, mr_runtime *rt, const char *proto)
{
    host *h = ud;
    (void)rt;
    (void)proto;
    pthread_mutex_lock(&h->mu);
    h->shutdowns++;
    pthread_mutex_unlock(&h->mu);
    return MR_PROTO_DOWN;
}

static bool h_reconfigure(void *ud, mr_runtime *rt, const char *proto, const char *old_json, const char *new_json)
{
    host *h = ud;
    (void)rt;
    (void)proto;
    (void)old_json;
    pthread_mutex_lock(&h->mu);
    h->reconfigures++;
    snprintf(h->last_config, sizeof h->last_config, "%s", new_json);
    pthread_mutex_unlock(&h->mu);
    return h->reconfigure_answer != 0;
}

static void h_export(void *ud, mr_runtime *rt, const char *proto, const mr_route *r)
{
    host *h = ud;
    (void)proto;
    pthread_mutex_lock(&h->mu);
    h->exports++;
    if (r->withdrawn) {
        h->withdrawals++;
    }
    snprintf(h->last_prefix, sizeof h->last_prefix, "%s", r->prefix);
    pthread_mutex_unlock(&h->mu);
    if (h->reenter) {
        mr_bytes out = {0};
        /* Calls from the loop thread must not deadlock. */
        if (mr_runtime_show_route(rt, r->prefix, NULL, &out) == MR_OK && out.len > 0) {
            pthread_mutex_lock(&h->mu);
            h->reenter_ok++;
            pthread_mutex_unlock(&h->mu);
        }
        mr_bytes_free(&out);
    }
}

static void h_free(void *ud)
{
    host *h = ud;
    pthread_mutex_lock(&h->mu);
    h->freed++;
    pthread_mutex_unlock(&h->mu);
}

static const mr_proto_vtable VT = {h_start, h_shutdown, h_reconfigure, h_export, h_free};

/* ------------------------------------------------------------ helpers */

static int json_has(const mr_bytes *b, const char *needle)
{
    return b->ptr != NULL && memmem(b->ptr, b->len, needle, strlen(needle)) != NULL;
}

static int protos_have(mr_runtime *rt, const char *needle)
{
    mr_bytes b = {0};
    int r = mr_runtime_show_protocols(rt, &b) == MR_OK && json_has(&b, needle);
    mr_bytes_free(&b);
    return r;
}

static size_t route_count(mr_runtime *rt, const char *prefix, const char *proto)
{
    mr_bytes b = {0};
    size_t n = 0;
    if (mr_runtime_show_route(rt, prefix, proto, &b) == MR_OK) {
        n = bytes_count(&b, "\"prefix\"");
    }
    mr_bytes_free(&b);
    return n;
}

static void idle(mr_runtime *rt)
{
    CHECK_ST(mr_runtime_wait_idle(rt, 20000), MR_OK);
}

static mr_runtime *new_runtime(host *h)
{
    mr_runtime *rt = NULL;
    CHECK_ST(mr_runtime_new("{\"feed_chunk\":4}", &rt), MR_OK);
    if (h != NULL) {
        CHECK_ST(mr_runtime_register_kind(rt, "host", &VT, h), MR_OK);
    }
    return rt;
}

/* ------------------------------------------------------------ tests */

static void test_bad_arguments(void)
{
    mr_runtime *rt = NULL;
    mr_proto_vtable vt;
    host h;
    size_t matched = 99;
    mr_bytes b = {0};
    int i;

    host_init(&h);
    CHECK_FAIL(mr_runtime_new(NULL, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_new("{", &rt), MR_PARSE);
    CHECK(rt == NULL, "out is NULL on failure");
    CHECK_FAIL(mr_runtime_new("{\"feed_chunk\":0}", &rt), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_new("{\"colour\":1}", &rt), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_runtime_new(NULL, &rt), MR_OK);

    /* NULL vtable functions, one at a time: rejected, userdata not released. */
    for (i = 0; i < 4; i++) {
        vt = VT;
        if (i == 0) vt.start = NULL;
        if (i == 1) vt.shutdown = NULL;
        if (i == 2) vt.reconfigure = NULL;
        if (i == 3) vt.export_route = NULL;
        CHECK_FAIL(mr_runtime_register_kind(rt, "k", &vt, &h), MR_INVALID_ARGUMENT);
    }
    CHECK_FAIL(mr_runtime_register_kind(rt, "k", NULL, &h), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_register_kind(rt, NULL, &VT, &h), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_register_kind(NULL, "k", &VT, &h), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_register_kind(rt, "static", &VT, &h), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_register_kind(rt, "bad name*", &VT, &h), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(h.freed, 0);
    vt = VT;
    vt.free_userdata = NULL; /* optional */
    CHECK_ST(mr_runtime_register_kind(rt, "k", &vt, &h), MR_OK);
    CHECK_FAIL(mr_runtime_register_kind(rt, "k", &VT, &h), MR_INVALID_ARGUMENT);

    /* Bad configs. */
    CHECK_FAIL(mr_runtime_commit(rt, NULL, MR_COMMIT_SOFT), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_commit(rt, "{\"protocols\":[", MR_COMMIT_SOFT), MR_PARSE);
    CHECK_FAIL(mr_runtime_commit(rt, "{}", 7), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"a\",\"kind\":\"nope\"}]}", MR_COMMIT_SOFT), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"a\",\"kind\":\"k\"},{\"name\":\"a\",\"kind\":\"k\"}]}", MR_COMMIT_SOFT),
               MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"s\",\"kind\":\"static\",\"routes\":[{\"prefix\":\"10.0.0.1/8\"}]}]}",
                                 MR_COMMIT_SOFT),
               MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"s\",\"kind\":\"static\",\"routes\":[{\"prefix\":\"nonsense\"}]}]}",
                                 MR_COMMIT_SOFT),
               MR_INVALID_ARGUMENT);
    CHECK_ST(mr_runtime_show_protocols(rt, &b), MR_OK);
    CHECK(b.len == 2 && memcmp(b.ptr, "[]", 2) == 0, "failed commits changed nothing: %.*s", (int)b.len, (const char *)b.ptr);
    mr_bytes_free(&b);

    /* Calls naming protocols that do not exist, and NULLs. */
    CHECK_FAIL(mr_proto_notify_state(rt, "ghost", MR_PROTO_UP, NULL), MR_NOT_FOUND);
    CHECK_FAIL(mr_proto_import(rt, "ghost", "10.0.0.0/8", 0, NULL), MR_NOT_FOUND);
    CHECK_FAIL(mr_proto_withdraw(rt, "ghost", "10.0.0.0/8"), MR_NOT_FOUND);
    CHECK_FAIL(mr_proto_import(rt, "ghost", "10.0.0.0/99", 0, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_proto_import(rt, NULL, "10.0.0.0/8", 0, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_proto_import(rt, "ghost", NULL, 0, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_proto_notify_state(rt, NULL, MR_PROTO_UP, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_proto_notify_state(NULL, "x", MR_PROTO_UP, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_enable(rt, "*", &matched), MR_NOT_FOUND);
    CHECK_EQ_U(matched, 0);
    CHECK_FAIL(mr_runtime_disable(rt, NULL, &matched), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_restart(NULL, "*", NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_show_protocols(rt, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_show_route(rt, "10.0.0.1/8", NULL, &b), MR_INVALID_ARGUMENT);
    CHECK(b.ptr == NULL && b.len == 0, "no bytes on failure");
    CHECK_FAIL(mr_runtime_show_route(NULL, NULL, NULL, &b), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_next_event(NULL, 0, &b), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_next_event(rt, 0, NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_runtime_event_fd(NULL) == -1, "fd of NULL is -1");
    CHECK_FAIL(mr_runtime_attach_bus(rt, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_wait_idle(NULL, 0), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_runtime_close(NULL), MR_INVALID_ARGUMENT);
    mr_runtime_free(NULL);
    mr_runtime_free(rt);
    CHECK_EQ_U(h.freed, 0); /* registered without free_userdata */
}

/* Six static routes and one host protocol. */
static const char STATIC_AND_HOST[] =
    "{\"protocols\":["
    "{\"name\":\"s1\",\"kind\":\"static\",\"routes\":["
    "{\"prefix\":\"10.0.0.0/8\"},{\"prefix\":\"10.1.0.0/16\"},{\"prefix\":\"192.0.2.0/24\"},"
    "{\"prefix\":\"198.51.100.0/24\"},{\"prefix\":\"203.0.113.0/24\"},{\"prefix\":\"fd00::/8\",\"attrs\":{\"a\":1}}]},"
    "{\"name\":\"h1\",\"kind\":\"host\",\"config\":{\"k\":1}}]}";

/* The same with s1's own config changed (so a commit of it is a real one
 * that reaches the disabled s1, and leaves h1 alone). */
static const char STATIC_AND_HOST_S2[] =
    "{\"protocols\":["
    "{\"name\":\"s1\",\"kind\":\"static\",\"routes\":["
    "{\"prefix\":\"10.0.0.0/8\"},{\"prefix\":\"10.1.0.0/16\"},{\"prefix\":\"192.0.2.0/24\"},"
    "{\"prefix\":\"198.51.100.0/24\"},{\"prefix\":\"203.0.113.0/24\"},{\"prefix\":\"fd00::/8\",\"attrs\":{\"a\":2}}]},"
    "{\"name\":\"h1\",\"kind\":\"host\",\"config\":{\"k\":1}}]}";

static void test_static_feed_flush_and_commands(void)
{
    host h;
    mr_runtime *rt;
    size_t matched = 0;

    host_init(&h);
    h.reenter = 1;
    rt = new_runtime(&h);
    CHECK_ST(mr_runtime_commit(rt, STATIC_AND_HOST, MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK(protos_have(rt, "\"name\":\"h1\"") && protos_have(rt, "\"state\":\"up\""), "both up");
    CHECK_EQ_U(host_get(&h, &h.starts), 1);
    CHECK(strcmp(h.last_config, "{\"k\":1}") == 0, "start got the config member: %s", h.last_config);
    CHECK_EQ_U(host_get(&h, &h.exports), 6);
    CHECK_EQ_U(host_get(&h, &h.reenter_ok), 6);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 6);
    CHECK_EQ_U(route_count(rt, "10.0.0.0/8", NULL), 2);
    CHECK_EQ_U(route_count(rt, NULL, "s?"), 6);
    CHECK_EQ_U(route_count(rt, NULL, "h*"), 0);

    /* The host imports; the static route stays a candidate. */
    CHECK_ST(mr_proto_import(rt, "h1", "10.0.0.0/8", 300, "{\"via\":\"wg0\"}"), MR_OK);
    /* Let h1 hear s1's /8 go before it withdraws its own: changes to one
       prefix still pending coalesce, and this test counts withdrawals. */
    idle(rt);
    CHECK_EQ_U(route_count(rt, "10.0.0.0/8", NULL), 3);
    CHECK_FAIL(mr_proto_import(rt, "h1", "10.0.0.0/8", 0, "{"), MR_PARSE);
    CHECK_FAIL(mr_proto_import(rt, "h1", "10.0.0.0/8", 0, "[1]"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_proto_withdraw(rt, "h1", "10.9.0.0/16"), MR_NOT_FOUND);
    CHECK_ST(mr_proto_withdraw(rt, "h1", "10.0.0.0/8"), MR_OK);

    /* Flush on disable: h1 hears every withdrawal. */
    CHECK_ST(mr_runtime_disable(rt, "s*", &matched), MR_OK);
    CHECK_EQ_U(matched, 1);
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0);
    /* 1 when h1's own /8 won earlier, 6 from the flush. */
    CHECK_EQ_U(host_get(&h, &h.withdrawals), 7);
    CHECK(protos_have(rt, "\"state\":\"down\""), "s1 down");
    /* Disabled stays down across commits: the same config, and one that
     * changes s1 itself (then back); the hard case is in the Rust tests, as
     * a hard commit would restart h1 and shift the counts checked below. */
    CHECK_ST(mr_runtime_commit(rt, STATIC_AND_HOST, MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0);
    CHECK_ST(mr_runtime_commit(rt, STATIC_AND_HOST_S2, MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0);
    CHECK_ST(mr_runtime_commit(rt, STATIC_AND_HOST, MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0);
    CHECK_ST(mr_runtime_enable(rt, "*", &matched), MR_OK);
    CHECK_EQ_U(matched, 2);
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 6);

    /* Reconfigure in place, then a refusal that restarts. */
    CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"h1\",\"kind\":\"host\",\"config\":{\"k\":2}}]}", MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK_EQ_U(host_get(&h, &h.reconfigures), 1);
    CHECK_EQ_U(host_get(&h, &h.starts), 1);
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0); /* s1 removed and flushed */
    h.reconfigure_answer = 0;
    CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"h1\",\"kind\":\"host\",\"config\":{\"k\":3}}]}", MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK_EQ_U(host_get(&h, &h.reconfigures), 2);
    CHECK_EQ_U(host_get(&h, &h.shutdowns), 1);
    CHECK_EQ_U(host_get(&h, &h.starts), 2);
    CHECK(strcmp(h.last_config, "{\"k\":3}") == 0, "restarted with the new config: %s", h.last_config);
    CHECK_ST(mr_runtime_restart(rt, "h?", &matched), MR_OK);
    idle(rt);
    CHECK_EQ_U(host_get(&h, &h.starts), 3);
    /* A removed protocol: calls naming it are MR_NOT_FOUND. */
    CHECK_ST(mr_runtime_commit(rt, "{}", MR_COMMIT_HARD), MR_OK);
    idle(rt);
    CHECK_FAIL(mr_proto_import(rt, "h1", "10.0.0.0/8", 0, NULL), MR_NOT_FOUND);
    CHECK_FAIL(mr_proto_notify_state(rt, "h1", MR_PROTO_DOWN, NULL), MR_NOT_FOUND);
    CHECK_FAIL(mr_runtime_enable(rt, "h1", NULL), MR_NOT_FOUND);

    CHECK_EQ_U(host_get(&h, &h.freed), 0);
    CHECK_ST(mr_runtime_close(rt), MR_OK);
    CHECK_EQ_U(host_get(&h, &h.freed), 1);
    CHECK_ST(mr_runtime_close(rt), MR_OK);
    CHECK_FAIL(mr_runtime_commit(rt, "{}", MR_COMMIT_SOFT), MR_CLOSED);
    CHECK_FAIL(mr_proto_import(rt, "h1", "10.0.0.0/8", 0, NULL), MR_CLOSED);
    CHECK_FAIL(mr_runtime_register_kind(rt, "late", &VT, &h), MR_CLOSED);
    mr_runtime_free(rt);
    CHECK_EQ_U(h.freed, 1);
}

static void test_async_states_and_events(void)
{
    host h;
    mr_runtime *rt;
    mr_bytes ev = {0};
    struct pollfd pfd;
    int n = 0, saw_feed = 0;

    host_init(&h);
    h.start_answer = MR_PROTO_START;
    rt = new_runtime(&h);
    CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"a\",\"kind\":\"host\"}]}", MR_COMMIT_SOFT), MR_OK);
    idle(rt);
    CHECK(protos_have(rt, "\"state\":\"start\""), "waiting in start");
    CHECK_FAIL(mr_proto_notify_state(rt, "a", 9, NULL), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_proto_import(rt, "a", "192.0.2.0/24", 0, NULL), MR_OK);
    CHECK_ST(mr_proto_notify_state(rt, "a", MR_PROTO_UP, "connected"), MR_OK);
    CHECK_FAIL(mr_proto_notify_state(rt, "a", MR_PROTO_START, NULL), MR_STATE);
    idle(rt);
    CHECK(protos_have(rt, "\"info\":\"connected\"") && protos_have(rt, "\"state\":\"up\""), "up with info");

    pfd.fd = mr_runtime_event_fd(rt);
    pfd.events = POLLIN;
    CHECK(pfd.fd >= 0 && poll(&pfd, 1, 1000) == 1, "event fd readable");
    while (mr_runtime_next_event(rt, 0, &ev) == MR_OK) {
        n++;
        if (json_has(&ev, "\"state\":\"feed\"")) {
            saw_feed = 1;
        }
        CHECK(json_has(&ev, "{\"Protocol\":{"), "Notify-style: %.*s", (int)ev.len, (const char *)ev.ptr);
        mr_bytes_free(&ev);
    }
    CHECK(n >= 4 && saw_feed, "down, start, feed, up events (%d)", n);
    CHECK(poll(&pfd, 1, 0) == 0, "fd cleared after MR_WOULD_BLOCK");
    CHECK_FAIL(mr_runtime_next_event(rt, 20, &ev), MR_TIMEOUT);

    /* A stop reported while up is a failure: flushed, then down on request. */
    CHECK_ST(mr_proto_notify_state(rt, "a", MR_PROTO_STOP, "peer reset"), MR_OK);
    idle(rt);
    CHECK(protos_have(rt, "\"state\":\"stop\""), "flushed, stop until it says down");
    CHECK_EQ_U(route_count(rt, NULL, NULL), 0);
    CHECK_FAIL(mr_proto_import(rt, "a", "192.0.2.0/24", 0, NULL), MR_STATE);
    CHECK_ST(mr_proto_notify_state(rt, "a", MR_PROTO_DOWN, NULL), MR_OK);
    idle(rt);
    CHECK_EQ_U(host_get(&h, &h.starts), 2); /* started again */
    mr_runtime_free(rt);
    CHECK_EQ_U(h.freed, 1);
}

static void test_restart_limit(void)
{
    host h;
    mr_runtime *rt;

    host_init(&h);
    h.start_answer = MR_PROTO_DOWN;
    rt = new_runtime(&h);
    CHECK_ST(mr_runtime_commit(rt, "{\"restart_limit\":{\"count\":2,\"seconds\":60},\"protocols\":[{\"name\":\"flap\",\"kind\":\"host\"}]}",
                               MR_COMMIT_SOFT),
             MR_OK);
    idle(rt);
    CHECK_EQ_U(host_get(&h, &h.starts), 3);
    CHECK(protos_have(rt, "restart limit") && protos_have(rt, "\"disabled\":true"), "disabled with a reason");
    h.start_answer = MR_PROTO_UP;
    CHECK_ST(mr_runtime_enable(rt, "flap", NULL), MR_OK);
    idle(rt);
    CHECK(protos_have(rt, "\"state\":\"up\""), "enable clears it");
    mr_runtime_free(rt);
}

static void test_netmap_from_bus(void)
{
    host h;
    mr_runtime *rt;
    mr_bus *bus = NULL;
    const char *peers = "{\"Peers\":[{\"ID\":1,\"StableID\":\"n1\",\"Name\":\"a.ts.net\",\"AllowedIPs\":[\"100.64.0.1/32\",\"10.1.0.0/16\"]},"
                        "{\"ID\":2,\"AllowedIPs\":[\"100.64.0.2/32\"]}]}";
    const char *delta = "{\"PeersRemoved\":[2]}";
    int i;

    host_init(&h);
    rt = new_runtime(&h);
    CHECK_ST(mr_bus_new(NULL, &bus), MR_OK);
    CHECK_ST(mr_bus_apply(bus, (const uint8_t *)peers, strlen(peers)), MR_OK);
    CHECK_ST(mr_runtime_attach_bus(rt, bus), MR_OK);
    CHECK_FAIL(mr_runtime_attach_bus(rt, bus), MR_STATE);
    CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"nm\",\"kind\":\"netmap\"},{\"name\":\"h\",\"kind\":\"host\"}]}", MR_COMMIT_SOFT),
             MR_OK);
    for (i = 0; i < 400 && route_count(rt, NULL, "nm") < 3; i++) {
        sleep_ms(10);
    }
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, "nm"), 3);
    CHECK_EQ_U(host_get(&h, &h.exports), 3);
    CHECK_ST(mr_bus_apply(bus, (const uint8_t *)delta, strlen(delta)), MR_OK);
    for (i = 0; i < 400 && route_count(rt, NULL, "nm") != 2; i++) {
        sleep_ms(10);
    }
    idle(rt);
    CHECK_EQ_U(route_count(rt, NULL, "nm"), 2);
    CHECK_EQ_U(host_get(&h, &h.withdrawals), 1);
    /* The bus may go first. */
    mr_bus_free(bus);
    CHECK_ST(mr_runtime_restart(rt, "nm", NULL), MR_OK);
    idle(rt);
    mr_runtime_free(rt);
}

typedef struct importer {
    mr_runtime *rt;
    int base;
    int ok;
} importer;

static void *import_many(void *arg)
{
    importer *im = arg;
    char prefix[32];
    int i;
    for (i = 0; i < 200; i++) {
        snprintf(prefix, sizeof prefix, "10.%d.%d.0/24", im->base, i);
        if (mr_proto_import(im->rt, "src", prefix, 0, "{}") == MR_OK) {
            im->ok++;
        }
    }
    return NULL;
}

static void test_concurrent_imports(void)
{
    host src, sink;
    mr_runtime *rt;
    pthread_t t[2];
    importer im[2];
    int i;

    host_init(&src);
    host_init(&sink);
    rt = new_runtime(&src);
    CHECK_ST(mr_runtime_register_kind(rt, "sink", &VT, &sink), MR_OK);
    CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"src\",\"kind\":\"host\"},{\"name\":\"out\",\"kind\":\"sink\"}]}", MR_COMMIT_SOFT),
             MR_OK);
    idle(rt);
    for (i = 0; i < 2; i++) {
        im[i].rt = rt;
        im[i].base = i + 1;
        im[i].ok = 0;
        pthread_create(&t[i], NULL, import_many, &im[i]);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    idle(rt);
    CHECK_EQ_U(im[0].ok + im[1].ok, 400);
    CHECK_EQ_U(host_get(&sink, &sink.exports), 400);
    CHECK_EQ_U(route_count(rt, NULL, "src"), 400);
    mr_runtime_free(rt);
    CHECK_EQ_U(src.freed + sink.freed, 2);
}

int main(int argc, char **argv)
{
    test_init(argc, argv);
    test_bad_arguments();
    test_static_feed_flush_and_commands();
    test_async_states_and_events();
    test_restart_limit();
    test_netmap_from_bus();
    test_concurrent_imports();
    return test_finish("test_runtime");
}
