package wgbind_test

// Two real wireguard-go devices (device.NewDevice, configured with IpcSet),
// each in a process of its own (internal/wgnode, built with -race) in a
// network namespace of its own, joined by a veth pair: 198.18.1.1/24 and
// 198.18.1.2/24 underneath, 198.18.2.1/24 and 198.18.2.2/24 through the
// tunnel. Only those namespaces' addresses are used; they are deleted at
// cleanup. Needs root, ip(8) and ping.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
)

var (
	wgnodeOnce sync.Once
	wgnodeBin  string
	wgnodeErr  error
)

// wgnode builds the helper once per test binary, with the race detector.
func wgnode(t *testing.T) string {
	t.Helper()
	wgnodeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wgnode")
		if err != nil {
			wgnodeErr = err
			return
		}
		wgnodeBin = filepath.Join(dir, "wgnode")
		out, err := exec.Command("go", "build", "-race", "-o", wgnodeBin, "./internal/wgnode").CombinedOutput()
		if err != nil {
			wgnodeErr = fmt.Errorf("go build -race ./internal/wgnode: %v\n%s", err, out)
		}
	})
	if wgnodeErr != nil {
		t.Fatal(wgnodeErr)
	}
	return wgnodeBin
}

func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, TUN devices")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN support: %v", err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type keyPair struct{ priv, pub string }

func newKey(t *testing.T) keyPair {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	k[0] &= 248
	k[31] = k[31]&127 | 64
	pub, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{hex.EncodeToString(k[:]), hex.EncodeToString(pub)}
}

// pair is two namespaces joined by a veth pair.
type pair struct {
	a, b string
}

var nsSeq int

func newPair(t *testing.T) pair {
	t.Helper()
	needNetns(t)
	nsSeq++
	p := pair{fmt.Sprintf("mrwg-a-%d-%d", os.Getpid(), nsSeq), fmt.Sprintf("mrwg-b-%d-%d", os.Getpid(), nsSeq)}
	run(t, "ip", "netns", "add", p.a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.a).Run() })
	run(t, "ip", "netns", "add", p.b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.b).Run() })
	run(t, "ip", "link", "add", "wgva", "netns", p.a, "type", "veth", "peer", "name", "wgvb", "netns", p.b)
	run(t, "ip", "-n", p.a, "addr", "add", "198.18.1.1/24", "dev", "wgva")
	run(t, "ip", "-n", p.b, "addr", "add", "198.18.1.2/24", "dev", "wgvb")
	for _, ns := range []string{p.a, p.b} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", p.a, "link", "set", "wgva", "up")
	run(t, "ip", "-n", p.b, "link", "set", "wgvb", "up")
	return p
}

// node is one wgnode process.
type node struct {
	t     *testing.T
	ns    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	log   []string
	exit  chan error
}

type side struct {
	bind, tun string
	offload   bool
}

func startNode(t *testing.T, ns string, s side, self, peer keyPair, peerUnderlay, allowed string) *node {
	t.Helper()
	args := []string{"netns", "exec", ns, wgnode(t), "node",
		"-bind", s.bind, "-tun", s.tun, fmt.Sprintf("-offload=%v", s.offload), "-name", "wg0", "-mtu", "1420",
		"-key", self.priv, "-peer", peer.pub, "-endpoint", peerUnderlay + ":51820", "-port", "51820", "-allowed", allowed}
	cmd := exec.Command("ip", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	n := &node{t: t, ns: ns, cmd: cmd, stdin: stdin, lines: make(chan string, 1000), exit: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.mu.Lock()
			n.log = append(n.log, sc.Text())
			n.mu.Unlock()
			n.lines <- sc.Text()
		}
		close(n.lines)
		n.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-n.exit
		if t.Failed() {
			t.Logf("%s (%s/%s) output:\n%s", ns, s.bind, s.tun, strings.Join(n.output(), "\n"))
		}
	})
	n.waitFor("ready", 20*time.Second)
	return n
}

func (n *node) output() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.log...)
}

// waitFor waits for an output line starting with prefix and returns it.
func (n *node) waitFor(prefix string, d time.Duration) string {
	n.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-n.lines:
			if !ok {
				n.t.Fatalf("%s: wgnode exited while waiting for %q", n.ns, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			n.t.Fatalf("%s: no %q from wgnode within %v", n.ns, prefix, d)
		}
	}
}

func (n *node) send(cmd string) {
	n.t.Helper()
	if _, err := io.WriteString(n.stdin, cmd+"\n"); err != nil {
		n.t.Fatalf("%s: %v", n.ns, err)
	}
}

// get returns the device's UAPI value for key.
func (n *node) get(key string) string {
	n.t.Helper()
	n.send("get")
	val := ""
	for {
		l := n.waitFor("get ", 5*time.Second)
		if l == "get end" {
			return val
		}
		if v, ok := strings.CutPrefix(l, "get "+key+"="); ok {
			val = v
		}
	}
}

// tunnel is a pair with a wgnode in each namespace, tunnel addresses up.
type tunnel struct {
	pair
	na, nb *node
	ka, kb keyPair
}

func newTunnel(t *testing.T, sa, sb side) *tunnel {
	t.Helper()
	p := newPair(t)
	tu := &tunnel{pair: p, ka: newKey(t), kb: newKey(t)}
	tu.na = startNode(t, p.a, sa, tu.ka, tu.kb, "198.18.1.2", "198.18.2.2/32")
	tu.nb = startNode(t, p.b, sb, tu.kb, tu.ka, "198.18.1.1", "198.18.2.1/32")
	for _, x := range []struct {
		n    *node
		addr string
	}{{tu.na, "198.18.2.1/24"}, {tu.nb, "198.18.2.2/24"}} {
		run(t, "ip", "-n", x.n.ns, "addr", "add", x.addr, "dev", "wg0")
		run(t, "ip", "-n", x.n.ns, "link", "set", "wg0", "up")
		// The device comes up (opening its Bind) on the TUN's EventUp.
		x.n.waitFor("event up", 10*time.Second)
	}
	return tu
}

func (tu *tunnel) ping(t *testing.T, fromA bool, extra ...string) {
	t.Helper()
	ns, dst := tu.a, "198.18.2.2"
	if !fromA {
		ns, dst = tu.b, "198.18.2.1"
	}
	args := append([]string{"netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "3"}, extra...)
	run(t, "ip", append(args, dst)...)
}

// transfer sends n bytes A -> B over TCP through the tunnel and checks
// that they arrive byte-identical.
func (tu *tunnel) transfer(t *testing.T, n int64) {
	t.Helper()
	bin := wgnode(t)
	recv := exec.Command("ip", "netns", "exec", tu.b, bin, "tcp-recv", "-listen", "198.18.2.2:5001", "-bytes", fmt.Sprint(n))
	rout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	recv.Stderr = os.Stderr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	defer recv.Process.Kill()
	rs := bufio.NewScanner(rout)
	if !rs.Scan() || rs.Text() != "listening" {
		t.Fatalf("tcp-recv did not start: %q", rs.Text())
	}
	sent := run(t, "timeout", "120", "ip", "netns", "exec", tu.a, bin, "tcp-send", "-to", "198.18.2.2:5001", "-bytes", fmt.Sprint(n), "-seed", "7")
	if !rs.Scan() {
		t.Fatalf("tcp-recv printed nothing (sender: %s)", sent)
	}
	got := rs.Text()
	recv.Wait()
	want := strings.TrimSpace(sent)
	if got != want || !strings.HasSuffix(got, fmt.Sprintf(" %d", n)) {
		t.Fatalf("received %q, sent %q", got, want)
	}
}

// close sends SIGTERM and checks a clean exit: "closed", status 0 (the
// race detector makes a racy run exit 66).
func (n *node) close(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.waitFor("closed", 10*time.Second)
	select {
	case err := <-n.exit:
		if err != nil {
			t.Fatalf("%s: wgnode exited with %v:\n%s", n.ns, err, strings.Join(n.output(), "\n"))
		}
		n.exit <- nil // for cleanup
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: wgnode did not exit after closing", n.ns)
	}
}

var wg = side{"wgbind", "wgbind", true}

// Both sides on wgbind: ping both ways, 16 MB byte-identical, an MTU change
// seen by the device, a handshake with new keys, link down, and a close
// while a transfer is under way.
func TestTwoDevicesOverVeth(t *testing.T) {
	tu := newTunnel(t, wg, wg)
	tu.ping(t, true)
	tu.ping(t, false)
	tu.transfer(t, 16<<20)

	t.Run("mtu", func(t *testing.T) {
		run(t, "ip", "-n", tu.a, "link", "set", "wg0", "mtu", "1300")
		tu.na.waitFor("event mtu 1300", 10*time.Second)
		tu.ping(t, true, "-M", "do", "-s", "1272") // 1272 + 28 = the new MTU, unfragmented
		tu.transfer(t, 1<<20)
	})

	t.Run("rekey", func(t *testing.T) {
		before := tu.na.get("last_handshake_time_sec")
		ka, kb := newKey(t), newKey(t)
		tu.na.send("key " + ka.priv + " " + kb.pub)
		tu.nb.send("key " + kb.priv + " " + ka.pub)
		if l := tu.na.waitFor("key ", 5*time.Second); l != "key ok" {
			t.Fatal(l)
		}
		if l := tu.nb.waitFor("key ", 5*time.Second); l != "key ok" {
			t.Fatal(l)
		}
		tu.ping(t, true)
		tu.ping(t, false)
		after := tu.na.get("last_handshake_time_sec")
		if after == "" || after == "0" {
			t.Fatalf("no handshake with the new keys (last_handshake_time_sec %q, before %q)", after, before)
		}
		if pk := tu.na.get("public_key"); pk != kb.pub {
			t.Fatalf("peer public key %q, want the new %q", pk, kb.pub)
		}
	})

	t.Run("link-down", func(t *testing.T) {
		run(t, "ip", "-n", tu.b, "link", "set", "wg0", "down")
		tu.nb.waitFor("event down", 10*time.Second)
		run(t, "ip", "-n", tu.b, "link", "set", "wg0", "up")
		tu.nb.waitFor("event up", 10*time.Second)
		// B's device went down and up (its sessions are gone, as with stock
		// wireguard-go): B's traffic starts a new handshake.
		tu.ping(t, false)
		tu.ping(t, true)
	})

	t.Run("close-under-traffic", func(t *testing.T) {
		bin := wgnode(t)
		recv := exec.Command("ip", "netns", "exec", tu.b, bin, "tcp-recv", "-listen", "198.18.2.2:5002", "-bytes", fmt.Sprint(int64(1)<<40))
		recv.Start()
		defer func() { recv.Process.Kill(); recv.Wait() }()
		time.Sleep(300 * time.Millisecond)
		send := exec.Command("ip", "netns", "exec", tu.a, bin, "tcp-send", "-to", "198.18.2.2:5002", "-bytes", fmt.Sprint(int64(1)<<40))
		send.Start()
		defer func() { send.Process.Kill(); send.Wait() }()
		time.Sleep(time.Second)
		tu.na.close(t)
		tu.nb.close(t)
	})
}

// Stock wireguard-go (conn.NewStdNetBind + tun.CreateTUN) on one side,
// wgbind on the other, both ways round.
func TestInteropWithStock(t *testing.T) {
	stock := side{"std", "std", true}
	for _, c := range []struct {
		name   string
		sa, sb side
	}{{"stock-to-wgbind", stock, wg}, {"wgbind-to-stock", wg, stock}} {
		t.Run(c.name, func(t *testing.T) {
			tu := newTunnel(t, c.sa, c.sb)
			tu.ping(t, true)
			tu.ping(t, false)
			tu.transfer(t, 16<<20)
			tu.na.close(t)
			tu.nb.close(t)
		})
	}
}

// wgbind's TUN without offloads (one packet per read and write) and the
// Bind with it.
func TestWithoutTUNOffloads(t *testing.T) {
	plain := side{"wgbind", "wgbind", false}
	tu := newTunnel(t, plain, plain)
	tu.ping(t, true)
	tu.transfer(t, 4<<20)
	tu.na.close(t)
	tu.nb.close(t)
}
