/* peer_model: see peer_model.h. */
#include "peer_model.h"

#include "json_util.h"

#include <string.h>

/* ------------------------------------------------------------ MrPeerRow */

struct _MrPeerRow {
    GObject parent;
    gint64 id; /* also the key of PeerTable.by_id: never changes */
    char *name;
    char **addresses;
    int online;
    char *last_seen;
    gint64 home_derp;
    char **routes;
};

G_DEFINE_FINAL_TYPE(MrPeerRow, mr_peer_row, G_TYPE_OBJECT)

enum { PROP_0, PROP_NAME, PROP_ADDRESSES, PROP_ONLINE, PROP_LAST_SEEN, PROP_HOME_DERP, PROP_ROUTES, N_PROPS };
static GParamSpec *props[N_PROPS];

static void mr_peer_row_finalize(GObject *obj) {
    MrPeerRow *r = MR_PEER_ROW(obj);
    g_free(r->name);
    g_strfreev(r->addresses);
    g_free(r->last_seen);
    g_strfreev(r->routes);
    G_OBJECT_CLASS(mr_peer_row_parent_class)->finalize(obj);
}

static void mr_peer_row_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
    MrPeerRow *r = MR_PEER_ROW(obj);
    switch (id) {
    case PROP_NAME: g_value_set_string(v, r->name); break;
    case PROP_ADDRESSES: g_value_set_boxed(v, r->addresses); break;
    case PROP_ONLINE: g_value_set_int(v, r->online); break;
    case PROP_LAST_SEEN: g_value_set_string(v, r->last_seen); break;
    case PROP_HOME_DERP: g_value_set_int64(v, r->home_derp); break;
    case PROP_ROUTES: g_value_set_boxed(v, r->routes); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    }
}

static void mr_peer_row_class_init(MrPeerRowClass *k) {
    GObjectClass *oc = G_OBJECT_CLASS(k);
    oc->finalize = mr_peer_row_finalize;
    oc->get_property = mr_peer_row_get_property;
    GParamFlags f = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;
    props[PROP_NAME] = g_param_spec_string("name", NULL, NULL, NULL, f);
    props[PROP_ADDRESSES] = g_param_spec_boxed("addresses", NULL, NULL, G_TYPE_STRV, f);
    props[PROP_ONLINE] = g_param_spec_int("online", NULL, NULL, -1, 1, -1, f);
    props[PROP_LAST_SEEN] = g_param_spec_string("last-seen", NULL, NULL, NULL, f);
    props[PROP_HOME_DERP] = g_param_spec_int64("home-derp", NULL, NULL, G_MININT64, G_MAXINT64, 0, f);
    props[PROP_ROUTES] = g_param_spec_boxed("routes", NULL, NULL, G_TYPE_STRV, f);
    g_object_class_install_properties(oc, N_PROPS, props);
}

static void mr_peer_row_init(MrPeerRow *r) {
    r->online = -1;
    r->addresses = g_new0(char *, 1);
    r->routes = g_new0(char *, 1);
}

gint64 mr_peer_row_get_id(MrPeerRow *r) { return r->id; }
const char *mr_peer_row_get_name(MrPeerRow *r) { return r->name; }
const char *const *mr_peer_row_get_addresses(MrPeerRow *r) { return (const char *const *)r->addresses; }
int mr_peer_row_get_online(MrPeerRow *r) { return r->online; }
const char *mr_peer_row_get_last_seen(MrPeerRow *r) { return r->last_seen; }
gint64 mr_peer_row_get_home_derp(MrPeerRow *r) { return r->home_derp; }
const char *const *mr_peer_row_get_routes(MrPeerRow *r) { return (const char *const *)r->routes; }

/* "100.64.0.7/32" shows as "100.64.0.7": host-length prefixes lose the length. */
static char *join_prefixes(char **v, gboolean strip_host_len) {
    GString *s = g_string_new(NULL);
    for (char **p = v; *p; p++) {
        if (s->len) g_string_append(s, ", ");
        const char *slash = strrchr(*p, '/');
        gboolean host = slash && (strcmp(slash, "/32") == 0 || strcmp(slash, "/128") == 0);
        if (strip_host_len && host) g_string_append_len(s, *p, slash - *p);
        else g_string_append(s, *p);
    }
    return g_string_free(s, FALSE);
}

char *mr_peer_row_addresses_text(MrPeerRow *r) { return join_prefixes(r->addresses, TRUE); }
char *mr_peer_row_routes_text(MrPeerRow *r) { return join_prefixes(r->routes, FALSE); }

char *mr_peer_row_last_seen_text(MrPeerRow *r) {
    if (r->last_seen == NULL) return g_strdup("");
    GDateTime *t = g_date_time_new_from_iso8601(r->last_seen, NULL);
    if (t == NULL) return g_strdup(r->last_seen);
    char *s = g_date_time_format(t, "%Y-%m-%d %H:%M:%S UTC");
    g_date_time_unref(t);
    return s;
}

/* Setters: store and notify only on change. */

static void set_str(MrPeerRow *r, char **field, const char *v, int prop) {
    if (g_strcmp0(*field, v) == 0) return;
    g_free(*field);
    *field = g_strdup(v);
    g_object_notify_by_pspec(G_OBJECT(r), props[prop]);
}

static void set_strv(MrPeerRow *r, char ***field, char **v /* taken */, int prop) {
    if (g_strv_equal((const char *const *)*field, (const char *const *)v)) {
        g_strfreev(v);
        return;
    }
    g_strfreev(*field);
    *field = v;
    g_object_notify_by_pspec(G_OBJECT(r), props[prop]);
}

static void set_online(MrPeerRow *r, int v) {
    if (r->online == v) return;
    r->online = v;
    g_object_notify_by_pspec(G_OBJECT(r), props[PROP_ONLINE]);
}

static void set_home_derp(MrPeerRow *r, gint64 v) {
    if (r->home_derp == v) return;
    r->home_derp = v;
    g_object_notify_by_pspec(G_OBJECT(r), props[PROP_HOME_DERP]);
}

/* The display name of a tailcfg.Node (see peer_model.h). */
static char *node_name(JsonObject *node, gint64 id) {
    const char *s = ju_str(node, "ComputedName");
    if (s && *s) return g_strdup(s);
    s = ju_str(node, "Name");
    if (s && *s) {
        size_t n = strlen(s);
        return g_strndup(s, s[n - 1] == '.' && n > 1 ? n - 1 : n);
    }
    s = ju_str(ju_object(node, "Hostinfo"), "Hostname");
    if (s && *s) return g_strdup(s);
    return g_strdup_printf("node %" G_GINT64_FORMAT, id);
}

/* AllowedIPs minus Addresses, in AllowedIPs order. */
static char **node_routes(JsonObject *node, char **addresses) {
    char **allowed = ju_strv(node, "AllowedIPs");
    GPtrArray *out = g_ptr_array_new();
    for (char **p = allowed; *p; p++) {
        if (!g_strv_contains((const char *const *)addresses, *p)) g_ptr_array_add(out, g_strdup(*p));
    }
    g_ptr_array_add(out, NULL);
    g_strfreev(allowed);
    return (char **)g_ptr_array_free(out, FALSE);
}

/* Replaces every field with the node's (a full node carries them all:
 * a field it leaves out is unset). */
static void row_set_node(MrPeerRow *r, JsonObject *node) {
    char *name = node_name(node, r->id);
    set_str(r, &r->name, name, PROP_NAME);
    g_free(name);
    char **addresses = ju_strv(node, "Addresses");
    set_strv(r, &r->routes, node_routes(node, addresses), PROP_ROUTES);
    set_strv(r, &r->addresses, addresses, PROP_ADDRESSES);
    set_online(r, ju_tribool(node, "Online"));
    set_str(r, &r->last_seen, ju_str(node, "LastSeen"), PROP_LAST_SEEN);
    set_home_derp(r, ju_int(node, "HomeDERP", 0));
}

static MrPeerRow *row_new(gint64 id, JsonObject *node) {
    MrPeerRow *r = g_object_new(MR_TYPE_PEER_ROW, NULL);
    r->id = id;
    /* Nobody listens yet, so the setters' notifies cost next to nothing. */
    row_set_node(r, node);
    return r;
}

/* ------------------------------------------------------------ PeerTable */

PeerTable *peer_table_new(void) {
    PeerTable *t = g_new0(PeerTable, 1);
    t->store = g_list_store_new(MR_TYPE_PEER_ROW);
    t->by_id = g_hash_table_new(g_int64_hash, g_int64_equal);
    t->pending = g_ptr_array_new_with_free_func(g_object_unref);
    t->users = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    return t;
}

void peer_table_free(PeerTable *t) {
    if (t == NULL) return;
    g_hash_table_destroy(t->by_id);
    g_hash_table_destroy(t->users);
    g_ptr_array_unref(t->pending);
    g_object_unref(t->store);
    g_free(t->self_name);
    g_free(t->self_addresses);
    g_free(t);
}

static guint store_count(PeerTable *t) { return g_list_model_get_n_items(G_LIST_MODEL(t->store)); }

guint peer_table_count(PeerTable *t) { return store_count(t) + t->pending->len; }

static gint64 id_at(GListModel *m, guint pos) {
    MrPeerRow *r = g_list_model_get_item(m, pos);
    gint64 id = r->id;
    g_object_unref(r);
    return id;
}

/* The first position in the store whose ID is >= id (binary search). */
static guint lower_bound(PeerTable *t, gint64 id) {
    GListModel *m = G_LIST_MODEL(t->store);
    guint lo = 0, hi = g_list_model_get_n_items(m);
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (id_at(m, mid) < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The same over the pending run. */
static guint pending_lower_bound(PeerTable *t, gint64 id) {
    guint lo = 0, hi = t->pending->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (((MrPeerRow *)t->pending->pdata[mid])->id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static gint64 store_last_id(PeerTable *t) {
    guint n = store_count(t);
    return n ? id_at(G_LIST_MODEL(t->store), n - 1) : G_MININT64;
}

void peer_table_flush(PeerTable *t) {
    if (t->pending->len == 0) return;
    g_list_store_splice(t->store, store_count(t), 0, t->pending->pdata, t->pending->len);
    g_ptr_array_set_size(t->pending, 0); /* drops our refs; the store has its own */
}

static int cmp_rows(gconstpointer a, gconstpointer b) {
    gint64 x = (*(MrPeerRow *const *)a)->id, y = (*(MrPeerRow *const *)b)->id;
    return x < y ? -1 : x > y;
}

static void set_self(PeerTable *t, JsonObject *node) {
    if (node == NULL) return;
    g_free(t->self_name);
    t->self_name = node_name(node, ju_int(node, "ID", 0));
    char **a = ju_strv(node, "Addresses");
    g_free(t->self_addresses);
    t->self_addresses = join_prefixes(a, TRUE);
    g_strfreev(a);
}

static void add_users(PeerTable *t, JsonObject *profiles) {
    if (profiles == NULL) return;
    GList *keys = json_object_get_members(profiles);
    for (GList *k = keys; k; k = k->next) {
        JsonObject *p = ju_object(profiles, k->data);
        if (p == NULL) continue;
        const char *name = ju_str(p, "DisplayName");
        if (name == NULL || !*name) name = ju_str(p, "LoginName");
        gint64 *id = g_new(gint64, 1);
        *id = ju_int(p, "ID", g_ascii_strtoll(k->data, NULL, 10));
        g_hash_table_replace(t->users, id, g_strdup(name ? name : ""));
    }
    g_list_free(keys);
}

/* The initial view: every row replaced by one splice (bounded by the
 * bus's initial_chunk unless the whole map comes in one message). */
static void replace_all(PeerTable *t, JsonArray *peers, PeerApplyResult *out) {
    guint n = peers ? json_array_get_length(peers) : 0;
    GPtrArray *rows = g_ptr_array_new_full(n, g_object_unref);
    g_hash_table_remove_all(t->by_id);
    g_ptr_array_set_size(t->pending, 0);
    for (guint i = 0; i < n; i++) {
        JsonObject *node = ju_array_object(peers, i);
        gint64 id = ju_int(node, "ID", 0);
        if (node == NULL || id == 0) continue;
        g_ptr_array_add(rows, row_new(id, node));
    }
    g_ptr_array_sort(rows, cmp_rows);
    /* Keep the last of duplicate IDs (bad input; the bus never sends them). */
    guint k = 0;
    for (guint i = 0; i < rows->len; i++) {
        MrPeerRow *r = rows->pdata[i];
        if (k > 0 && ((MrPeerRow *)rows->pdata[k - 1])->id == r->id) {
            g_object_unref(rows->pdata[k - 1]);
            rows->pdata[k - 1] = r;
        } else {
            rows->pdata[k++] = r;
        }
    }
    rows->len = k;
    for (guint i = 0; i < k; i++) {
        MrPeerRow *r = rows->pdata[i];
        g_hash_table_insert(t->by_id, &r->id, r);
    }
    g_list_store_splice(t->store, 0, store_count(t), rows->pdata, rows->len);
    out->added += rows->len;
    g_ptr_array_unref(rows);
}

/* One PeersChanged node: in-place update, or a new row. A new ID above
 * the store's last joins the pending run (in order); a lower one goes
 * straight to its sorted place in the store. */
static void upsert_one(PeerTable *t, JsonObject *node, PeerApplyResult *out) {
    gint64 id = ju_int(node, "ID", 0);
    if (node == NULL || id == 0) return;
    MrPeerRow *r = g_hash_table_lookup(t->by_id, &id);
    if (r) {
        row_set_node(r, node);
        out->updated++;
        return;
    }
    r = row_new(id, node);
    g_hash_table_insert(t->by_id, &r->id, r);
    out->added++;
    if (id > store_last_id(t)) {
        g_ptr_array_insert(t->pending, (gint)pending_lower_bound(t, id), r); /* takes our ref */
    } else {
        g_list_store_insert(t->store, lower_bound(t, id), r);
        g_object_unref(r);
    }
}

static void remove_one(PeerTable *t, gint64 id, PeerApplyResult *out) {
    MrPeerRow *r = g_hash_table_lookup(t->by_id, &id);
    if (r == NULL) return;
    g_hash_table_remove(t->by_id, &id); /* before the last ref goes (the key lives in the row) */
    out->removed++;
    if (id > store_last_id(t)) {
        g_ptr_array_remove_index(t->pending, pending_lower_bound(t, id));
        return;
    }
    g_list_store_remove(t->store, lower_bound(t, id));
}

/* One PeerChangedPatch entry: only the fields it names change. */
static void patch_one(PeerTable *t, JsonObject *e, PeerApplyResult *out) {
    gint64 id = ju_int(e, "NodeID", 0);
    MrPeerRow *r = e ? g_hash_table_lookup(t->by_id, &id) : NULL;
    if (r == NULL) return;
    int online = ju_tribool(e, "Online");
    if (online >= 0) set_online(r, online);
    const char *seen = ju_str(e, "LastSeen");
    if (seen) set_str(r, &r->last_seen, seen, PROP_LAST_SEEN);
    gint64 derp = ju_int(e, "DERPRegion", 0);
    if (derp) set_home_derp(r, derp);
    out->patched++;
}

/* The parts of a message, in the order they are applied. */
enum { STAGE_HEADER, STAGE_CHANGED, STAGE_PATCHED, STAGE_REMOVED, STAGE_DONE };
static const char *const stage_member[] = {NULL, "PeersChanged", "PeerChangedPatch", "PeersRemoved"};

void peer_table_begin(PeerTable *t, PeerApplyCursor *c, JsonNode *root) {
    (void)t;
    memset(c, 0, sizeof *c);
    c->root = root;
    c->result.state = -1;
}

gboolean peer_table_step(PeerTable *t, PeerApplyCursor *c, gint64 deadline_us) {
    JsonObject *msg = c->root && JSON_NODE_HOLDS_OBJECT(c->root) ? json_node_get_object(c->root) : NULL;
    PeerApplyResult *out = &c->result;
    guint done = 0;
    while (msg && c->stage != STAGE_DONE) {
        if (c->stage == STAGE_HEADER) {
            out->state = ju_int(msg, "State", -1);
            JsonObject *netmap = ju_object(msg, "NetMap");
            if (netmap) {
                out->netmap = TRUE;
                set_self(t, ju_object(netmap, "SelfNode"));
                add_users(t, ju_object(netmap, "UserProfiles"));
                replace_all(t, ju_array(netmap, "Peers"), out);
            }
            set_self(t, ju_object(msg, "SelfChange"));
            add_users(t, ju_object(msg, "UserProfiles"));
            out->initial_complete = ju_tribool(msg, "InitialComplete") == 1;
            c->stage++;
            done++;
            continue;
        }
        JsonArray *a = ju_array(msg, stage_member[c->stage]);
        guint n = a ? json_array_get_length(a) : 0;
        if (c->index >= n) {
            c->stage++;
            c->index = 0;
            continue;
        }
        /* Check the clock every 8 entries, after at least one. */
        if (done > 0 && done % 8 == 0 && g_get_monotonic_time() >= deadline_us) return FALSE;
        guint i = c->index++;
        switch (c->stage) {
        case STAGE_CHANGED: upsert_one(t, ju_array_object(a, i), out); break;
        case STAGE_PATCHED: patch_one(t, ju_array_object(a, i), out); break;
        case STAGE_REMOVED: remove_one(t, ju_array_int(a, i, 0), out); break;
        }
        done++;
    }
    if (c->root) json_node_unref(c->root);
    c->root = NULL;
    return TRUE;
}

static void add_strv(JsonBuilder *b, const char *key, char **v) {
    json_builder_set_member_name(b, key);
    json_builder_begin_array(b);
    for (char **p = v; *p; p++) json_builder_add_string_value(b, *p);
    json_builder_end_array(b);
}

void peer_table_dump(PeerTable *t, JsonBuilder *b) {
    peer_table_flush(t);
    GListModel *m = G_LIST_MODEL(t->store);
    guint n = g_list_model_get_n_items(m);
    for (guint i = 0; i < n; i++) {
        MrPeerRow *r = g_list_model_get_item(m, i);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "id");
        json_builder_add_int_value(b, r->id);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, r->name);
        add_strv(b, "addresses", r->addresses);
        json_builder_set_member_name(b, "online");
        if (r->online < 0) json_builder_add_null_value(b);
        else json_builder_add_boolean_value(b, r->online);
        json_builder_set_member_name(b, "last_seen");
        if (r->last_seen) json_builder_add_string_value(b, r->last_seen);
        else json_builder_add_null_value(b);
        json_builder_set_member_name(b, "home_derp");
        json_builder_add_int_value(b, r->home_derp);
        add_strv(b, "routes", r->routes);
        json_builder_end_object(b);
        g_object_unref(r);
    }
}

const char *ipn_state_name(gint64 state) {
    static const char *const names[] = {"NoState", "InUseOtherUser", "NeedsLogin", "NeedsMachineAuth",
                                        "Stopped", "Starting", "Running"};
    return state >= 0 && state < (gint64)G_N_ELEMENTS(names) ? names[state] : "unknown";
}
