package meshring

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"unsafe"
)

// addrFromC converts a library address to a netip.AddrPort. An IPv6 zone is
// the numeric interface index (net and netip accept that form).
func addrFromC(a *C.mr_addr) netip.AddrPort {
	raw := (*[16]byte)(unsafe.Pointer(&a.ip))
	var ip netip.Addr
	switch a.family {
	case 4:
		ip = netip.AddrFrom4([4]byte(raw[:4]))
	case 6:
		ip = netip.AddrFrom16(*raw)
		if a.scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(a.scope_id), 10))
		}
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, uint16(a.port))
}

// addrToC converts ap to a library address. IPv4-mapped IPv6 addresses
// become IPv4 (the library maps them back on IPv6 sockets).
func addrToC(ap netip.AddrPort, out *C.mr_addr) error {
	ip := ap.Addr()
	if !ip.IsValid() {
		return newError(StatusInvalidArgument, "write", "invalid destination address")
	}
	zone := ip.Zone()
	ip = ip.Unmap()
	*out = C.mr_addr{}
	raw := (*[16]byte)(unsafe.Pointer(&out.ip))
	out.port = C.uint16_t(ap.Port())
	if ip.Is4() {
		out.family = 4
		a4 := ip.As4()
		copy(raw[:4], a4[:])
		return nil
	}
	out.family = 6
	*raw = ip.As16()
	if zone != "" {
		scope, err := zoneIndex(zone)
		if err != nil {
			return err
		}
		out.scope_id = C.uint32_t(scope)
	}
	return nil
}

// zoneIndex resolves an IPv6 zone: a number or an interface name.
func zoneIndex(zone string) (uint32, error) {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, newError(StatusInvalidArgument, "write", fmt.Sprintf("unknown IPv6 zone %q: %v", zone, err))
	}
	return uint32(ifi.Index), nil
}

// udpAddrPort extracts the destination of a WriteTo.
func udpAddrPort(addr net.Addr) (netip.AddrPort, error) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a == nil {
			break
		}
		ap := a.AddrPort()
		if !ap.Addr().IsValid() {
			return netip.AddrPort{}, newError(StatusInvalidArgument, "write", fmt.Sprintf("destination %v has no IP address", a))
		}
		return ap, nil
	case nil:
	default:
		return netip.AddrPort{}, newError(StatusInvalidArgument, "write", fmt.Sprintf("destination %v is a %T, not a *net.UDPAddr", addr, addr))
	}
	return netip.AddrPort{}, newError(StatusInvalidArgument, "write", "nil destination address")
}
