//! Network namespaces for tests and benchmarks: two joined by a veth pair (AoE: `aoe-t` in
//! the target's namespace, `aoe-i` in the initiator's), or one joined to the host by a
//! routed veth pair (`Site`: clients at addresses of their own, as if elsewhere on the
//! Internet). Removed on drop. Needs root and iproute2. Never touches the host's own
//! interfaces beyond the veth ends it makes.

use std::process::Command;

/// A private Ethernet between two namespaces.
#[derive(Debug)]
pub struct Wire {
    pub target_ns: String,
    pub initiator_ns: String,
}

/// Run `ip ARGS`, failing loudly.
pub fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

impl Wire {
    /// Create `aoeT{tag}` and `aoeI{tag}` joined by a veth pair with `mtu`.
    pub fn new(tag: &str, mtu: u32) -> std::io::Result<Self> {
        let w = Self { target_ns: format!("aoeT{tag}"), initiator_ns: format!("aoeI{tag}") };
        let (t, i) = (w.target_ns.clone(), w.initiator_ns.clone());
        ip(&["netns", "add", &t])?;
        ip(&["netns", "add", &i])?;
        ip(&["link", "add", "aoe-t", "netns", &t, "type", "veth", "peer", "name", "aoe-i", "netns", &i])?;
        let mtu = mtu.to_string();
        for (ns, dev) in [(&t, "aoe-t"), (&i, "aoe-i")] {
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(w)
    }
}

/// A namespace whose `eth0` is `10.77.K.2/24`, joined to the host's `10.77.K.1` by a veth
/// pair: a client there reaches the host's listeners at `10.77.K.1` and is seen as
/// `10.77.K.2`.
#[derive(Debug)]
pub struct Site {
    pub ns: String,
    /// The host's end (`10.77.K.1`), where the site's clients connect.
    pub host_ip: String,
    /// The site's own address, as servers see it.
    pub client_ip: String,
}

impl Site {
    pub fn new(name: &str, k: u8) -> std::io::Result<Self> {
        let ns = format!("site-{name}");
        let host_dev = format!("site{k}h");
        let (host_ip, client_ip) = (format!("10.77.{k}.1"), format!("10.77.{k}.2"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(std::process::Stdio::null()).status();
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &host_dev, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_dev])?;
        ip(&["link", "set", &host_dev, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{client_ip}/24"), "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(Self { ns, host_ip, client_ip })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the host's.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Run `f` on a new thread inside network namespace `ns` (for raw sockets on a wire's end).
pub fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on an open namespace file; it changes this thread only.
        assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Drop for Wire {
    fn drop(&mut self) {
        for ns in [&self.target_ns, &self.initiator_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
