//! Two network namespaces joined by a veth pair, for AoE tests and benchmarks: `aoe-t` in
//! the target's namespace, `aoe-i` in the initiator's, both up; removed on drop. Needs
//! root and iproute2. Never touches the host's own interfaces.

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
