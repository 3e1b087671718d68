//! A raw Ethernet socket (`AF_PACKET`) bound to one interface and to the AoE EtherType:
//! whole frames out and in, with the interface's MAC and MTU. Blocking sends, receives with
//! a timeout. Needs CAP_NET_RAW (root). The only `unsafe` of the crate lives here, each
//! call with the reason it is sound.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::codec::{MacAddr, ETHERTYPE_AOE};

/// Socket send and receive buffer size asked for.
const SOCKET_BUFFER_BYTES: libc::c_int = 8 << 20;

/// A bound raw socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    pub mac: MacAddr,
    pub mtu: usize,
    pub ifindex: i32,
}

/// `ifreq` for the interface-query ioctls: a name and a union of at most 24 bytes.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

impl PacketSocket {
    /// Open a socket on interface `name` for AoE frames.
    pub fn open(name: &str) -> io::Result<Self> {
        let proto = ETHERTYPE_AOE.to_be();
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFINDEX reads the name and writes an int into the 24-byte union.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let ifindex = i32::from_ne_bytes(req.data[..4].try_into().expect("four bytes"));
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFHWADDR writes a sockaddr (16 bytes) into the 24-byte union.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mac = MacAddr(req.data[2..8].try_into().expect("six bytes"));
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFMTU writes an int into the 24-byte union.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mtu = i32::from_ne_bytes(req.data[..4].try_into().expect("four bytes")).max(0) as usize;
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes for the duration of the call.
        if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_ll).cast(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // Many requests in flight arrive in bursts; the default socket buffers (about 200 KiB,
        // a few dozen jumbo frames) would drop some. FORCE works as root; else the capped size.
        let bytes: libc::c_int = SOCKET_BUFFER_BYTES;
        for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
            let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let ptr = (&bytes as *const libc::c_int).cast();
            // SAFETY: setsockopt reads one int from `ptr` during the call.
            if unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, force, ptr, size) } != 0 {
                // SAFETY: as above.
                unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, plain, ptr, size) };
            }
        }
        Ok(Self { fd, mac, mtu, ifindex })
    }

    /// The socket's descriptor (for io_uring submissions).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Send one frame (padded to Ethernet's 60-byte minimum).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut padded;
        let bytes = if frame.len() < 60 {
            padded = frame.to_vec();
            padded.resize(60, 0);
            &padded[..]
        } else {
            frame
        };
        // SAFETY: `bytes` is valid for reads of its length during the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receive one frame into `buf` within `timeout`; `Ok(None)` when none came.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(None) } else { Err(e) };
        }
        if ready == 0 {
            return Ok(None);
        }
        // SAFETY: `buf` is valid for writes of its length during the call.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        Ok(Some(n as usize))
    }
}
