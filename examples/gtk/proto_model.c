/* proto_model: see proto_model.h. */
#include "proto_model.h"

#include "json_util.h"

struct _MrProtoRow {
    GObject parent;
    char *name, *kind, *table, *state, *proto_state, *core_state, *info;
    gboolean disabled;
    gint64 preference, routes, since_ms;
    guint revision;
};

G_DEFINE_FINAL_TYPE(MrProtoRow, mr_proto_row, G_TYPE_OBJECT)

enum { PROP_0, PROP_REVISION, N_PROPS };
static GParamSpec *props[N_PROPS];

static void mr_proto_row_finalize(GObject *obj) {
    MrProtoRow *r = MR_PROTO_ROW(obj);
    g_free(r->name);
    g_free(r->kind);
    g_free(r->table);
    g_free(r->state);
    g_free(r->proto_state);
    g_free(r->core_state);
    g_free(r->info);
    G_OBJECT_CLASS(mr_proto_row_parent_class)->finalize(obj);
}

static void mr_proto_row_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
    if (id == PROP_REVISION) g_value_set_uint(v, MR_PROTO_ROW(obj)->revision);
    else G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
}

static void mr_proto_row_class_init(MrProtoRowClass *k) {
    GObjectClass *oc = G_OBJECT_CLASS(k);
    oc->finalize = mr_proto_row_finalize;
    oc->get_property = mr_proto_row_get_property;
    props[PROP_REVISION] = g_param_spec_uint("revision", NULL, NULL, 0, G_MAXUINT, 0,
                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);
    g_object_class_install_properties(oc, N_PROPS, props);
}

static void mr_proto_row_init(MrProtoRow *r) { (void)r; }

const char *mr_proto_row_get_name(MrProtoRow *r) { return r->name; }
const char *mr_proto_row_get_kind(MrProtoRow *r) { return r->kind; }
const char *mr_proto_row_get_state(MrProtoRow *r) { return r->state; }
const char *mr_proto_row_get_info(MrProtoRow *r) { return r->info; }
gboolean mr_proto_row_get_disabled(MrProtoRow *r) { return r->disabled; }
gint64 mr_proto_row_get_routes(MrProtoRow *r) { return r->routes; }

char *mr_proto_row_state_text(MrProtoRow *r) {
    return g_strdup_printf("%s (%s/%s)%s", r->state ? r->state : "?", r->proto_state ? r->proto_state : "?",
                           r->core_state ? r->core_state : "?", r->disabled ? ", disabled" : "");
}

char *mr_proto_row_since_text(MrProtoRow *r) {
    GDateTime *t = g_date_time_new_from_unix_local(r->since_ms / 1000);
    if (t == NULL) return g_strdup("");
    char *s = g_date_time_format(t, "%H:%M:%S");
    g_date_time_unref(t);
    return s;
}

/* Sets a string field; TRUE if it changed. */
static gboolean take(char **field, const char *v) {
    if (v == NULL || g_strcmp0(*field, v) == 0) return FALSE;
    g_free(*field);
    *field = g_strdup(v);
    return TRUE;
}

static gboolean take_int(gint64 *field, JsonObject *o, const char *key) {
    gint64 v = ju_int(o, key, *field);
    if (v == *field) return FALSE;
    *field = v;
    return TRUE;
}

static void bump(MrProtoRow *r) {
    r->revision++;
    g_object_notify_by_pspec(G_OBJECT(r), props[PROP_REVISION]);
}

MrProtoRow *proto_list_find(GListStore *list, const char *name, guint *pos) {
    GListModel *m = G_LIST_MODEL(list);
    guint n = g_list_model_get_n_items(m);
    for (guint i = 0; i < n; i++) {
        MrProtoRow *r = g_list_model_get_item(m, i);
        g_object_unref(r); /* the list keeps it alive */
        if (g_strcmp0(r->name, name) == 0) {
            if (pos) *pos = i;
            return r;
        }
    }
    return NULL;
}

void proto_list_apply(GListStore *list, JsonObject *p) {
    const char *name = ju_str(p, "name");
    if (name == NULL) return;
    guint pos;
    MrProtoRow *r = proto_list_find(list, name, &pos);
    if (g_strcmp0(ju_str(p, "state"), "removed") == 0) {
        if (r) g_list_store_remove(list, pos);
        return;
    }
    gboolean is_new = r == NULL;
    if (is_new) {
        r = g_object_new(MR_TYPE_PROTO_ROW, NULL);
        r->name = g_strdup(name);
    }
    gboolean changed = FALSE;
    changed |= take(&r->kind, ju_str(p, "kind"));
    changed |= take(&r->table, ju_str(p, "table"));
    changed |= take(&r->state, ju_str(p, "state"));
    changed |= take(&r->proto_state, ju_str(p, "proto_state"));
    changed |= take(&r->core_state, ju_str(p, "core_state"));
    changed |= take(&r->info, ju_str(p, "info"));
    int disabled = ju_tribool(p, "disabled");
    if (disabled >= 0 && disabled != r->disabled) {
        r->disabled = disabled;
        changed = TRUE;
    }
    changed |= take_int(&r->preference, p, "preference");
    changed |= take_int(&r->routes, p, "routes");
    changed |= take_int(&r->since_ms, p, "since_ms");
    if (is_new) {
        /* Keep the list in name order, as show protocols gives it. */
        GListModel *m = G_LIST_MODEL(list);
        guint n = g_list_model_get_n_items(m), at = 0;
        for (; at < n; at++) {
            MrProtoRow *o = g_list_model_get_item(m, at);
            g_object_unref(o);
            if (g_strcmp0(o->name, name) > 0) break;
        }
        g_list_store_insert(list, at, r);
        g_object_unref(r);
    } else if (changed) {
        bump(r);
    }
}

void proto_list_apply_routes(GListStore *list, JsonArray *show) {
    guint n = show ? json_array_get_length(show) : 0;
    for (guint i = 0; i < n; i++) {
        JsonObject *p = ju_array_object(show, i);
        MrProtoRow *r = proto_list_find(list, ju_str(p, "name"), NULL);
        if (r && take_int(&r->routes, p, "routes")) bump(r);
    }
}

void proto_list_dump(GListStore *list, JsonBuilder *b) {
    GListModel *m = G_LIST_MODEL(list);
    guint n = g_list_model_get_n_items(m);
    for (guint i = 0; i < n; i++) {
        MrProtoRow *r = g_list_model_get_item(m, i);
        json_builder_begin_object(b);
        const char *keys[] = {"name", "kind", "table", "state", "proto_state", "core_state", "info"};
        const char *vals[] = {r->name, r->kind, r->table, r->state, r->proto_state, r->core_state, r->info};
        for (guint k = 0; k < G_N_ELEMENTS(keys); k++) {
            json_builder_set_member_name(b, keys[k]);
            json_builder_add_string_value(b, vals[k] ? vals[k] : "");
        }
        json_builder_set_member_name(b, "disabled");
        json_builder_add_boolean_value(b, r->disabled);
        json_builder_set_member_name(b, "preference");
        json_builder_add_int_value(b, r->preference);
        json_builder_set_member_name(b, "routes");
        json_builder_add_int_value(b, r->routes);
        json_builder_set_member_name(b, "since_ms");
        json_builder_add_int_value(b, r->since_ms);
        json_builder_end_object(b);
        g_object_unref(r);
    }
}
