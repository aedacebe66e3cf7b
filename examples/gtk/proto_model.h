/*
 * proto_model: the lifecycle runtime's protocols (`show protocols`) as a
 * GListModel kept current by the runtime's state events.
 *
 * MrProtoRow holds one element of mr_runtime_show_protocols():
 * name, kind, table, state, proto_state, core_state, info, disabled,
 * preference, routes, since_ms. Any change bumps its "revision"
 * property, which the list cells watch (a handful of rows: one notify per
 * change is all the granularity they need).
 *
 * The list is small (one row per configured protocol), so rows are found
 * by a linear scan by name.
 */
#ifndef MESHRING_GTK_PROTO_MODEL_H
#define MESHRING_GTK_PROTO_MODEL_H

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MR_TYPE_PROTO_ROW (mr_proto_row_get_type())
G_DECLARE_FINAL_TYPE(MrProtoRow, mr_proto_row, MR, PROTO_ROW, GObject)

const char *mr_proto_row_get_name(MrProtoRow *row);
const char *mr_proto_row_get_kind(MrProtoRow *row);
const char *mr_proto_row_get_state(MrProtoRow *row);
const char *mr_proto_row_get_info(MrProtoRow *row);
gboolean mr_proto_row_get_disabled(MrProtoRow *row);
gint64 mr_proto_row_get_routes(MrProtoRow *row);
char *mr_proto_row_state_text(MrProtoRow *row);  /* "up (happy)" */
char *mr_proto_row_since_text(MrProtoRow *row);  /* local time of the last change */

/* Updates the row named by `proto` (a show-protocols element or the
 * "Protocol" member of a state event) or appends one; a "removed" state
 * deletes it. */
void proto_list_apply(GListStore *list, JsonObject *proto);

/* Sets only the route counts from a show-protocols array (the periodic
 * refresh: route counts change with every netmap delta and produce no
 * state event). */
void proto_list_apply_routes(GListStore *list, JsonArray *show);

MrProtoRow *proto_list_find(GListStore *list, const char *name, guint *pos);

/* Appends every row to `b` (inside an open array) with the show-protocols field names. */
void proto_list_dump(GListStore *list, JsonBuilder *b);

G_END_DECLS

#endif
