// Command tsgui shows a node's peers the way `tailscale status` does,
// through Tailscale's own LocalAPI client, from a meshring bus served on a
// unix socket, and follows the IPN bus as peers come, go and change.
//
//	tsgui -socket /run/mynode/tailscaled.sock   # a socket some node serves
//	tsgui -demo -for 3s                          # serve a demo tailnet itself
//
// With -demo it starts a bus, serves its LocalAPI (tailscale.Serve) on a
// temporary socket, feeds it a small tailnet with churn, and reads it back
// with tailscale.com/client/local exactly as a tailscaled GUI would.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	meshring "github.com/meshring/meshring/go"
	mrts "github.com/meshring/meshring/go/tailscale"
	"tailscale.com/client/local"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

func main() {
	socket := flag.String("socket", "", "LocalAPI socket to read (default: serve a demo tailnet with -demo)")
	demo := flag.Bool("demo", false, "serve a demo tailnet on a temporary socket and read it")
	peers := flag.Int("peers", 8, "demo: number of peers")
	runFor := flag.Duration("for", 0, "stop following the bus after this long (0: until interrupted)")
	flag.Parse()

	ctx := context.Background()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	if *demo {
		dir, err := os.MkdirTemp("", "tsgui")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*socket = filepath.Join(dir, "tailscaled.sock")
		bus, err := meshring.NewBus(nil)
		if err != nil {
			log.Fatal(err)
		}
		defer bus.Close()
		srv, err := mrts.Serve(bus, *socket)
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
		if err := feedDemo(ctx, bus, *peers); err != nil {
			log.Fatal(err)
		}
	}
	if *socket == "" {
		log.Fatal("give -socket PATH or -demo")
	}
	lc := &local.Client{Socket: *socket, UseSocketOnly: true}
	st, err := lc.Status(ctx)
	if err != nil {
		log.Fatalf("status: %v", err)
	}
	printStatus(st)

	w, err := lc.WatchIPNBus(ctx, ipn.NotifyInitialNetMap|ipn.NotifyPeerPatches|ipn.NotifyInitialState)
	if err != nil {
		log.Fatalf("watch-ipn-bus: %v", err)
	}
	defer w.Close()
	names := map[tailcfg.NodeID]string{}
	for {
		n, err := w.Next()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Printf("done: following the bus for %v, %d peers known\n", *runFor, len(names))
				return
			}
			log.Fatalf("next: %v", err)
		}
		if n.State != nil {
			fmt.Printf("backend state: %v\n", *n.State)
		}
		if n.NetMap != nil {
			for _, p := range n.NetMap.Peers {
				names[p.ID()] = p.ComputedName()
			}
			fmt.Printf("netmap: %d peers\n", len(n.NetMap.Peers))
		}
		for _, p := range n.PeersChanged {
			verb := "changed"
			if _, ok := names[p.ID]; !ok {
				verb = "joined"
			}
			names[p.ID] = p.ComputedName
			fmt.Printf("%-8s %-12s %s\n", verb, p.ComputedName, online(p.Online))
		}
		for _, pc := range n.PeerChangedPatch {
			var what []string
			if pc.Online != nil {
				what = append(what, online(pc.Online))
			}
			if pc.DERPRegion != 0 {
				what = append(what, fmt.Sprintf("home DERP %d", pc.DERPRegion))
			}
			if pc.Endpoints != nil {
				what = append(what, fmt.Sprintf("%d endpoints", len(pc.Endpoints)))
			}
			fmt.Printf("%-8s %-12s %s\n", "patched", names[pc.NodeID], strings.Join(what, ", "))
		}
		for _, id := range n.PeersRemoved {
			fmt.Printf("%-8s %-12s\n", "left", names[id])
			delete(names, id)
		}
	}
}

func online(o *bool) string {
	if o != nil && *o {
		return "online"
	}
	return "offline"
}

// printStatus prints peers as `tailscale status` lays them out.
func printStatus(st *ipnstate.Status) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	row := func(ps *ipnstate.PeerStatus, active string) {
		ip := "-"
		if len(ps.TailscaleIPs) > 0 {
			ip = ps.TailscaleIPs[0].String()
		}
		name := strings.TrimSuffix(ps.DNSName, "."+st.MagicDNSSuffix+".")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ip, name, st.User[ps.UserID].LoginName, ps.OS, active)
	}
	fmt.Printf("%s, tailnet %s, %d peers\n", st.BackendState, st.MagicDNSSuffix, len(st.Peer))
	if st.Self != nil {
		row(st.Self, "-")
	}
	var keys []key.NodePublic
	for k := range st.Peer {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return st.Peer[keys[i]].DNSName < st.Peer[keys[j]].DNSName })
	for _, k := range keys {
		ps := st.Peer[k]
		active := "offline"
		if ps.Online {
			active = "online"
		}
		row(ps, active)
	}
	tw.Flush()
}

func demoNode(id int, online bool) *tailcfg.Node {
	var k key.NodePublic
	k.UnmarshalText(fmt.Appendf(nil, "nodekey:%064x", id))
	name := fmt.Sprintf("host-%d", id)
	if id == 1 {
		name = "self"
	}
	return &tailcfg.Node{
		ID:        tailcfg.NodeID(id),
		StableID:  tailcfg.StableNodeID(fmt.Sprintf("n%d", id)),
		Name:      name + ".demo.ts.net.",
		User:      tailcfg.UserID(1 + id%2),
		Key:       k,
		Addresses: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("100.64.0.%d/32", id))},
		Hostinfo:  (&tailcfg.Hostinfo{Hostname: name, OS: []string{"linux", "macOS", "windows"}[id%3]}).View(),
		Online:    &online,
		HomeDERP:  1 + id%3,
	}
}

// feedDemo applies a tailnet and keeps changing it in the background.
func feedDemo(ctx context.Context, bus *meshring.Bus, n int) error {
	resp := &tailcfg.MapResponse{
		Node:   demoNode(1, true),
		Domain: "demo.ts.net",
		UserProfiles: []tailcfg.UserProfile{
			{ID: 1, LoginName: "alice@demo.example", DisplayName: "Alice"},
			{ID: 2, LoginName: "bob@demo.example", DisplayName: "Bob"},
		},
	}
	for id := 2; id <= n+1; id++ {
		resp.Peers = append(resp.Peers, demoNode(id, id%3 != 0))
	}
	if err := mrts.ApplyMapResponse(bus, resp); err != nil {
		return err
	}
	if err := bus.Publish([]byte(`{"State": 6}`)); err != nil {
		return err
	}
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		next := n + 2
		for i := 0; ctx.Err() == nil; i++ {
			time.Sleep(150 * time.Millisecond)
			var d tailcfg.MapResponse
			switch i % 3 {
			case 0:
				d.PeersChangedPatch = []*tailcfg.PeerChange{{NodeID: tailcfg.NodeID(2 + r.IntN(n)), Online: new(r.IntN(2) == 0)}}
			case 1:
				d.PeersChanged = []*tailcfg.Node{demoNode(next, true)}
				next++
			case 2:
				d.PeersRemoved = []tailcfg.NodeID{tailcfg.NodeID(next - 1)}
			}
			if mrts.ApplyMapResponse(bus, &d) != nil {
				return
			}
		}
	}()
	return nil
}
