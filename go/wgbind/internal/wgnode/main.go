// Command wgnode runs one wireguard-go device for wgbind's network
// namespace tests and benchmark, on stock wireguard-go parts
// (conn.NewStdNetBind, tun.CreateTUN) or on wgbind's, and small TCP
// helpers that move a deterministic byte stream through the tunnel.
//
//	wgnode node -bind wgbind|std -tun wgbind|std [-offload=false] -name wg0 -mtu 1420 \
//	    -key HEX -peer HEX -endpoint IP:PORT -port 51820 -allowed 198.18.1.2/32
//	wgnode tcp-recv -listen IP:PORT -bytes N     (prints "sha256 HEX N")
//	wgnode tcp-send -to IP:PORT -bytes N -seed S (prints "sha256 HEX N")
//
// node prints "ready" once configured, "event up|down|mtu N" for every TUN
// event the device receives, and obeys lines on stdin: "key PRIV PEERPUB"
// (new key pair: replace the private key and the peer), "get" (prints
// "get KEY=VALUE" lines of the device's UAPI state), "close". SIGTERM or
// SIGINT closes the device; it prints "closed" and exits 0.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"unsafe"

	meshring "github.com/meshring/meshring/go"
	"github.com/meshring/meshring/go/wgbind"
	"github.com/tailscale/wireguard-go/conn"
	"github.com/tailscale/wireguard-go/device"
	"github.com/tailscale/wireguard-go/tun"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wgnode node|tcp-recv|tcp-send ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "node":
		err = node(os.Args[2:])
	case "tcp-recv":
		err = tcpRecv(os.Args[2:])
	case "tcp-send":
		err = tcpSend(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wgnode:", err)
		os.Exit(1)
	}
}

// eventLog passes a tun.Device through, printing every event the device reads.
type eventLog struct {
	tun.Device
	out chan tun.Event
}

func logEvents(d tun.Device) tun.Device {
	l := &eventLog{Device: d, out: make(chan tun.Event, 5)}
	go func() {
		defer close(l.out)
		for e := range d.Events() {
			switch {
			case e&tun.EventUp != 0:
				fmt.Println("event up")
			case e&tun.EventDown != 0:
				fmt.Println("event down")
			case e&tun.EventMTUUpdate != 0:
				mtu, _ := d.MTU()
				fmt.Println("event mtu", mtu)
			}
			l.out <- e
		}
	}()
	return l
}

func (l *eventLog) Events() <-chan tun.Event { return l.out }

// GRODevice methods pass through when the device has them (Tailscale probes them).
func (l *eventLog) DisableUDPGRO() {
	if g, ok := l.Device.(tun.GRODevice); ok {
		g.DisableUDPGRO()
	}
}

func (l *eventLog) DisableTCPGRO() {
	if g, ok := l.Device.(tun.GRODevice); ok {
		g.DisableTCPGRO()
	}
}

// stockTUNWithoutOffloads opens a TUN without IFF_VNET_HDR and hands it to
// wireguard-go's CreateTUNFromFile: NativeTun then reads and writes one
// packet at a time, no TSO/GRO.
func stockTUNWithoutOffloads(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		unix.Close(fd)
		return nil, e
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
}

func node(args []string) error {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	bindKind := fs.String("bind", "wgbind", "wgbind or std (conn.NewStdNetBind)")
	tunKind := fs.String("tun", "wgbind", "wgbind or std (tun.CreateTUN)")
	offload := fs.Bool("offload", true, "TUN offloads (IFF_VNET_HDR); false opens the TUN without them")
	name := fs.String("name", "wg0", "TUN name")
	mtu := fs.Int("mtu", 1420, "TUN MTU")
	key := fs.String("key", "", "private key, hex")
	peer := fs.String("peer", "", "peer public key, hex")
	endpoint := fs.String("endpoint", "", "peer endpoint ip:port")
	port := fs.Int("port", 51820, "listen port")
	allowed := fs.String("allowed", "", "peer allowed IP prefix")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here until closed")
	verbose := fs.Bool("v", false, "wireguard-go verbose log")
	fs.Parse(args)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var td tun.Device
	var err error
	switch {
	case *tunKind == "wgbind":
		td, err = wgbind.CreateTUNConfig(*name, meshring.TUNConfig{Backend: meshring.BackendBatch, MTU: *mtu, Offload: *offload, NetPoll: true})
	case *tunKind == "std" && *offload:
		td, err = tun.CreateTUN(*name, *mtu)
	case *tunKind == "std":
		td, err = stockTUNWithoutOffloads(*name, *mtu)
	default:
		err = fmt.Errorf("unknown -tun %q", *tunKind)
	}
	if err != nil {
		return fmt.Errorf("create TUN: %w", err)
	}
	var bind conn.Bind
	switch *bindKind {
	case "wgbind":
		bind = wgbind.NewBind()
	case "std":
		bind = conn.NewStdNetBind()
	default:
		return fmt.Errorf("unknown -bind %q", *bindKind)
	}
	level := device.LogLevelError
	if *verbose {
		level = device.LogLevelVerbose
	}
	dev := device.NewDevice(logEvents(td), bind, device.NewLogger(level, "wgnode: "))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
		*key, *port, *peer, *endpoint, *allowed)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return fmt.Errorf("IpcSet: %w", err)
	}
	fmt.Println("ready")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-sigs:
			dev.Close()
			fmt.Println("closed")
			return nil
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdin closed: wait for a signal
				continue
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "key":
				err := dev.IpcSet(fmt.Sprintf("private_key=%s\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n", f[1], f[2], *endpoint, *allowed))
				fmt.Println("key", errString(err))
			case len(f) == 1 && f[0] == "get":
				state, err := dev.IpcGet()
				if err != nil {
					fmt.Println("get error", err)
					continue
				}
				for _, kv := range strings.Split(strings.TrimSpace(state), "\n") {
					fmt.Println("get", kv)
				}
				fmt.Println("get end")
			case len(f) == 1 && f[0] == "close":
				dev.Close()
				fmt.Println("closed")
				return nil
			default:
				fmt.Println("unknown command", line)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// stream is a deterministic byte stream: xorshift64 bytes from seed.
type stream struct{ x uint64 }

func (s *stream) Read(p []byte) (int, error) {
	for i := range p {
		s.x ^= s.x << 13
		s.x ^= s.x >> 7
		s.x ^= s.x << 17
		p[i] = byte(s.x >> 32)
	}
	return len(p), nil
}

func tcpRecv(args []string) error {
	fs := flag.NewFlagSet("tcp-recv", flag.ExitOnError)
	listen := fs.String("listen", "", "ip:port")
	n := fs.Int64("bytes", 16<<20, "bytes to receive")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	c, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	got, err := io.CopyN(h, c, *n)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", got, err)
	}
	fmt.Printf("sha256 %s %d\n", hex.EncodeToString(h.Sum(nil)), got)
	return nil
}

func tcpSend(args []string) error {
	fs := flag.NewFlagSet("tcp-send", flag.ExitOnError)
	to := fs.String("to", "", "ip:port")
	n := fs.Int64("bytes", 16<<20, "bytes to send")
	seed := fs.Uint64("seed", 1, "stream seed")
	fs.Parse(args)
	c, err := net.Dial("tcp", *to)
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(&stream{x: *seed | 1}, *n), h)
	sent, err := io.Copy(c, src)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", sent, err)
	}
	fmt.Printf("sha256 %s %d\n", hex.EncodeToString(h.Sum(nil)), sent)
	return nil
}
