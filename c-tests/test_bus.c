/*
 * The notify bus through the C ABI: create/free, apply of MapResponses,
 * O(1) peer reads (huge and unknown ids), netmap/status JSON, watchers of
 * each peer class (PeersChanged / PeersRemoved / PeerChangedPatch),
 * chunked initial views ending in "InitialComplete": true, timeouts,
 * the readiness fd, close from another thread, bus close closing its
 * watchers, calls on closed handles, and bad input of every kind (NULL,
 * len 0, malformed JSON, wrong types, bad UTF-8, huge ids), each failure
 * with a non-empty mr_last_error. Unknown node fields must survive.
 * Every mr_bytes is released with mr_bytes_free, so ASan/valgrind catch leaks.
 */
#include "test_util.h"

#include <stdint.h>

/* ------------------------------------------------------------ helpers */

static mr_status apply_str(mr_bus *b, const char *json)
{
    return mr_bus_apply(b, (const uint8_t *)json, strlen(json));
}

static mr_status publish_str(mr_bus *b, const char *json)
{
    return mr_bus_publish(b, (const uint8_t *)json, strlen(json));
}

static int has(const mr_bytes *m, const char *needle)
{
    return m->ptr != NULL && memmem(m->ptr, m->len, needle, strlen(needle)) != NULL;
}

/*
 * Reads messages (1 s each) until one contains `needle`, at most 4; the
 * ones before it must be profile-only messages (a session's first sight of
 * a UserProfile may travel alone, ahead of its node). `*early` (if given)
 * is set when `early_needle` appeared in a message before or in the match.
 * MR_OK with the match in *m, or the failing status.
 */
static mr_status next_with(mr_watcher *w, const char *needle, mr_bytes *m,
                           const char *early_needle, int *early)
{
    int i;
    if (early != NULL) {
        *early = 0;
    }
    for (i = 0; i < 4; i++) {
        mr_status st = mr_watcher_next(w, 1000, m);
        if (st != MR_OK) {
            return st;
        }
        if (early != NULL && early_needle != NULL && has(m, early_needle)) {
            *early = 1;
        }
        if (has(m, needle)) {
            return MR_OK;
        }
        CHECK(has(m, "\"UserProfiles\"") && !has(m, "\"Peers"), "only a profile message precedes "
              "the delta, got %.*s", (int)m->len, (const char *)m->ptr);
        mr_bytes_free(m);
    }
    return MR_NOT_FOUND;
}


/*
 * A structural check of a JSON object: starts with '{', ends with '}',
 * braces and brackets balance outside strings, strings terminate, no
 * control bytes or NULs. Not a full parser, but it fails on truncation,
 * unbalanced nesting and raw garbage.
 */
static int json_object_ok(const mr_bytes *m)
{
    char stack[256];
    int depth = 0, in_str = 0;
    size_t i;
    if (m->ptr == NULL || m->len < 2 || m->ptr[0] != '{' || m->ptr[m->len - 1] != '}') {
        return 0;
    }
    for (i = 0; i < m->len; i++) {
        uint8_t c = m->ptr[i];
        if (c < 0x20) {
            if (c == '\n' || c == '\t' || c == '\r') {
                if (in_str) {
                    return 0;
                }
                continue;
            }
            return 0;
        }
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (depth == (int)sizeof stack) {
                return 0;
            }
            stack[depth++] = (char)c;
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' : '[')) {
                return 0;
            }
            depth--;
            if (depth == 0 && i != m->len - 1) {
                return 0;
            }
        }
    }
    return depth == 0 && !in_str;
}

/* A bus with default options; NULL (counted as a failure) when it cannot be made. */
static mr_bus *new_bus(const char *opts)
{
    mr_bus *b = NULL;
    if (!CHECK_ST(mr_bus_new(opts, &b), MR_OK) || !CHECK(b != NULL, "bus handle")) {
        return NULL;
    }
    return b;
}

/* PeerCount from mr_bus_status, -1 on failure. */
static long peer_count(mr_bus *b)
{
    mr_bytes s = {NULL, 0};
    long n = -1;
    if (mr_bus_stats(b, &s) == MR_OK) {
        const uint8_t *p = memmem(s.ptr, s.len, "\"PeerCount\":", 12);
        if (p != NULL) {
            n = strtol((const char *)p + 12, NULL, 10);
        }
    }
    mr_bytes_free(&s);
    return n;
}

/* "Peers":[{"ID":2,...},...] for ids [first, first+n), user 100 or 101. */
static char *peers_json(const char *prefix, int64_t first, int n, const char *suffix)
{
    size_t cap = strlen(prefix) + strlen(suffix) + (size_t)n * 96 + 16;
    char *s = malloc(cap), *p;
    int i;
    if (s == NULL) {
        return NULL;
    }
    p = s + sprintf(s, "%s", prefix);
    for (i = 0; i < n; i++) {
        int64_t id = first + i;
        p += sprintf(p, "%s{\"ID\":%lld,\"Name\":\"peer-%lld\",\"User\":%d,\"Online\":false}",
                     i ? "," : "", (long long)id, (long long)id, 100 + (int)(id % 2));
    }
    sprintf(p, "%s", suffix);
    return s;
}

/* ------------------------------------------------------------ cases */

static void create_and_free(void)
{
    mr_bus *b = NULL;
    const char bad_utf8[] = {'{', '"', (char)0xff, '"', ':', '1', '}', 0};
    printf("-- create / free / options\n");
    b = new_bus(NULL);
    mr_bus_free(b);
    b = new_bus("{\"rate_limit_ms\":100,\"initial_chunk\":5,\"backlog\":50}");
    mr_bus_free(b);
    b = new_bus("{}");
    mr_bus_free(b);
    mr_bus_free(NULL); /* no-op */

    b = (mr_bus *)(uintptr_t)1; /* *out must be reset to NULL on failure */
    CHECK_FAIL(mr_bus_new("{", &b), MR_PARSE);
    CHECK(b == NULL, "*out NULL after a failed mr_bus_new");
    CHECK_FAIL(mr_bus_new("[1,2]", &b), MR_PARSE);
    CHECK_FAIL(mr_bus_new("{\"backlog\":\"x\"}", &b), MR_PARSE);
    CHECK_FAIL(mr_bus_new("{\"backlog\":-1}", &b), MR_PARSE);
    CHECK_FAIL(mr_bus_new("{\"no_such_option\":1}", &b), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_new("{\"initial_chunk\":0}", &b), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_new(bad_utf8, &b), MR_INVALID_ARGUMENT);
    CHECK(b == NULL, "*out NULL after failures");
    CHECK_FAIL(mr_bus_new(NULL, NULL), MR_INVALID_ARGUMENT);
}

static void apply_and_read(void)
{
    static const char *update =
        "{\"Node\":{\"ID\":1,\"Name\":\"self\",\"User\":100},"
        "\"Peers\":[{\"ID\":2,\"Name\":\"peer-2\",\"User\":100},"
        "{\"ID\":3,\"Name\":\"peer-3\",\"User\":101,\"Online\":true},"
        "{\"ID\":9223372036854775807,\"Name\":\"peer-max\",\"User\":101},"
        "{\"ID\":-9223372036854775808,\"Name\":\"peer-min\",\"User\":100}],"
        "\"UserProfiles\":[{\"ID\":100,\"LoginName\":\"alice@example.com\"},"
        "{\"ID\":101,\"LoginName\":\"bob@example.com\"}],"
        "\"DNSConfig\":{\"Resolvers\":[{\"Addr\":\"100.100.100.100\"}]},"
        "\"Domain\":\"example.ts.net\",\"SomeFutureField\":{\"x\":1}}";
    mr_bus *b;
    mr_bytes m = {NULL, 0};
    printf("-- apply Node/Peers/UserProfiles, peer / netmap / status\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_ST(apply_str(b, update), MR_OK);
    CHECK(peer_count(b) == 4, "PeerCount %ld, want 4", peer_count(b));

    CHECK_ST(mr_bus_peer(b, 2, &m), MR_OK);
    CHECK(json_object_ok(&m), "peer 2 JSON is an object");
    CHECK(has(&m, "\"ID\":2") && has(&m, "\"Name\":\"peer-2\""), "peer 2 content");
    mr_bytes_free(&m);
    CHECK(m.ptr == NULL && m.len == 0, "mr_bytes_free resets to {NULL, 0}");
    mr_bytes_free(&m); /* already released: no-op */
    mr_bytes_free(NULL);

    CHECK_ST(mr_bus_peer(b, INT64_MAX, &m), MR_OK);
    CHECK(has(&m, "9223372036854775807") && has(&m, "peer-max"), "INT64_MAX peer");
    mr_bytes_free(&m);
    CHECK_ST(mr_bus_peer(b, INT64_MIN, &m), MR_OK);
    CHECK(has(&m, "-9223372036854775808") && has(&m, "peer-min"), "INT64_MIN peer");
    mr_bytes_free(&m);

    m.ptr = (const uint8_t *)"junk";
    m.len = 4;
    CHECK_FAIL(mr_bus_peer(b, 999, &m), MR_NOT_FOUND);
    CHECK(m.ptr == NULL && m.len == 0, "out is {NULL, 0} on MR_NOT_FOUND");
    CHECK_FAIL(mr_bus_peer(b, INT64_MAX - 1, &m), MR_NOT_FOUND);
    CHECK_FAIL(mr_bus_peer(b, INT64_MIN + 1, &m), MR_NOT_FOUND);
    CHECK_FAIL(mr_bus_peer(b, 0, &m), MR_NOT_FOUND);
    CHECK_FAIL(mr_bus_peer(b, 1, &m), MR_NOT_FOUND); /* the self node is not a peer */
    CHECK_FAIL(mr_bus_peer(b, -1, &m), MR_NOT_FOUND);

    CHECK_ST(mr_bus_netmap(b, &m), MR_OK);
    CHECK(json_object_ok(&m), "netmap is a balanced JSON object (%zu bytes)", m.len);
    CHECK(has(&m, "\"SelfNode\"") && has(&m, "\"Name\":\"self\""), "netmap SelfNode");
    CHECK(has(&m, "\"Peers\"") && has(&m, "peer-2") && has(&m, "peer-3") &&
              has(&m, "peer-max") && has(&m, "peer-min"),
          "netmap Peers");
    CHECK(has(&m, "\"UserProfiles\"") && has(&m, "alice@example.com") &&
              has(&m, "bob@example.com"),
          "netmap UserProfiles");
    CHECK(has(&m, "100.100.100.100") && has(&m, "example.ts.net"), "netmap DNS and Domain");
    CHECK(!has(&m, "SomeFutureField"), "unknown top-level MapResponse fields are not netmap fields");
    mr_bytes_free(&m);

    CHECK_ST(publish_str(b, "{\"State\":6,\"Health\":{\"Warnings\":{}}}"), MR_OK);
    CHECK_ST(mr_bus_stats(b, &m), MR_OK);
    CHECK(json_object_ok(&m), "status is a balanced JSON object");
    CHECK(has(&m, "\"PeerCount\":4") && has(&m, "\"UserProfileCount\":2"), "status counts");
    CHECK(has(&m, "\"BackendState\":\"Running\""), "status BackendState from State 6");
    CHECK(has(&m, "\"Watchers\":0"), "status Watchers 0");
    mr_bytes_free(&m);

    /* Peers is a full replace: 3 and the extremes go, 2 stays. */
    CHECK_ST(apply_str(b, "{\"Peers\":[{\"ID\":2,\"Name\":\"peer-2\",\"User\":100}]}"), MR_OK);
    CHECK(peer_count(b) == 1, "PeerCount after full replace %ld, want 1", peer_count(b));
    CHECK_FAIL(mr_bus_peer(b, INT64_MAX, &m), MR_NOT_FOUND);
    /* As tailscaled: an empty Peers is no peer list, nor is null. */
    CHECK_ST(apply_str(b, "{\"Peers\":[]}"), MR_OK);
    CHECK(peer_count(b) == 1, "Peers:[] keeps the peers (%ld)", peer_count(b));
    CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":5}]}"), MR_OK);
    CHECK_ST(apply_str(b, "{\"Peers\":null}"), MR_OK);
    CHECK(peer_count(b) == 2, "Peers:null keeps the peers (%ld)", peer_count(b));
    mr_bus_free(b);
}

/* O(1) lookup: the average mr_bus_peer time does not grow with the store. */
static double avg_lookup_us(mr_bus *b, int64_t first, int n, int rounds)
{
    mr_bytes m = {NULL, 0};
    double t0 = now_ms();
    int i, bad = 0;
    for (i = 0; i < rounds; i++) {
        if (mr_bus_peer(b, first + (i * 7919) % n, &m) != MR_OK) {
            bad++;
        }
        mr_bytes_free(&m);
    }
    CHECK(bad == 0, "%d of %d lookups failed", bad, rounds);
    return (now_ms() - t0) * 1000.0 / rounds;
}

static void lookup_is_constant_time(void)
{
    const int big = 20000, small = 100, rounds = g_slow ? 2000 : 20000;
    mr_bus *b_small, *b_big;
    char *j;
    double us_small, us_big;
    printf("-- mr_bus_peer cost does not grow with the peer count\n");
    b_small = new_bus(NULL);
    b_big = new_bus(NULL);
    if (b_small == NULL || b_big == NULL) {
        mr_bus_free(b_small);
        mr_bus_free(b_big);
        return;
    }
    j = peers_json("{\"Peers\":[", 1000, small, "]}");
    CHECK_ST(apply_str(b_small, j), MR_OK);
    free(j);
    j = peers_json("{\"Peers\":[", 1000, big, "]}");
    CHECK_ST(apply_str(b_big, j), MR_OK);
    free(j);
    CHECK(peer_count(b_big) == big, "big store has %ld peers", peer_count(b_big));
    avg_lookup_us(b_small, 1000, small, rounds / 10); /* warm up */
    us_small = avg_lookup_us(b_small, 1000, small, rounds);
    us_big = avg_lookup_us(b_big, 1000, big, rounds);
    printf("     %.3f us/lookup with %d peers, %.3f us with %d peers\n", us_small, small, us_big,
           big);
    /* A scan would be ~200x slower; allow cache effects and noise. */
    CHECK(us_big <= us_small * 8.0 + 2.0, "lookup %.3f us at %d peers vs %.3f us at %d", us_big,
          big, us_small, small);
    mr_bus_free(b_small);
    mr_bus_free(b_big);
}

static void watcher_classes(void)
{
    mr_bus *b;
    mr_watcher *full = NULL, *patches = NULL, *none = NULL;
    mr_bytes m = {NULL, 0};
    printf("-- PeerChanges vs PeerPatches watchers\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_ST(apply_str(b, "{\"Peers\":[{\"ID\":2,\"Name\":\"peer-2\",\"User\":100,"
                          "\"Endpoints\":[\"1.2.3.4:41641\"]}],"
                          "\"UserProfiles\":[{\"ID\":100,\"LoginName\":\"alice@example.com\"}]}"),
             MR_OK);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &full), MR_OK);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_PATCHES, &patches), MR_OK);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_PREFS, &none), MR_OK);
    if (full == NULL || patches == NULL || none == NULL) {
        goto out;
    }
    /* No Initial* bits on the peer watchers: nothing until a delta. */
    CHECK_ST(mr_watcher_next(full, 0, &m), MR_WOULD_BLOCK);
    CHECK_ST(mr_watcher_next(patches, 0, &m), MR_WOULD_BLOCK);
    CHECK_ST(mr_watcher_next(none, 0, &m), MR_OK); /* its (empty) initial message */
    CHECK(json_object_ok(&m) && has(&m, "\"Version\""), "initial message of a Prefs watcher");
    mr_bytes_free(&m);

    /* A new peer: PeersChanged for both classes, with its profile. */
    {
        int early = 0;
        CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":500,\"Name\":\"peer-500\",\"User\":101}],"
                              "\"UserProfiles\":[{\"ID\":101,\"LoginName\":\"bob@example.com\"}]}"),
                 MR_OK);
        CHECK_ST(next_with(full, "\"ID\":500", &m, "bob@example.com", &early), MR_OK);
        CHECK(json_object_ok(&m), "delta message is a JSON object");
        CHECK(has(&m, "\"PeersChanged\":[{") && has(&m, "\"ID\":500,"), "PeersChanged with node 500: %.*s",
              (int)m.len, (const char *)m.ptr);
        CHECK(early, "profile 101 delivered no later than its node");
        mr_bytes_free(&m);
        CHECK_ST(next_with(patches, "peer-500", &m, "bob@example.com", &early), MR_OK);
        CHECK(has(&m, "\"PeersChanged\""), "patch watcher gets new nodes whole");
        CHECK(early, "profile 101 delivered to the patch watcher no later than its node");
        mr_bytes_free(&m);
    }

    /* A removal. */
    CHECK_ST(apply_str(b, "{\"PeersRemoved\":[500]}"), MR_OK);
    CHECK_ST(mr_watcher_next(full, 1000, &m), MR_OK);
    CHECK(has(&m, "\"PeersRemoved\":[500]"), "PeersRemoved [500]: %.*s", (int)m.len,
          (const char *)m.ptr);
    CHECK(!has(&m, "PeersChanged"), "no PeersChanged in a pure removal");
    mr_bytes_free(&m);
    CHECK_ST(mr_watcher_next(patches, 1000, &m), MR_OK);
    CHECK(has(&m, "\"PeersRemoved\":[500]"), "patch watcher PeersRemoved");
    mr_bytes_free(&m);

    /* A patch: narrow for PeerPatches, promoted to the full node otherwise. */
    CHECK_ST(apply_str(b, "{\"PeersChangedPatch\":[{\"NodeID\":2,\"Online\":true,"
                          "\"Endpoints\":[\"5.6.7.8:41641\"]}]}"),
             MR_OK);
    /* (profile 100 may come first: this session has not seen it) */
    CHECK_ST(next_with(patches, "\"PeerChangedPatch\"", &m, NULL, NULL), MR_OK);
    CHECK(has(&m, "\"PeerChangedPatch\":[{\"NodeID\":2") && has(&m, "\"Online\":true") &&
              has(&m, "5.6.7.8:41641"),
          "narrow PeerChangedPatch: %.*s", (int)m.len, (const char *)m.ptr);
    CHECK(!has(&m, "PeersChanged") && !has(&m, "peer-2"), "patch not promoted for PeerPatches");
    mr_bytes_free(&m);
    {
        int early = 0;
        /* Node 2 (User 100) reaches this session for the first time: profile 100 first. */
        CHECK_ST(next_with(full, "\"PeersChanged\"", &m, "alice@example.com", &early), MR_OK);
        CHECK(has(&m, "\"PeersChanged\":[{") && has(&m, "\"Name\":\"peer-2\"") &&
                  has(&m, "\"Online\":true") && has(&m, "5.6.7.8:41641"),
              "patch promoted to the full node: %.*s", (int)m.len, (const char *)m.ptr);
        CHECK(!has(&m, "PeerChangedPatch"), "no PeerChangedPatch for a PeerChanges watcher");
        CHECK(early, "profile 100 delivered no later than the promoted node");
        mr_bytes_free(&m);
    }

    /* OnlineChange travels as a patch too. */
    CHECK_ST(apply_str(b, "{\"OnlineChange\":{\"2\":false}}"), MR_OK);
    CHECK_ST(mr_watcher_next(patches, 1000, &m), MR_OK);
    CHECK(has(&m, "\"PeerChangedPatch\":[{\"NodeID\":2,\"Online\":false}]"), "OnlineChange patch: %.*s",
          (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    CHECK_ST(mr_watcher_next(full, 1000, &m), MR_OK);
    CHECK(has(&m, "\"PeersChanged\"") && has(&m, "\"Online\":false") && !has(&m, "UserProfiles"),
          "OnlineChange promoted, profile not resent: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);

    /* A no-op patch (same value) produces nothing. */
    CHECK_ST(apply_str(b, "{\"OnlineChange\":{\"2\":false}}"), MR_OK);
    CHECK_ST(mr_watcher_next(full, 0, &m), MR_WOULD_BLOCK);
    CHECK_ST(mr_watcher_next(patches, 0, &m), MR_WOULD_BLOCK);

    /* The watcher without peer bits saw no peer traffic. */
    CHECK_ST(mr_watcher_next(none, 0, &m), MR_WOULD_BLOCK);
    CHECK(m.ptr == NULL && m.len == 0, "out {NULL,0} on MR_WOULD_BLOCK");

    CHECK_ST(mr_bus_stats(b, &m), MR_OK);
    CHECK(has(&m, "\"Watchers\":3"), "status counts 3 watchers");
    mr_bytes_free(&m);
out:
    mr_watcher_free(full);
    mr_watcher_free(patches);
    mr_watcher_free(none);
    mr_bus_free(b);
}

/* Reconstructs a watcher's peer set by "Name":"peer-<id>" markers. */
struct peer_set {
    unsigned char *seen; /* ids [0, cap) */
    long cap;
    long count;
};

static void set_add_names(struct peer_set *s, const mr_bytes *m)
{
    const uint8_t *p = m->ptr, *end = m->ptr + m->len;
    while (p < end) {
        const uint8_t *q = memmem(p, (size_t)(end - p), "\"Name\":\"peer-", 13);
        long id;
        if (q == NULL) {
            break;
        }
        id = strtol((const char *)q + 13, NULL, 10);
        if (id >= 0 && id < s->cap && !s->seen[id]) {
            s->seen[id] = 1;
            s->count++;
        }
        p = q + 13;
    }
}

static void chunked_initial_views(void)
{
    const int n = 25;
    mr_bus *b;
    mr_watcher *st = NULL, *nm = NULL;
    mr_bytes m = {NULL, 0};
    struct peer_set s1, s2;
    int msgs, complete_at, i;
    char *j;
    printf("-- initial views in chunks until \"InitialComplete\": true (MR_NOTIFY_CHUNKED_INITIAL)\n");
    if ((b = new_bus("{\"initial_chunk\":10}")) == NULL) {
        return;
    }
    j = peers_json("{\"Node\":{\"ID\":1,\"Name\":\"self\",\"User\":100},"
                   "\"UserProfiles\":[{\"ID\":100,\"LoginName\":\"a@x\"},{\"ID\":101,\"LoginName\":\"b@x\"}],"
                   "\"Peers\":[",
                   0, n, "]}");
    CHECK_ST(apply_str(b, j), MR_OK);
    free(j);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_STATE | MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_CHANGES | MR_NOTIFY_CHUNKED_INITIAL, &st), MR_OK);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_NO_NET_MAP | MR_NOTIFY_CHUNKED_INITIAL, &nm), MR_OK);
    if (st == NULL || nm == NULL) {
        goto out;
    }
    for (i = 0; i < 2; i++) {
        mr_watcher *w = i == 0 ? st : nm;
        struct peer_set *s = i == 0 ? &s1 : &s2;
        s->cap = n;
        s->count = 0;
        s->seen = calloc((size_t)n, 1);
        complete_at = -1;
        for (msgs = 0; msgs < 10; msgs++) {
            if (mr_watcher_next(w, 1000, &m) != MR_OK) {
                break;
            }
            CHECK(json_object_ok(&m), "initial chunk is a JSON object");
            if (msgs == 0) {
                if (i == 0) {
                    CHECK(has(&m, "\"SessionID\"") && has(&m, "\"InitialStatus\""),
                          "first message: SessionID and InitialStatus");
                    CHECK(has(&m, "\"PeersChanged\""), "first chunk as PeersChanged");
                } else {
                    CHECK(has(&m, "\"NetMap\"") && has(&m, "\"SelfNode\""), "first message: NetMap");
                }
                CHECK(bytes_count(&m, "\"Name\":\"peer-") == 10, "first chunk holds 10 peers, has %zu",
                      bytes_count(&m, "\"Name\":\"peer-"));
            }
            set_add_names(s, &m);
            if (has(&m, "\"InitialComplete\":true")) {
                complete_at = msgs;
                mr_bytes_free(&m);
                break;
            }
            mr_bytes_free(&m);
        }
        CHECK(complete_at == 2, "InitialComplete on message %d, want 2 (25 peers / 10)", complete_at);
        CHECK(s->count == n, "reconstructed %ld peers, want %d", s->count, n);
        CHECK_ST(mr_watcher_next(w, 0, &m), MR_WOULD_BLOCK);
        free(s->seen);
    }
    /* InitialStatus watcher then follows deltas. */
    CHECK_ST(apply_str(b, "{\"PeersRemoved\":[3]}"), MR_OK);
    CHECK_ST(mr_watcher_next(st, 1000, &m), MR_OK);
    CHECK(has(&m, "\"PeersRemoved\":[3]"), "delta after the initial view");
    mr_bytes_free(&m);
    /* The InitialNetMap watcher gets no runtime NetMap. */
    CHECK_ST(mr_watcher_next(nm, 0, &m), MR_WOULD_BLOCK);
    /* Without the extension bit: one message with every peer. */
    {
        mr_watcher *one = NULL;
        CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_PEER_CHANGES, &one), MR_OK);
        if (one != NULL && CHECK_ST(mr_watcher_next(one, 0, &m), MR_OK)) {
            CHECK(bytes_count(&m, "\"Name\":\"peer-") == (size_t)n - 1, "one message with all %d peers, has %zu", n - 1,
                  bytes_count(&m, "\"Name\":\"peer-"));
            CHECK(has(&m, "\"SelfChange\"") && !has(&m, "InitialComplete"), "SelfChange, no marker");
            mr_bytes_free(&m);
            CHECK_ST(mr_watcher_next(one, 0, &m), MR_WOULD_BLOCK);
        }
        mr_watcher_free(one);
    }
out:
    mr_watcher_free(st);
    mr_watcher_free(nm);
    mr_bus_free(b);
}

static void invalid_masks(void)
{
    mr_bus *b;
    mr_watcher *w = (mr_watcher *)(uintptr_t)1;
    printf("-- watch masks: refused only where tailscaled refuses them\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_FAIL(mr_bus_watch(b, MR_NOTIFY_RATE_LIMIT | MR_NOTIFY_PEER_CHANGES, &w), MR_INVALID_ARGUMENT);
    CHECK(w == NULL, "*out NULL after a refused watch");
    {
        char err[256];
        CHECK(strstr(last_err(err, sizeof err), "NotifyRateLimit is incompatible with new-style IPN bus subscription bits ipn.NotifyPeerChanges") != NULL,
              "tailscaled's message: %s", err);
    }
    CHECK_FAIL(mr_bus_watch(b, MR_NOTIFY_RATE_LIMIT | MR_NOTIFY_INITIAL_STATUS, &w), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_watch(b, UINT64_MAX, &w), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, NULL), MR_INVALID_ARGUMENT);
    CHECK(w == NULL, "no watcher handed out");
    /* Everything else, unknown bits included; 0 too. */
    {
        const uint64_t ok[] = {0, MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_PEER_CHANGES, MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_PEER_PATCHES,
                               (uint64_t)1 << 16, (uint64_t)1 << 40, UINT64_MAX & ~(uint64_t)MR_NOTIFY_RATE_LIMIT,
                               MR_NOTIFY_RATE_LIMIT | MR_NOTIFY_INITIAL_NET_MAP};
        size_t k;
        for (k = 0; k < sizeof ok / sizeof ok[0]; k++) {
            CHECK_ST(mr_bus_watch(b, ok[k], &w), MR_OK);
            mr_watcher_free(w);
            w = NULL;
        }
    }
    mr_bus_free(b);
}

static void timeouts_and_fd(void)
{
    mr_bus *b;
    mr_watcher *w = NULL;
    mr_bytes m = {NULL, 0};
    struct pollfd pfd;
    double t0, el;
    int fd, drained;
    printf("-- timeouts and the readiness fd\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    if (!CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w), MR_OK)) {
        mr_bus_free(b);
        return;
    }
    t0 = now_ms();
    CHECK_FAIL(mr_watcher_next(w, 0, &m), MR_WOULD_BLOCK);
    el = now_ms() - t0;
    CHECK(el < within_ms(20), "timeout 0 took %.1f ms", el);
    t0 = now_ms();
    CHECK_FAIL(mr_watcher_next(w, 50, &m), MR_TIMEOUT);
    el = now_ms() - t0;
    CHECK(el >= 49.0 && el < within_ms(500), "timeout 50 took %.1f ms", el);
    CHECK(m.ptr == NULL && m.len == 0, "out {NULL,0} on MR_TIMEOUT");

    fd = mr_watcher_fd(w);
    CHECK(fd >= 0, "mr_watcher_fd %d", fd);
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 0) == 0, "fd not readable before any delta");
    CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":7,\"Name\":\"peer-7\"}]}"), MR_OK);
    CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":8,\"Name\":\"peer-8\"}]}"), MR_OK);
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, (int)within_ms(1000)) == 1 && (pfd.revents & POLLIN), "fd readable after a delta");
    for (drained = 0; drained < 10; drained++) {
        mr_status s = mr_watcher_next(w, 0, &m);
        if (s != MR_OK) {
            CHECK_ST(s, MR_WOULD_BLOCK);
            break;
        }
        CHECK(has(&m, "peer-7") || has(&m, "peer-8"), "drained message holds a delta");
        mr_bytes_free(&m);
    }
    CHECK(drained >= 1 && drained <= 2, "drained %d messages", drained);
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 0) == 0, "fd quiet again after MR_WOULD_BLOCK");
    CHECK_ST(apply_str(b, "{\"PeersRemoved\":[7]}"), MR_OK);
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, (int)within_ms(1000)) == 1, "fd readable after the next delta");
    CHECK_ST(mr_watcher_next(w, 0, &m), MR_OK);
    mr_bytes_free(&m);

    /* Closed: fd stays readable, next says MR_CLOSED. */
    CHECK_ST(mr_watcher_close(w), MR_OK);
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 0) == 1, "fd readable after close");
    CHECK(mr_watcher_fd(w) == fd, "fd valid after close");
    mr_watcher_free(w);
    mr_bus_free(b);
}

struct blocked_next {
    mr_watcher *w;
    volatile int started;
    mr_status st;
    mr_bytes m;
    double returned_at;
};

static void *blocked_reader(void *p)
{
    struct blocked_next *bn = p;
    bn->started = 1;
    bn->st = mr_watcher_next(bn->w, -1, &bn->m);
    bn->returned_at = now_ms();
    return NULL;
}

/* Blocks a thread in mr_watcher_next(-1), then closes via `close_bus` or the watcher. */
static void close_while_blocked(int close_bus)
{
    mr_bus *b;
    mr_watcher *w = NULL;
    pthread_t th;
    struct blocked_next bn;
    mr_bytes m = {NULL, 0};
    double t_close, lag;
    printf("-- %s while a thread blocks in mr_watcher_next(-1)\n",
           close_bus ? "mr_bus_close" : "mr_watcher_close");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    if (!CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w), MR_OK)) {
        mr_bus_free(b);
        return;
    }
    memset(&bn, 0, sizeof bn);
    bn.w = w;
    bn.st = MR_PANIC;
    if (!CHECK(pthread_create(&th, NULL, blocked_reader, &bn) == 0, "pthread_create")) {
        mr_watcher_free(w);
        mr_bus_free(b);
        return;
    }
    sleep_ms(g_slow ? 300 : 50);
    CHECK(bn.started && bn.returned_at == 0.0, "reader not blocked (status %s)", st_name(bn.st));
    t_close = now_ms();
    CHECK_ST(close_bus ? mr_bus_close(b) : mr_watcher_close(w), MR_OK);
    if (!CHECK(join_within(th, (int)within_ms(5000)) == 0, "blocked next did not return after close")) {
        return; /* the thread is still inside the library: leak rather than free */
    }
    lag = bn.returned_at - t_close;
    CHECK_ST(bn.st, MR_CLOSED);
    CHECK(bn.m.ptr == NULL && bn.m.len == 0, "out {NULL,0} on MR_CLOSED");
    CHECK(lag <= within_ms(100), "next returned %.1f ms after close", lag);
    printf("     blocked next returned %.2f ms after close\n", lag);

    /* Later calls on the closed watcher. */
    CHECK_FAIL(mr_watcher_next(w, 0, &m), MR_CLOSED);
    CHECK_FAIL(mr_watcher_next(w, -1, &m), MR_CLOSED);
    CHECK_FAIL(mr_watcher_next(w, 50, &m), MR_CLOSED);
    CHECK_ST(mr_watcher_close(w), MR_OK); /* idempotent */
    CHECK(mr_watcher_fd(w) >= 0, "fd still valid");

    if (close_bus) {
        mr_watcher *w2 = (mr_watcher *)(uintptr_t)1;
        CHECK_FAIL(apply_str(b, "{\"PeersChanged\":[{\"ID\":1}]}"), MR_CLOSED);
        CHECK_FAIL(publish_str(b, "{\"State\":6}"), MR_CLOSED);
        CHECK_FAIL(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w2), MR_CLOSED);
        CHECK(w2 == NULL, "*out NULL after watch on a closed bus");
        CHECK_FAIL(mr_bus_peer(b, 1, &m), MR_CLOSED);
        CHECK_FAIL(mr_bus_netmap(b, &m), MR_CLOSED);
        CHECK_FAIL(mr_bus_stats(b, &m), MR_CLOSED);
        CHECK(m.ptr == NULL && m.len == 0, "out {NULL,0} on a closed bus");
        /* Bad input still reports bad input first or closed: never OK. */
        CHECK(apply_str(b, "{") != MR_OK, "malformed apply on a closed bus fails");
        CHECK_ST(mr_bus_close(b), MR_OK); /* idempotent */
        /* The watcher outlives the bus. */
        mr_bus_free(b);
        CHECK_FAIL(mr_watcher_next(w, 0, &m), MR_CLOSED);
        CHECK_ST(mr_watcher_close(w), MR_OK);
        mr_watcher_free(w);
    } else {
        /* The bus is unaffected and can make new watchers. */
        CHECK_ST(mr_bus_stats(b, &m), MR_OK);
        CHECK(has(&m, "\"Watchers\":0"), "a closed watcher is not counted");
        mr_bytes_free(&m);
        mr_watcher_free(w);
        CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w), MR_OK);
        CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":4}]}"), MR_OK);
        CHECK_ST(mr_watcher_next(w, 1000, &m), MR_OK);
        mr_bytes_free(&m);
        mr_watcher_free(w);
        mr_bus_free(b);
    }
}

static void bus_free_with_open_watchers(void)
{
    mr_bus *b;
    mr_watcher *w[3] = {NULL, NULL, NULL};
    mr_bytes m = {NULL, 0};
    int i;
    printf("-- mr_bus_free with open watchers; watchers freed later\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_ST(apply_str(b, "{\"Peers\":[{\"ID\":2},{\"ID\":3}]}"), MR_OK);
    for (i = 0; i < 3; i++) {
        CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_PEER_PATCHES, &w[i]), MR_OK);
    }
    CHECK_ST(apply_str(b, "{\"PeersRemoved\":[2]}"), MR_OK); /* pending messages */
    mr_bus_free(b);
    for (i = 0; i < 3; i++) {
        if (w[i] == NULL) {
            continue;
        }
        CHECK_FAIL(mr_watcher_next(w[i], 0, &m), MR_CLOSED);
        if (i == 1) {
            CHECK_ST(mr_watcher_close(w[i]), MR_OK);
        }
        mr_watcher_free(w[i]); /* i == 0, 2: free without close */
    }
    mr_watcher_free(NULL);
}

static void null_handles_and_outs(void)
{
    mr_bus *b;
    mr_bytes m = {NULL, 0};
    const uint8_t js[] = "{}";
    printf("-- NULL handles and out parameters\n");
    CHECK_FAIL(mr_bus_apply(NULL, js, 2), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_publish(NULL, js, 2), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_watch(NULL, 0, NULL), MR_INVALID_ARGUMENT);
    {
        mr_watcher *w = (mr_watcher *)(uintptr_t)1;
        CHECK_FAIL(mr_bus_watch(NULL, 0, &w), MR_INVALID_ARGUMENT);
        CHECK(w == NULL, "*out NULL when the bus is NULL");
    }
    CHECK_FAIL(mr_bus_peer(NULL, 1, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_netmap(NULL, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_stats(NULL, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_close(NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_watcher_next(NULL, 0, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_watcher_next(NULL, -1, &m), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_watcher_close(NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_watcher_fd(NULL) == -1, "mr_watcher_fd(NULL) == -1");
    CHECK(m.ptr == NULL && m.len == 0, "no bytes handed out");
    mr_watcher_free(NULL);
    mr_bus_free(NULL);
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_FAIL(mr_bus_peer(b, 1, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_netmap(b, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_stats(b, NULL), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_apply(b, NULL, 5), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_bus_publish(b, NULL, 5), MR_INVALID_ARGUMENT);
    {
        mr_watcher *w = NULL;
        if (CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w), MR_OK)) {
            CHECK_FAIL(mr_watcher_next(w, 0, NULL), MR_INVALID_ARGUMENT);
            CHECK_FAIL(mr_watcher_next(w, -1, NULL), MR_INVALID_ARGUMENT);
            mr_watcher_free(w);
        }
    }
    mr_bus_free(b);
}

static void malformed_input(void)
{
    static const char *const parse_errors[] = {
        "{",
        "}",
        "[1]",
        "null",
        "\"str\"",
        "42",
        "{} x",
        "{\"Peers\":5}",
        "{\"Peers\":\"x\"}",
        "{\"Peers\":{}}",
        "{\"Peers\":[5]}",
        "{\"Peers\":[{\"Name\":\"no id\"}]}",
        "{\"Peers\":[{\"ID\":\"7\"}]}",
        "{\"Peers\":[{\"ID\":1.5}]}",
        "{\"Peers\":[{\"ID\":9223372036854775808}]}",
        "{\"Peers\":[{\"ID\":-9223372036854775809}]}",
        "{\"Peers\":[{\"ID\":1e400}]}",
        "{\"PeersChanged\":[{\"ID\":2,\"User\":\"u\"}]}",
        "{\"PeersChanged\":true}",
        "{\"PeersRemoved\":[\"a\"]}",
        "{\"PeersRemoved\":[1.5]}",
        "{\"PeersRemoved\":[18446744073709551615]}",
        "{\"PeersRemoved\":5}",
        "{\"PeersChangedPatch\":[{\"Online\":true}]}",
        "{\"PeersChangedPatch\":[{\"NodeID\":2,\"Online\":3}]}",
        "{\"PeersChangedPatch\":[{\"NodeID\":2,\"Endpoints\":[1]}]}",
        "{\"PeersChangedPatch\":[{\"NodeID\":2,\"DERPRegion\":\"x\"}]}",
        "{\"OnlineChange\":{\"abc\":true}}",
        "{\"OnlineChange\":{\"99999999999999999999\":true}}",
        "{\"OnlineChange\":[1]}",
        "{\"PeerSeenChange\":{\"2\":1}}",
        "{\"UserProfiles\":[{\"LoginName\":\"x\"}]}",
        "{\"UserProfiles\":{}}",
        "{\"Node\":5}",
        "{\"Node\":{\"ID\":\"self\"}}",
        "{\"Domain\":5}",
        "{\"Peers\":[{\"ID\":2,\"Name\":\"unterminated}]}",
        "{\"Peers\":[{\"ID\":2},]}",
        "{'Peers':[]}",
    };
    /* Bad UTF-8 in a string, in a key, an overlong encoding, a lone surrogate escape. */
    static const char bad_utf8_1[] = "{\"Domain\":\"a\xff" "b\"}";
    static const char bad_utf8_2[] = "{\"Peers\":[{\"ID\":2,\"N\xc3\":1}]}";
    static const char bad_utf8_3[] = "{\"Domain\":\"\xc0\xaf\"}";
    static const char bad_utf8_4[] = "{\"Domain\":\"\\ud800\"}";
    static const char *const bad_utf8[] = {bad_utf8_1, bad_utf8_2, bad_utf8_3, bad_utf8_4};
    static const char with_nul[] = "{\"Domain\":\"a\0b\"}";
    mr_bus *b;
    mr_bytes m = {NULL, 0}, before = {NULL, 0};
    size_t i;
    char *deep;
    const size_t depth = 100000;
    printf("-- malformed JSON, wrong types, bad UTF-8: MR_PARSE, store unchanged\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_ST(apply_str(b, "{\"Node\":{\"ID\":1},\"Peers\":[{\"ID\":2,\"Name\":\"peer-2\"}],\"Domain\":\"d\"}"), MR_OK);
    CHECK_ST(mr_bus_netmap(b, &before), MR_OK);

    for (i = 0; i < sizeof parse_errors / sizeof parse_errors[0]; i++) {
        mr_status st = apply_str(b, parse_errors[i]);
        if (!CHECK_FAIL(st, MR_PARSE)) {
            printf("     input: %s\n", parse_errors[i]);
        }
    }
    for (i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        if (!CHECK_FAIL(apply_str(b, bad_utf8[i]), MR_PARSE)) {
            printf("     bad UTF-8 input #%zu\n", i);
        }
    }
    CHECK_FAIL(mr_bus_apply(b, (const uint8_t *)with_nul, sizeof with_nul - 1), MR_PARSE);
    CHECK_FAIL(mr_bus_apply(b, (const uint8_t *)"{}", 0), MR_PARSE);   /* len 0 */
    CHECK_FAIL(mr_bus_apply(b, NULL, 0), MR_PARSE);                   /* empty, pointer unused */
    CHECK_FAIL(mr_bus_apply(b, (const uint8_t *)"{\"Peers\":[]}", 5), MR_PARSE); /* truncated */
    CHECK_FAIL(mr_bus_apply(b, (const uint8_t *)"   ", 3), MR_PARSE);

    /* A valid part next to an invalid one: nothing of it lands. */
    CHECK_FAIL(apply_str(b, "{\"PeersChanged\":[{\"ID\":3,\"Name\":\"peer-3\"}],\"PeersRemoved\":[\"x\"]}"), MR_PARSE);
    CHECK_FAIL(mr_bus_peer(b, 3, &m), MR_NOT_FOUND);
    CHECK_FAIL(apply_str(b, "{\"Peers\":[],\"Domain\":7}"), MR_PARSE);
    CHECK_ST(mr_bus_netmap(b, &m), MR_OK);
    CHECK(m.len == before.len && memcmp(m.ptr, before.ptr, m.len) == 0,
          "netmap unchanged by failed applies");
    mr_bytes_free(&m);
    mr_bytes_free(&before);

    /*
     * Deep nesting: never a stack overflow, and MR_PARSE beyond
     * MR_JSON_MAX_DEPTH, also in an opaque field (DERPMap, kept as raw
     * text), whose text would otherwise make the netmap unreadable to a
     * strict decoder; unbalanced input is MR_PARSE either way.
     */
    deep = malloc(depth * 2 + 64);
    if (deep != NULL) {
        size_t k = (size_t)sprintf(deep, "{\"Peers\":[{\"ID\":9,\"X\":");
        memset(deep + k, '[', depth);
        memset(deep + k + depth, ']', depth);
        memcpy(deep + k + 2 * depth, "}]}", 4);
        CHECK_FAIL(apply_str(b, deep), MR_PARSE);
        CHECK_FAIL(mr_bus_peer(b, 9, &m), MR_NOT_FOUND);
        memcpy(deep, "{\"DERPMap\":", 11);
        memset(deep + 11, '[', depth);
        memset(deep + 11 + depth, ']', depth);
        memcpy(deep + 11 + 2 * depth, "}", 2);
        CHECK_FAIL(apply_str(b, deep), MR_PARSE);
        CHECK_ST(mr_bus_netmap(b, &m), MR_OK);
        CHECK(bytes_count(&m, "[[[") == 0, "the deep DERPMap was not kept (%zu bytes)", m.len);
        mr_bytes_free(&m);
        deep[11 + 2 * depth - 1] = '}'; /* unbalanced */
        CHECK_FAIL(apply_str(b, deep), MR_PARSE);
        deep[0] = '[';
        memset(deep + 1, '[', 2 * depth + 10);
        CHECK_FAIL(mr_bus_apply(b, (const uint8_t *)deep, 2 * depth + 11), MR_PARSE);
        free(deep);
    }

    /* Publish: bus-owned fields are MR_INVALID_ARGUMENT, malformed is MR_PARSE. */
    CHECK_FAIL(publish_str(b, "{\"PeersChanged\":[]}"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(publish_str(b, "{\"NetMap\":{}}"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(publish_str(b, "{\"InitialComplete\":true}"), MR_INVALID_ARGUMENT);
    CHECK_FAIL(publish_str(b, "{"), MR_PARSE);
    CHECK_FAIL(publish_str(b, "[]"), MR_PARSE);
    CHECK_FAIL(publish_str(b, bad_utf8_1), MR_PARSE);
    CHECK_FAIL(mr_bus_publish(b, (const uint8_t *)"{}", 0), MR_PARSE);
    CHECK_ST(publish_str(b, "{\"State\":2,\"ErrMessage\":\"x\",\"X-Host-Extension\":[1]}"), MR_OK);
    CHECK_ST(publish_str(b, "{}"), MR_OK);

    /* A failure message is replaced by the next failure, kept across successes. */
    CHECK_FAIL(apply_str(b, "{\"Peers\":5}"), MR_PARSE);
    {
        char eb[512];
        last_err(eb, sizeof eb);
        CHECK(strstr(eb, "Peers") != NULL, "error names the field: \"%s\"", eb);
        CHECK_ST(apply_str(b, "{}"), MR_OK);
        CHECK(mr_last_error(NULL, 0) > 0, "a success leaves the last error");
    }
    mr_bus_free(b);
}

static void unknown_fields_survive(void)
{
    mr_bus *b;
    mr_watcher *w = NULL, *wp = NULL;
    mr_bytes m = {NULL, 0};
    printf("-- unknown node fields survive apply, patches and watchers\n");
    if ((b = new_bus(NULL)) == NULL) {
        return;
    }
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_CHANGES, &w), MR_OK);
    CHECK_ST(mr_bus_watch(b, MR_NOTIFY_PEER_PATCHES, &wp), MR_OK);
    CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":77,\"Name\":\"peer-77\",\"X-Custom\":42,"
                          "\"Nested\":{\"a\":[1,2,{\"b\":null}]},\"Big\":18446744073709551615,"
                          "\"Uni\":\"caf\\u00e9 \xe2\x9c\x93\"}]}"),
             MR_OK);
    CHECK_ST(mr_bus_peer(b, 77, &m), MR_OK);
    CHECK(json_object_ok(&m), "peer JSON object");
    CHECK(has(&m, "\"X-Custom\":42"), "X-Custom kept: %.*s", (int)m.len, (const char *)m.ptr);
    CHECK(has(&m, "\"Nested\":{\"a\":[1,2,{\"b\":null}]}"), "nested unknown kept");
    CHECK(has(&m, "\"Big\":18446744073709551615"), "u64 value kept exactly");
    CHECK(has(&m, "caf\xc3\xa9 \xe2\x9c\x93"), "unicode kept");
    mr_bytes_free(&m);
    if (w != NULL) {
        CHECK_ST(mr_watcher_next(w, 1000, &m), MR_OK);
        CHECK(has(&m, "\"X-Custom\":42"), "watcher sees X-Custom");
        mr_bytes_free(&m);
    }
    /* A patch with a known and an unknown field: a PeerChange has no
     * unknown fields (tailscaled's decoder drops them); the rest stays. */
    CHECK_ST(apply_str(b, "{\"PeersChangedPatch\":[{\"NodeID\":77,\"Online\":true,\"X-Patch\":\"p\"}]}"), MR_OK);
    CHECK_ST(mr_bus_peer(b, 77, &m), MR_OK);
    CHECK(has(&m, "\"X-Custom\":42") && has(&m, "\"Online\":true") && !has(&m, "X-Patch"),
          "after patch: %.*s", (int)m.len, (const char *)m.ptr);
    mr_bytes_free(&m);
    if (w != NULL) {
        CHECK_ST(mr_watcher_next(w, 1000, &m), MR_OK);
        CHECK(has(&m, "\"X-Custom\":42") && has(&m, "\"Online\":true"), "promoted node whole");
        mr_bytes_free(&m);
    }
    if (wp != NULL) {
        CHECK_ST(mr_watcher_next(wp, 1000, &m), MR_OK); /* the add */
        mr_bytes_free(&m);
        CHECK_ST(mr_watcher_next(wp, 1000, &m), MR_OK);
        CHECK(has(&m, "\"PeerChangedPatch\":[{\"NodeID\":77,\"Online\":true}]") && !has(&m, "X-Custom"),
              "narrow patch: %.*s", (int)m.len, (const char *)m.ptr);
        mr_bytes_free(&m);
    }
    /* A full replace of the node drops fields the new node lacks. */
    CHECK_ST(apply_str(b, "{\"PeersChanged\":[{\"ID\":77,\"Name\":\"peer-77\",\"Y\":1}]}"), MR_OK);
    CHECK_ST(mr_bus_peer(b, 77, &m), MR_OK);
    CHECK(!has(&m, "X-Custom") && has(&m, "\"Y\":1"), "replace is whole");
    mr_bytes_free(&m);
    mr_watcher_free(w);
    mr_watcher_free(wp);
    mr_bus_free(b);
}

/* Producer thread + two readers of different classes; both converge. */
struct reader {
    mr_watcher *w;
    struct peer_set set;
    long msgs;
    mr_status last;
};

static void *reader_main(void *p)
{
    struct reader *r = p;
    mr_bytes m = {NULL, 0};
    for (;;) {
        mr_status st = mr_watcher_next(r->w, -1, &m);
        if (st != MR_OK) {
            r->last = st;
            return NULL;
        }
        r->msgs++;
        set_add_names(&r->set, &m);
        {
            /* "PeersRemoved":[a,b,...] */
            const uint8_t *q = memmem(m.ptr, m.len, "\"PeersRemoved\":[", 16);
            if (q != NULL) {
                const char *s = (const char *)q + 16;
                for (;;) {
                    char *e;
                    long id = strtol(s, &e, 10);
                    if (e == s) {
                        break;
                    }
                    if (id >= 0 && id < r->set.cap && r->set.seen[id]) {
                        r->set.seen[id] = 0;
                        r->set.count--;
                    }
                    if (*e != ',') {
                        break;
                    }
                    s = e + 1;
                }
            }
        }
        mr_bytes_free(&m);
    }
}

static void concurrent_producer_and_readers(void)
{
    const int ids = 200, deltas = g_slow ? 300 : 3000;
    mr_bus *b;
    struct reader r[2];
    pthread_t th[2];
    int i, started = 0;
    char buf[256];
    unsigned seed = 12345;
    printf("-- concurrent producer and readers converge to the store\n");
    if ((b = new_bus("{\"backlog\":64,\"initial_chunk\":50}")) == NULL) {
        return;
    }
    {
        char *j = peers_json("{\"Peers\":[", 0, ids / 2, "]}");
        CHECK_ST(apply_str(b, j), MR_OK);
        free(j);
    }
    memset(r, 0, sizeof r);
    for (i = 0; i < 2; i++) {
        r[i].set.cap = ids;
        r[i].set.seen = calloc((size_t)ids, 1);
        CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_STATUS | MR_NOTIFY_CHUNKED_INITIAL |
                                     (i == 0 ? MR_NOTIFY_PEER_CHANGES : MR_NOTIFY_PEER_PATCHES),
                              &r[i].w),
                 MR_OK);
        if (r[i].w != NULL && pthread_create(&th[i], NULL, reader_main, &r[i]) == 0) {
            started |= 1 << i;
        }
    }
    for (i = 0; i < deltas; i++) {
        int id;
        seed = seed * 1103515245u + 12345u;
        id = (int)((seed >> 8) % (unsigned)ids);
        switch ((seed >> 4) % 3) {
        case 0:
            snprintf(buf, sizeof buf, "{\"PeersChanged\":[{\"ID\":%d,\"Name\":\"peer-%d\",\"V\":%d}]}", id, id, i);
            break;
        case 1:
            snprintf(buf, sizeof buf, "{\"PeersRemoved\":[%d]}", id);
            break;
        default:
            snprintf(buf, sizeof buf, "{\"PeersChangedPatch\":[{\"NodeID\":%d,\"Online\":%s}]}", id,
                     i % 2 ? "true" : "false");
            break;
        }
        if (apply_str(b, buf) != MR_OK) {
            CHECK_ST(apply_str(b, buf), MR_OK);
            break;
        }
    }
    /* Let readers drain, then close the watchers to stop them. */
    {
        long want = peer_count(b);
        double deadline = now_ms() + within_ms(5000);
        while (now_ms() < deadline && (r[0].set.count != want || r[1].set.count != want)) {
            sleep_ms(10);
        }
        for (i = 0; i < 2; i++) {
            if (started & (1 << i)) {
                mr_watcher_close(r[i].w);
                CHECK(join_within(th[i], (int)within_ms(5000)) == 0, "reader %d joined", i);
                CHECK_ST(r[i].last, MR_CLOSED);
            }
            CHECK(r[i].set.count == want, "reader %d reconstructed %ld peers, store has %ld (%ld msgs)",
                  i, r[i].set.count, want, r[i].msgs);
            mr_watcher_free(r[i].w);
            free(r[i].set.seen);
        }
        printf("     %d deltas, store %ld peers, readers got %ld / %ld messages\n", deltas, want,
               r[0].msgs, r[1].msgs);
    }
    mr_bus_free(b);
}

static void create_free_cycles(void)
{
    int i, n = g_slow ? 50 : 500;
    long rss0, rss1;
    printf("-- bus/watcher create/free cycles\n");
    rss0 = rss_kib();
    for (i = 0; i < n; i++) {
        mr_bus *b = NULL;
        mr_watcher *w = NULL;
        mr_bytes m = {NULL, 0};
        if (mr_bus_new(NULL, &b) != MR_OK) {
            CHECK(0, "mr_bus_new failed in cycle %d", i);
            break;
        }
        CHECK_ST(mr_bus_watch(b, MR_NOTIFY_INITIAL_NET_MAP | MR_NOTIFY_ENGINE_UPDATES | MR_NOTIFY_RATE_LIMIT, &w), MR_OK);
        apply_str(b, "{\"Peers\":[{\"ID\":2},{\"ID\":3}]}");
        if (mr_watcher_next(w, 0, &m) == MR_OK) {
            mr_bytes_free(&m);
        }
        if (i % 2) {
            mr_bus_close(b);
        }
        mr_bus_free(b);
        mr_watcher_free(w);
    }
    rss1 = rss_kib();
    printf("     %d cycles, RSS %ld -> %ld KiB\n", n, rss0, rss1);
    CHECK(rss1 - rss0 < 16 * 1024, "RSS grew by %ld KiB over %d cycles", rss1 - rss0, n);
}

/* The store keeps a peer in a small multiple of its JSON: 10 MB of
 * realistic nodes (about 250 bytes each) grow RSS by at most 2.5x the
 * bytes applied (a parsed JSON tree kept 5-6x). An input over the bus's
 * max_apply_bytes is refused whole. */
static void memory_per_peer(void)
{
    const size_t target = 10u << 20;
    mr_bus *bus = NULL;
    char *buf = malloc(target + 4096);
    size_t len = 0, peers = 0, json_bytes = 0;
    long before, after;
    printf("-- memory per peer\n");
    if (!CHECK(buf != NULL, "buffer") || !CHECK_ST(mr_bus_new("{\"max_apply_bytes\":16777216}", &bus), MR_OK)) {
        free(buf);
        return;
    }
    len += (size_t)sprintf(buf, "{\"PeersChanged\":[");
    while (len < target) {
        size_t start = len;
        unsigned id = (unsigned)peers + 1;
        len += (size_t)sprintf(buf + len,
                               "%s{\"ID\":%u,\"StableID\":\"n%u\",\"Name\":\"host-%u.example.ts.net.\",\"User\":%u,"
                               "\"Key\":\"nodekey:%016x%016x\",\"Addresses\":[\"100.64.%u.%u/32\"],"
                               "\"Endpoints\":[\"198.18.%u.%u:41641\"],\"HomeDERP\":%u,\"Online\":true}",
                               peers ? "," : "", id, id, id, id % 16, id * 2654435761u, id, (id >> 8) & 255, id & 255,
                               (id >> 8) & 255, id & 255, id % 20 + 1);
        json_bytes += len - start - (peers ? 1 : 0);
        peers++;
    }
    len += (size_t)sprintf(buf + len, "]}");
    before = rss_kib();
    CHECK_ST(mr_bus_apply(bus, (const uint8_t *)buf, len), MR_OK);
    after = rss_kib();
    printf("     %zu peers, %zu bytes of node JSON: RSS +%ld KiB (%.0f bytes per peer for %.0f of JSON)\n", peers, json_bytes,
           after - before, (after - before) * 1024.0 / (double)peers, (double)json_bytes / (double)peers);
#if !defined(__SANITIZE_ADDRESS__)
    if (!g_slow) {
        CHECK((after - before) * 1024.0 <= 2.5 * (double)json_bytes, "RSS grew %ld KiB for %zu KiB of nodes", after - before,
              json_bytes / 1024);
    }
#endif
    /* Twice the limit: refused whole, nothing added. */
    {
        char *big = malloc(2 * len + 64);
        char err[256];
        mr_bytes st;
        if (CHECK(big != NULL, "buffer")) {
            size_t n = (size_t)sprintf(big, "{\"PeersChanged\":[");
            memcpy(big + n, buf + 17, len - 19);
            n += len - 19;
            big[n++] = ',';
            memcpy(big + n, buf + 17, len - 19);
            n += len - 19;
            n += (size_t)sprintf(big + n, "]}");
            CHECK_FAIL(mr_bus_apply(bus, (const uint8_t *)big, n), MR_INVALID_ARGUMENT);
            CHECK(strstr(last_err(err, sizeof err), "max_apply_bytes") != NULL, "the reason names the limit: %s", err);
            free(big);
        }
        CHECK_ST(mr_bus_stats(bus, &st), MR_OK);
        {
            char want[64];
            snprintf(want, sizeof want, "\"PeerCount\":%zu", peers);
            CHECK(bytes_count(&st, want) == 1, "still %zu peers", peers);
        }
        mr_bytes_free(&st);
    }
    free(buf);
    mr_bus_free(bus);
}

int main(int argc, char **argv)
{
    test_init(argc, argv);
    create_and_free();
    apply_and_read();
    lookup_is_constant_time();
    watcher_classes();
    chunked_initial_views();
    invalid_masks();
    timeouts_and_fd();
    close_while_blocked(0);
    close_while_blocked(1);
    bus_free_with_open_watchers();
    null_handles_and_outs();
    malformed_input();
    unknown_fields_survive();
    concurrent_producer_and_readers();
    create_free_cycles();
    memory_per_peer();
    return test_finish("test_bus");
}
