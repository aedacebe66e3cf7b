/*
 * peer_model: the peer list as a GListModel that a notify-bus watcher keeps
 * current in place.
 *
 * MrPeerRow is one peer, the fields the window shows, taken from its
 * tailcfg.Node JSON:
 *   name       ComputedName, else Name without the trailing dot, else
 *              Hostinfo.Hostname, else "node <ID>"
 *   addresses  Addresses (prefixes as sent, "100.64.0.7/32")
 *   online     Online: 1 / 0, or -1 when the node does not say
 *   last-seen  LastSeen (RFC 3339 text as sent) or NULL
 *   home-derp  HomeDERP (0: none)
 *   routes     AllowedIPs that are not among Addresses (subnet routes,
 *              exit-node routes), in AllowedIPs order
 * Each setter compares before it stores and emits notify only for a
 * property that changed, so a list cell bound to one property redraws
 * only when its own text changes.
 *
 * PeerTable owns a GListStore of rows sorted by node ID and a hash table
 * NodeID -> row, and applies ipn.Notify messages, changing only the peers
 * they name:
 *   NetMap (first message)  replaces every row (one items-changed)
 *   PeersChanged            upsert by ID: an existing row is updated in
 *                           place (property notifies, no items-changed);
 *                           a new row is inserted at its sorted position
 *   PeersRemoved            removes rows (items-changed at that position)
 *   PeerChangedPatch        Online / LastSeen / DERPRegion in place
 *   UserProfiles, SelfChange, State: kept for the header and status line
 * Costs: a lookup is O(1); a position is found by binary search over the
 * store, O(log^2 n) with GListStore's O(log n) get_item; inserting or
 * removing one row is O(log n) in the store. Nothing is rebuilt per
 * message.
 *
 * Two things keep the list widget's share small. Each items-changed costs
 * GTK's list view work of its own (in GTK 4.8 more than the store's), so
 * new peers whose IDs are above every listed one (the usual case: IDs
 * grow) wait in a pending run and join the store with one splice when the
 * host calls peer_table_flush(), once per batch of messages. And a message
 * is applied in steps (peer_table_step() stops at a deadline between
 * entries and resumes later), so a large message, e.g. many deltas folded
 * together for a watcher that fell behind, never holds the UI thread
 * longer than the host's budget.
 */
#ifndef MESHRING_GTK_PEER_MODEL_H
#define MESHRING_GTK_PEER_MODEL_H

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MR_TYPE_PEER_ROW (mr_peer_row_get_type())
G_DECLARE_FINAL_TYPE(MrPeerRow, mr_peer_row, MR, PEER_ROW, GObject)

gint64 mr_peer_row_get_id(MrPeerRow *row);
const char *mr_peer_row_get_name(MrPeerRow *row);
const char *const *mr_peer_row_get_addresses(MrPeerRow *row);
int mr_peer_row_get_online(MrPeerRow *row);
const char *mr_peer_row_get_last_seen(MrPeerRow *row);
gint64 mr_peer_row_get_home_derp(MrPeerRow *row);
const char *const *mr_peer_row_get_routes(MrPeerRow *row);

/* Display texts for the list cells (newly allocated). */
char *mr_peer_row_addresses_text(MrPeerRow *row);
char *mr_peer_row_routes_text(MrPeerRow *row);
char *mr_peer_row_last_seen_text(MrPeerRow *row);

/* What one message did, for counters and the status line. */
typedef struct {
    gboolean netmap;           /* carried a NetMap (the initial view) */
    gboolean initial_complete; /* carried "InitialComplete": true */
    guint added, updated, removed, patched;
    gint64 state;              /* ipn State if the message carried one, else -1 */
} PeerApplyResult;

typedef struct {
    GListStore *store;   /* MrPeerRow, ascending NodeID */
    GHashTable *by_id;   /* gint64* (the row's own id) -> MrPeerRow* (the store or `pending` holds the ref) */
    GPtrArray *pending;  /* new rows above the store's last ID, ascending, not yet in the store */
    GHashTable *users;   /* user ID (gint64*) -> display name */
    char *self_name;     /* this node, from SelfChange / NetMap.SelfNode */
    char *self_addresses;
} PeerTable;

/* One message on its way into the table. */
typedef struct {
    JsonNode *root;      /* the Notify object (owned); NULL when idle */
    int stage;           /* which part of the message comes next */
    guint index;         /* the next entry of that part */
    PeerApplyResult result;
} PeerApplyCursor;

PeerTable *peer_table_new(void);
void peer_table_free(PeerTable *t);

/* Starts applying one ipn.Notify object (`root` is taken). */
void peer_table_begin(PeerTable *t, PeerApplyCursor *c, JsonNode *root);

/* Applies entries of the cursor's message until it is done (TRUE, with
 * c->result filled in and c->root released) or the monotonic clock passes
 * `deadline_us` (FALSE: call again later). At least one entry is applied
 * per call, so every call makes progress. */
gboolean peer_table_step(PeerTable *t, PeerApplyCursor *c, gint64 deadline_us);

/* Moves the pending new rows into the store (one items-changed). */
void peer_table_flush(PeerTable *t);

/* Rows in the table, pending ones included. */
guint peer_table_count(PeerTable *t);

/* Appends every row, in ID order, to `b` (inside an open array) as
 * {"id","name","addresses","online","last_seen","home_derp","routes"}.
 * Flushes first. */
void peer_table_dump(PeerTable *t, JsonBuilder *b);

/* The name of an ipn.State value ("Running"), static. */
const char *ipn_state_name(gint64 state);

G_END_DECLS

#endif
