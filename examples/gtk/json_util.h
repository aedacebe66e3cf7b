/*
 * json_util: typed reads of json-glib objects that never assert.
 *
 * json-glib's own json_object_get_*_member() accessors log a critical
 * warning (and return a zero value) when a member has another type. The
 * library only emits well-formed tailcfg / ipn JSON, but a GUI reads
 * whatever arrives, so every read here checks the member's type first and
 * falls back to a default. All functions are O(1) hash lookups, except
 * ju_strv() which copies the strings of an array.
 */
#ifndef MESHRING_GTK_JSON_UTIL_H
#define MESHRING_GTK_JSON_UTIL_H

#include <json-glib/json-glib.h>

/* The integer member `key`, or `dflt` if absent or not an integer. */
gint64 ju_int(JsonObject *o, const char *key, gint64 dflt);

/* The string member `key` (borrowed from `o`), or NULL. */
const char *ju_str(JsonObject *o, const char *key);

/* The boolean member `key` as 1 / 0, or -1 if absent, null or not a boolean. */
int ju_tribool(JsonObject *o, const char *key);

/* The array / object member `key` (borrowed), or NULL. */
JsonArray *ju_array(JsonObject *o, const char *key);
JsonObject *ju_object(JsonObject *o, const char *key);

/* The string elements of the array member `key` as a new NULL-terminated
 * vector (free with g_strfreev); non-strings are skipped. Never NULL. */
char **ju_strv(JsonObject *o, const char *key);

/* Element `i` of `a` as an object, or NULL. */
JsonObject *ju_array_object(JsonArray *a, guint i);

/* Element `i` of `a` as an integer, or `dflt`. */
gint64 ju_array_int(JsonArray *a, guint i, gint64 dflt);

#endif
