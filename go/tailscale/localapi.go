package tailscale

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	meshring "github.com/meshring/meshring/go"
	"tailscale.com/ipn"
	"tailscale.com/tailcfg"
)

// localAPIHost is the Host header tailscale.com/client/local sends
// (apitype.LocalAPIHost).
const localAPIHost = "local-tailscaled.sock"

// Handler serves the read-only LocalAPI endpoints from a bus, following
// ipn/localapi/localapi.go of tailscale.com v1.102.5:
//
//   - GET /localapi/v0/watch-ipn-bus?mask=N: one JSON ipn.Notify per line,
//     each flushed; the headers are flushed once the watch is registered.
//     400 "bad mask" for a mask that is not decimal, 400 for
//     NotifyInProcessNoDisconnect, 400 with ipn.ValidateNotifyWatchOpt's
//     message for a refused mask.
//   - GET /localapi/v0/status[?peers=false]: ipnstate.Status, tab-indented.
//   - GET /localapi/v0/peer-by-id?id=N: the node, tab-indented; 400
//     "invalid 'id' parameter", 404 "no peer with that NodeID".
//
// Every response carries Tailscale-Version and Tailscale-Cap; a request
// with a Referer or Origin header, or a Host other than "" or
// "local-tailscaled.sock", is refused (403 "invalid localapi request").
//
// Permissions are tailscaled's on Linux: a connection on a unix socket may
// read (whoever the peer is; the socket is mode 0666), any other
// connection may not. The identity comes from the connection Serve
// accepted; a Handler mounted on some other server refuses every request
// (403), so it can never be served unauthenticated by accident.
type Handler struct {
	Bus *meshring.Bus
	// Logf, if set, receives one line per failed stream write.
	Logf func(format string, args ...any)
}

type connIdentityKey struct{}

// connIdentity is what Serve learned about a connection's peer.
type connIdentity struct {
	unixSocket bool
	ucred      *syscall.Ucred
	err        error
}

func identityOf(r *http.Request) (connIdentity, bool) {
	id, ok := r.Context().Value(connIdentityKey{}).(connIdentity)
	return id, ok
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Referer() != "" || r.Header.Get("Origin") != "" || (r.Host != "" && r.Host != localAPIHost) {
		http.Error(w, "invalid localapi request", http.StatusForbidden)
		return
	}
	w.Header().Set("Tailscale-Version", meshring.Version())
	w.Header().Set("Tailscale-Cap", strconv.Itoa(int(tailcfg.CurrentCapabilityVersion)))
	w.Header().Set("Content-Security-Policy", `default-src 'none'; frame-ancestors 'none'; script-src 'none'; script-src-elem 'none'; script-src-attr 'none'`)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	id, _ := identityOf(r)
	if id.err != nil {
		http.Error(w, id.err.Error(), http.StatusUnauthorized)
		return
	}
	permitRead := id.unixSocket
	switch r.URL.Path {
	case "/localapi/v0/watch-ipn-bus":
		h.serveWatchIPNBus(w, r, permitRead)
	case "/localapi/v0/status":
		h.serveStatus(w, r, permitRead)
	case "/localapi/v0/peer-by-id":
		h.servePeerByID(w, r, permitRead)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

func (h *Handler) serveWatchIPNBus(w http.ResponseWriter, r *http.Request, permitRead bool) {
	if !permitRead {
		http.Error(w, "watch ipn bus access denied", http.StatusForbidden)
		return
	}
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "not a flusher", http.StatusInternalServerError)
		return
	}
	var mask ipn.NotifyWatchOpt
	if s := r.FormValue("mask"); s != "" {
		if err := mask.UnmarshalText([]byte(s)); err != nil {
			http.Error(w, "bad mask", http.StatusBadRequest)
			return
		}
	}
	if mask&ipn.NotifyInProcessNoDisconnect != 0 {
		http.Error(w, "NotifyInProcessNoDisconnect is only valid for in-process IPN bus subscribers", http.StatusBadRequest)
		return
	}
	if err := ipn.ValidateNotifyWatchOpt(mask); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	watcher, err := h.Bus.Watch(meshring.NotifyWatchOpt(mask))
	if err != nil {
		// The bus refuses what ValidateNotifyWatchOpt refuses; anything
		// else here is a closed bus.
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer watcher.Close()
	w.Header().Set("Content-Type", "application/json")
	f.Flush() // the watch is registered: the client's request returns now
	ctx := r.Context()
	for {
		msg, err := watcher.Next(ctx)
		if err != nil {
			return // the client went away, or the bus closed
		}
		if _, err := w.Write(append(msg, '\n')); err != nil {
			h.logf("watch-ipn-bus: %v", err)
			return
		}
		f.Flush()
	}
}

// writeIndented writes compact JSON tab-indented with a trailing newline,
// as json.Encoder with SetIndent("", "\t") does.
func writeIndented(w http.ResponseWriter, compact []byte) {
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "\t"); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.WriteByte('\n')
	w.Write(out.Bytes())
}

func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request, permitRead bool) {
	if !permitRead {
		http.Error(w, "status access denied", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	withPeers := true
	if v, err := strconv.ParseBool(r.FormValue("peers")); err == nil {
		withPeers = v
	}
	var st []byte
	var err error
	if withPeers {
		st, err = h.Bus.Status()
	} else {
		st, err = h.Bus.StatusWithoutPeers()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeIndented(w, st)
}

func (h *Handler) servePeerByID(w http.ResponseWriter, r *http.Request, permitRead bool) {
	if !permitRead {
		http.Error(w, "access denied", http.StatusForbidden)
		return
	}
	id, err := strconv.ParseInt(r.FormValue("id"), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, "invalid 'id' parameter", http.StatusBadRequest)
		return
	}
	node, err := h.Bus.Peer(id)
	if errors.Is(err, meshring.ErrNotFound) {
		http.Error(w, "no peer with that NodeID", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeIndented(w, node)
}

// Server is a LocalAPI served on a unix socket (see Serve).
type Server struct {
	path     string
	listener net.Listener
	http     *http.Server
	done     chan struct{}
	once     sync.Once
	err      error
}

// Serve listens on a unix socket at socketPath, as tailscaled's
// safesocket does on Linux, and serves the bus's LocalAPI on it until
// Close: an existing socket that still answers is an error ("address
// already in use"), a stale one is removed, a missing directory is made
// (0755), and the socket is made mode 0666 (every local user may read the
// bus, as with tailscaled; identities come from SO_PEERCRED).
func Serve(bus *meshring.Bus, socketPath string) (*Server, error) {
	if c, err := net.Dial("unix", socketPath); err == nil {
		c.Close()
		return nil, fmt.Errorf("%v: address already in use", socketPath)
	}
	os.Remove(socketPath)
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socketPath, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{path: socketPath, listener: ln, done: make(chan struct{})}
	s.http = &http.Server{
		Handler:           &Handler{Bus: bus},
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connIdentityKey{}, identify(c))
		},
		ErrorLog: nil,
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// identify reads the peer credentials of a unix-socket connection.
func identify(c net.Conn) connIdentity {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return connIdentity{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return connIdentity{err: err}
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return connIdentity{err: err}
	}
	if credErr != nil {
		return connIdentity{err: fmt.Errorf("reading the peer's credentials: %w", credErr)}
	}
	return connIdentity{unixSocket: true, ucred: cred}
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving: open watch streams end, the socket file is removed.
// Idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.http.Close()
		<-s.done
		os.Remove(s.path)
	})
	return s.err
}

// ApplyMapResponse applies a control update of Tailscale's own type to the
// bus (it is marshalled to JSON, which is what Bus.Apply takes).
func ApplyMapResponse(bus *meshring.Bus, resp *tailcfg.MapResponse) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	return bus.Apply(b)
}

// DecodeNotify decodes one bus message as an ipn.Notify, refusing fields
// ipn.Notify does not have.
func DecodeNotify(msg []byte) (*ipn.Notify, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	var n ipn.Notify
	if err := dec.Decode(&n); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the Notify")
	}
	return &n, nil
}

// NextNotify waits for the watcher's next message (see Watcher.Next) and
// decodes it as an ipn.Notify.
func NextNotify(ctx context.Context, w *meshring.Watcher) (*ipn.Notify, error) {
	msg, err := w.Next(ctx)
	if err != nil {
		return nil, err
	}
	return DecodeNotify(msg)
}
