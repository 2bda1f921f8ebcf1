package main

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// message is one netlink message: struct nlmsghdr (len u32, type u16,
// flags u16, seq u32, pid u32) and the payload.
func message(typ, flags uint16, seq, pid uint32, payload []byte) []byte {
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags)
	ne.PutUint32(msg[8:], seq)
	ne.PutUint32(msg[12:], pid)
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	return msg
}

// attr is one netlink attribute (struct nlattr: len u16, type u16), padded
// to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	n := unix.NLA_HDRLEN + len(data)
	a := make([]byte, (n+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1))
	binary.NativeEndian.PutUint16(a[0:], uint16(n))
	binary.NativeEndian.PutUint16(a[2:], typ)
	copy(a[unix.NLA_HDRLEN:], data)
	return a
}

// genlMessage is a generic netlink request to family: struct genlmsghdr
// (cmd u8, version u8, reserved u16) and attributes. Generic netlink
// ignores messages without NLM_F_REQUEST.
func genlMessage(family uint16, seq, pid uint32, cmd uint8, attrs ...[]byte) []byte {
	payload := []byte{cmd, 1, 0, 0}
	for _, a := range attrs {
		payload = append(payload, a...)
	}
	return message(family, unix.NLM_F_REQUEST, seq, pid, payload)
}

// familyRequest asks the generic netlink controller for name's family.
func familyRequest(name string, seq, pid uint32) []byte {
	return genlMessage(unix.GENL_ID_CTRL, seq, pid, unix.CTRL_CMD_GETFAMILY,
		attr(unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0)))
}

// familyID reads the family id from the controller's reply.
func familyID(reply []byte) (uint16, error) {
	a, err := genlAttr(reply, unix.CTRL_ATTR_FAMILY_ID)
	if err != nil {
		return 0, err
	}
	if len(a) < 2 {
		return 0, fmt.Errorf("family id attribute of %d bytes", len(a))
	}
	return binary.NativeEndian.Uint16(a), nil
}

// genlAttr returns attribute typ of a generic netlink reply; an error
// reply (NLMSG_ERROR) is its errno.
func genlAttr(reply []byte, typ uint16) ([]byte, error) {
	if len(reply) < unix.NLMSG_HDRLEN {
		return nil, fmt.Errorf("short reply (%d bytes)", len(reply))
	}
	body := reply[unix.NLMSG_HDRLEN:]
	if binary.NativeEndian.Uint16(reply[4:]) == unix.NLMSG_ERROR {
		if len(body) < 4 {
			return nil, fmt.Errorf("short error reply (%d bytes)", len(reply))
		}
		if errno := -int32(binary.NativeEndian.Uint32(body)); errno != 0 {
			return nil, fmt.Errorf("the kernel refused: %w", syscall.Errno(errno))
		}
		return nil, fmt.Errorf("the kernel acknowledged without a reply")
	}
	if len(body) < unix.GENL_HDRLEN {
		return nil, fmt.Errorf("reply without a generic netlink header (%d bytes)", len(reply))
	}
	for b := body[unix.GENL_HDRLEN:]; len(b) >= unix.NLA_HDRLEN; {
		n := int(binary.NativeEndian.Uint16(b))
		if n < unix.NLA_HDRLEN || n > len(b) {
			return nil, fmt.Errorf("malformed attribute of length %d in %d bytes", n, len(b))
		}
		if binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == typ {
			return b[unix.NLA_HDRLEN:n], nil
		}
		n = (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return nil, fmt.Errorf("reply lacks attribute %d", typ)
}
