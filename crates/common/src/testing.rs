//! Helpers for the tests, benchmarks and harnesses of the daemons (never used by the
//! daemons themselves): a free loopback port outside the kernel's ephemeral range, so
//! that an outgoing connection of another process cannot take it between the pick and the
//! daemon's bind (the classic flake of "bind port 0, close, reuse"), and never the same
//! port twice in one process (tests running in parallel pick ports before their daemons
//! bind them).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Ports picked from here; below the usual ephemeral range (32768–60999).
const PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Tries before giving up.
const TRIES_MAX: usize = 1000;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    for _ in 0..TRIES_MAX {
        let port = PORTS.start + (rand::random::<u16>() % (PORTS.end - PORTS.start));
        let mut handed_out = HANDED_OUT.lock().expect("port set lock");
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?} after {TRIES_MAX} tries");
}

/// `127.0.0.1:PORT` for a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Bytes the socket `fd` has sent that its peer has not acknowledged yet (`TCP_INFO`):
/// whether a server acknowledged a read at once (`crate::tcp::quick_ack`).
pub fn tcp_unacked(fd: std::os::fd::RawFd) -> std::io::Result<u32> {
    // SAFETY: an all-zero `tcp_info` is a valid value of this plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let out = (&mut info as *mut libc::tcp_info).cast();
    // SAFETY: `info` and `len` are live for the call and `len` holds the size of `info`.
    if unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, out, &mut len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.tcpi_unacked)
}

/// Wait up to 20 ms (the delayed-ACK timer is 40 ms or more) for everything `fd` sent to
/// be acknowledged; whether it was.
pub fn acknowledged_soon(fd: std::os::fd::RawFd) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(20);
    loop {
        match tcp_unacked(fd) {
            Ok(0) => return true,
            Ok(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(1)),
            _ => return false,
        }
    }
}
