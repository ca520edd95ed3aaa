package podnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// rtnl is a routing netlink socket bound to one network namespace: the few requests Apply
// makes (list the devices; set one down or up, into another namespace, its name and MTU;
// add an address; add a route), each checked by the kernel's acknowledgement. The agent
// needs no more of netlink than that, and these few hundred lines are all of it it links.
type rtnl struct {
	fd  int
	seq uint32
	buf []byte // for the kernel's answers
}

// link is what Apply reads of a network device.
type link struct {
	index int32
	name  string
	mac   net.HardwareAddr
	flags uint32 // IFF_*
	arp   uint16 // ARPHRD_*
}

// openRTNL opens a routing netlink socket in the network namespace of ns (a namespace file,
// such as /proc/thread-self/ns/net or a bind mount of one). A socket stays in the namespace
// it was created in, so the thread only visits ns to create it: on a thread of its own,
// which goes back to where it was and, if it cannot, dies with its goroutine.
func openRTNL(ns *os.File) (*rtnl, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer home.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			err = fmt.Errorf("netlink socket: %w", err)
		}
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	if err := unix.Bind(r.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(r.fd)
		return nil, fmt.Errorf("bind the netlink socket: %w", err)
	}
	return &rtnl{fd: r.fd, buf: make([]byte, 64<<10)}, nil
}

func (s *rtnl) Close() error { return unix.Close(s.fd) }

// links lists the namespace's network devices (RTM_GETLINK, dumped).
func (s *rtnl) links() ([]link, error) {
	var msg nlmsg
	msg.ifinfo(unix.AF_UNSPEC, 0, 0, 0)
	var out []link
	err := s.do(unix.RTM_GETLINK, unix.NLM_F_DUMP, &msg, func(typ uint16, b []byte) error {
		if typ != unix.RTM_NEWLINK {
			return nil
		}
		l, err := parseLink(b)
		if err != nil {
			return err
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// parseLink reads an RTM_NEWLINK message's payload: struct ifinfomsg and its attributes.
func parseLink(b []byte) (link, error) {
	if len(b) < unix.SizeofIfInfomsg {
		return link{}, fmt.Errorf("netlink: a link message of %d bytes, shorter than its header", len(b))
	}
	l := link{
		arp:   binary.NativeEndian.Uint16(b[2:4]),
		index: int32(binary.NativeEndian.Uint32(b[4:8])),
		flags: binary.NativeEndian.Uint32(b[8:12]),
	}
	err := attrs(b[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFLA_IFNAME:
			if n := len(v); n > 0 && v[n-1] == 0 {
				v = v[:n-1]
			}
			l.name = string(v)
		case unix.IFLA_ADDRESS:
			l.mac = net.HardwareAddr(append([]byte(nil), v...))
		}
	})
	return l, err
}

// setUp sets the device up or down (IFF_UP).
func (s *rtnl) setUp(index int32, up bool) error {
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	var msg nlmsg
	msg.ifinfo(unix.AF_UNSPEC, index, flags, unix.IFF_UP)
	return s.do(unix.RTM_NEWLINK, unix.NLM_F_ACK, &msg, nil)
}

// setNamespace moves the device into the network namespace ns.
func (s *rtnl) setNamespace(index int32, ns *os.File) error {
	var msg nlmsg
	msg.ifinfo(unix.AF_UNSPEC, index, 0, 0)
	msg.attrUint32(unix.IFLA_NET_NS_FD, uint32(ns.Fd()))
	return s.do(unix.RTM_NEWLINK, unix.NLM_F_ACK, &msg, nil)
}

// setName renames the device (it must be down).
func (s *rtnl) setName(index int32, name string) error {
	var msg nlmsg
	msg.ifinfo(unix.AF_UNSPEC, index, 0, 0)
	msg.attr(unix.IFLA_IFNAME, append([]byte(name), 0))
	return s.do(unix.RTM_NEWLINK, unix.NLM_F_ACK, &msg, nil)
}

// setMTU sets the device's MTU.
func (s *rtnl) setMTU(index int32, mtu uint32) error {
	var msg nlmsg
	msg.ifinfo(unix.AF_UNSPEC, index, 0, 0)
	msg.attrUint32(unix.IFLA_MTU, mtu)
	return s.do(unix.RTM_NEWLINK, unix.NLM_F_ACK, &msg, nil)
}

// addAddr adds the address p to the device (RTM_NEWADDR, refused if it exists), with the
// broadcast address of its subnet for IPv4 as ip(8) adds it, and without duplicate address
// detection for IPv6 (the host's end held the address; there is no duplicate to find).
func (s *rtnl) addAddr(index int32, p netip.Prefix) error {
	a := p.Addr()
	var msg nlmsg
	family, flags := uint8(unix.AF_INET), uint8(0)
	if a.Is6() {
		family, flags = unix.AF_INET6, unix.IFA_F_NODAD
	}
	// struct ifaddrmsg: family, prefix length, flags, scope (universe), index.
	msg.b = append(msg.b, family, uint8(p.Bits()), flags, unix.RT_SCOPE_UNIVERSE)
	msg.b = binary.NativeEndian.AppendUint32(msg.b, uint32(index))
	msg.attr(unix.IFA_LOCAL, a.AsSlice())
	msg.attr(unix.IFA_ADDRESS, a.AsSlice())
	if a.Is4() && p.Bits() < 31 {
		b := a.As4()
		host := ^binary.BigEndian.Uint32(net.CIDRMask(p.Bits(), 32))
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])|host)
		msg.attr(unix.IFA_BROADCAST, b[:])
	}
	return s.do(unix.RTM_NEWADDR, unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, &msg, nil)
}

// addRoute adds a route to dst through the device in the main table (RTM_NEWROUTE, refused
// if it exists): through gateway gw when it is valid, else on the device's link.
func (s *rtnl) addRoute(index int32, dst netip.Prefix, gw netip.Addr) error {
	family := uint8(unix.AF_INET)
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	scope := uint8(unix.RT_SCOPE_UNIVERSE)
	if !gw.IsValid() {
		scope = unix.RT_SCOPE_LINK
	}
	var msg nlmsg
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	msg.b = append(msg.b, family, uint8(dst.Bits()), 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, scope, unix.RTN_UNICAST)
	msg.b = binary.NativeEndian.AppendUint32(msg.b, 0)
	if dst.Bits() > 0 {
		msg.attr(unix.RTA_DST, dst.Masked().Addr().AsSlice())
	}
	if gw.IsValid() {
		msg.attr(unix.RTA_GATEWAY, gw.AsSlice())
	}
	msg.attrUint32(unix.RTA_OIF, uint32(index))
	return s.do(unix.RTM_NEWROUTE, unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, &msg, nil)
}

// nlmsg is a request's payload: its fixed header, then attributes.
type nlmsg struct{ b []byte }

// ifinfo appends struct ifinfomsg.
func (m *nlmsg) ifinfo(family uint8, index int32, flags, change uint32) {
	m.b = append(m.b, family, 0, 0, 0)
	m.b = binary.NativeEndian.AppendUint32(m.b, uint32(index))
	m.b = binary.NativeEndian.AppendUint32(m.b, flags)
	m.b = binary.NativeEndian.AppendUint32(m.b, change)
}

// attr appends a struct rtattr with value v, padded to four bytes.
func (m *nlmsg) attr(typ uint16, v []byte) {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(unix.SizeofRtAttr+len(v)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, v...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *nlmsg) attrUint32(typ uint16, v uint32) {
	m.attr(typ, binary.NativeEndian.AppendUint32(nil, v))
}

// attrs calls f with each attribute in b (a sequence of struct rtattr).
func attrs(b []byte, f func(typ uint16, v []byte)) error {
	for len(b) >= unix.SizeofRtAttr {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < unix.SizeofRtAttr || n > len(b) {
			return fmt.Errorf("netlink: an attribute of length %d in %d bytes", n, len(b))
		}
		f(binary.NativeEndian.Uint16(b[2:4])&^unix.NLA_F_NESTED, b[unix.SizeofRtAttr:n])
		b = b[min(rtaAlign(n), len(b)):]
	}
	return nil
}

func rtaAlign(n int) int { return (n + 3) &^ 3 }

// do sends one request of type typ with msg as its payload and reads the kernel's answer:
// for a dump (NLM_F_DUMP) each message until NLMSG_DONE, passed to f; for NLM_F_ACK the
// acknowledgement, whose error number it returns.
func (s *rtnl) do(typ uint16, flags uint16, msg *nlmsg, f func(typ uint16, b []byte) error) error {
	s.seq++
	req := make([]byte, 0, unix.SizeofNlMsghdr+len(msg.b))
	req = binary.NativeEndian.AppendUint32(req, uint32(unix.SizeofNlMsghdr+len(msg.b)))
	req = binary.NativeEndian.AppendUint16(req, typ)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|flags)
	req = binary.NativeEndian.AppendUint32(req, s.seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = append(req, msg.b...)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, from, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		done, err := s.parse(s.buf[:n], f)
		if done || err != nil {
			return err
		}
	}
}

// parse reads one datagram of answers to request s.seq; done when the answer is complete.
func (s *rtnl) parse(b []byte, f func(typ uint16, b []byte) error) (done bool, err error) {
	for len(b) >= unix.SizeofNlMsghdr {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		seq := binary.NativeEndian.Uint32(b[8:12])
		if n < unix.SizeofNlMsghdr || n > len(b) {
			return true, fmt.Errorf("netlink: a message of length %d in %d bytes", n, len(b))
		}
		payload := b[unix.SizeofNlMsghdr:n]
		b = b[min(rtaAlign(n), len(b)):]
		if seq != s.seq {
			continue // an answer to an earlier request
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return true, fmt.Errorf("netlink: a truncated error message")
			}
			if errno := -int32(binary.NativeEndian.Uint32(payload[0:4])); errno != 0 {
				return true, syscall.Errno(errno)
			}
			return true, nil // the acknowledgement
		}
		if f != nil {
			if err := f(typ, payload); err != nil {
				return true, err
			}
		}
	}
	return false, nil
}
