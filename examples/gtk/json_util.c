/* json_util: see json_util.h. */
#include "json_util.h"

static JsonNode *value_of(JsonObject *o, const char *key, GType type) {
    if (o == NULL) return NULL;
    JsonNode *n = json_object_get_member(o, key);
    if (n == NULL || JSON_NODE_TYPE(n) != JSON_NODE_VALUE || json_node_get_value_type(n) != type) return NULL;
    return n;
}

gint64 ju_int(JsonObject *o, const char *key, gint64 dflt) {
    JsonNode *n = value_of(o, key, G_TYPE_INT64);
    return n ? json_node_get_int(n) : dflt;
}

const char *ju_str(JsonObject *o, const char *key) {
    JsonNode *n = value_of(o, key, G_TYPE_STRING);
    return n ? json_node_get_string(n) : NULL;
}

int ju_tribool(JsonObject *o, const char *key) {
    JsonNode *n = value_of(o, key, G_TYPE_BOOLEAN);
    return n ? (json_node_get_boolean(n) ? 1 : 0) : -1;
}

JsonArray *ju_array(JsonObject *o, const char *key) {
    if (o == NULL) return NULL;
    JsonNode *n = json_object_get_member(o, key);
    return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

JsonObject *ju_object(JsonObject *o, const char *key) {
    if (o == NULL) return NULL;
    JsonNode *n = json_object_get_member(o, key);
    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

char **ju_strv(JsonObject *o, const char *key) {
    JsonArray *a = ju_array(o, key);
    guint len = a ? json_array_get_length(a) : 0, k = 0;
    char **v = g_new(char *, len + 1);
    for (guint i = 0; i < len; i++) {
        JsonNode *n = json_array_get_element(a, i);
        if (JSON_NODE_TYPE(n) == JSON_NODE_VALUE && json_node_get_value_type(n) == G_TYPE_STRING)
            v[k++] = g_strdup(json_node_get_string(n));
    }
    v[k] = NULL;
    return v;
}

JsonObject *ju_array_object(JsonArray *a, guint i) {
    if (a == NULL || i >= json_array_get_length(a)) return NULL;
    JsonNode *n = json_array_get_element(a, i);
    return JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

gint64 ju_array_int(JsonArray *a, guint i, gint64 dflt) {
    if (a == NULL || i >= json_array_get_length(a)) return dflt;
    JsonNode *n = json_array_get_element(a, i);
    if (JSON_NODE_TYPE(n) != JSON_NODE_VALUE || json_node_get_value_type(n) != G_TYPE_INT64) return dflt;
    return json_node_get_int(n);
}
