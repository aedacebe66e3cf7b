// Package tailscale serves a meshring notify bus to Tailscale's own
// clients: the LocalAPI endpoints a GUI or CLI uses to follow a node
// (/localapi/v0/watch-ipn-bus, /localapi/v0/status,
// /localapi/v0/peer-by-id) with tailscaled v1.102.5's status codes,
// headers and permission rules, on a unix socket as tailscaled serves
// them. A program built on tailscale.com/client/local talks to it
// unchanged:
//
//	srv, err := tailscale.Serve(bus, "/run/mynode/tailscaled.sock")
//	...
//	lc := &local.Client{Socket: "/run/mynode/tailscaled.sock", UseSocketOnly: true}
//	watcher, err := lc.WatchIPNBus(ctx, ipn.NotifyInitialNetMap|ipn.NotifyPeerChanges)
//
// ApplyMapResponse and NextNotify move Tailscale's own types in and out of
// a bus.
//
// This package depends on tailscale.com; the core meshring package does
// not.
package tailscale
