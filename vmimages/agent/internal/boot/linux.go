package boot

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"layer45/vmimages/agent/proto"
	"layer45/vmimages/agent/server"
)

// Linux is the real Sys.
type Linux struct{}

func (Linux) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}
func (Linux) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (Linux) Symlink(oldname, newname string) error        { return os.Symlink(oldname, newname) }
func (Linux) ReadFile(path string) ([]byte, error)         { return os.ReadFile(path) }

func (Linux) ReadDir(path string) ([]string, error) {
	entries, err := os.ReadDir(path)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

func (Linux) Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (Linux) LoadModule(path string) error { return server.FinitModule(path, "") }

func (Linux) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }

func (Linux) WriteFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (Linux) Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// Run runs argv with a 30s limit. It must only be used before the agent's
// reaper starts (the reaper takes every child's exit status).
func (Linux) Run(argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = server.DefaultEnv
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

func (Linux) Sleep(d time.Duration) { time.Sleep(d) }

func (Linux) SetTime(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Settimeofday(&tv)
}

// Linux's random(4) ioctls: RNDADDENTROPY takes a struct rand_pool_info
// (entropy bits, byte count, bytes); RNDRESEEDCRNG reseeds from the pool
// at once instead of at the generator's next scheduled reseed.
const (
	rndAddEntropy  = 0x40085203
	rndReseedCRNG  = 0x5207
	randomDevice   = "/dev/urandom"
	bitsPerByte    = 8
	poolInfoHeader = 8
)

func (Linux) Reseed(seed []byte) error {
	if len(seed) == 0 {
		return unix.EINVAL
	}
	f, err := os.OpenFile(randomDevice, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := make([]byte, poolInfoHeader+len(seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(len(seed)*bitsPerByte))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))
	copy(info[poolInfoHeader:], seed)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// ConfigureNIC does with ioctls what `ip link set address`, `ip link set
// up` and `ip addr add` would: a restore must not wait for programs.
func (Linux) ConfigureNIC(n proto.NetConfig) error {
	prefix, err := netip.ParsePrefix(n.Addr)
	if err != nil || !prefix.Addr().Is4() {
		return fmt.Errorf("address %q: want IPv4 ADDR/PREFIX", n.Addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if n.MAC != "" {
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("MAC %q: want six bytes", n.MAC)
		}
		// struct ifreq: the name, then a struct sockaddr whose family is
		// ARPHRD_ETHER and whose data starts with the address.
		var ifr [40]byte
		copy(ifr[:unix.IFNAMSIZ-1], n.Iface)
		binary.NativeEndian.PutUint16(ifr[unix.IFNAMSIZ:], unix.ARPHRD_ETHER)
		copy(ifr[unix.IFNAMSIZ+2:], hw)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
			return fmt.Errorf("%s: set MAC %s: %w", n.Iface, n.MAC, e)
		}
	}
	ifr, err := unix.NewIfreq(n.Iface)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: flags: %w", n.Iface, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: up: %w", n.Iface, err)
	}
	addr, _ := unix.NewIfreq(n.Iface)
	if err := addr.SetInet4Addr(prefix.Addr().AsSlice()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, addr); err != nil {
		return fmt.Errorf("%s: address %s: %w", n.Iface, n.Addr, err)
	}
	mask, _ := unix.NewIfreq(n.Iface)
	if err := mask.SetInet4Addr(net.CIDRMask(prefix.Bits(), 32)); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, mask); err != nil {
		return fmt.Errorf("%s: netmask /%d: %w", n.Iface, prefix.Bits(), err)
	}
	return nil
}
