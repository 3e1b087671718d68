//! `aoe-target`: serve files or block devices over ATA over Ethernet on one interface
//! until SIGINT/SIGTERM. Needs root (raw sockets).
//!
//! `aoe-target -i eth1 --export 7.3=/srv/disk.img --export 7.4=/dev/sdb:ro`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use aoe::target::server::{run, ExportSpec, TargetOptions};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "ATA over Ethernet target")]
struct Args {
    #[arg(long, short)]
    interface: String,
    /// SHELF.SLOT=PATH, with `:ro` for read-only.
    #[arg(long = "export", required = true)]
    exports: Vec<String>,
    /// Requests taken at once (at least 64).
    #[arg(long, default_value_t = 64)]
    buffer_count: u16,
    /// Open every export with O_DIRECT (no page cache; like vblade's `-d`).
    #[arg(long)]
    direct: bool,
}

fn export(spec: &str, direct: bool) -> anyhow::Result<ExportSpec> {
    let (addr, path) = spec.split_once('=').context("exports are SHELF.SLOT=PATH")?;
    let (shelf, slot) = addr.split_once('.').context("exports are SHELF.SLOT=PATH")?;
    let (path, read_only) = match path.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let (major, minor): (u16, u8) = (shelf.parse()?, slot.parse()?);
    if major == 0xffff || minor == 0xff {
        bail!("{major}.{minor} is the broadcast address");
    }
    Ok(ExportSpec { major, minor, path: PathBuf::from(path), read_only, direct })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let exports = args.exports.iter().map(|e| export(e, args.direct)).collect::<anyhow::Result<Vec<_>>>()?;
    // Block SIGINT and SIGTERM here, before any thread starts (threads inherit the mask);
    // one thread waits for them and sets the flag the ring loop checks every 100 ms.
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset/sigaddset initialise the set before pthread_sigmask reads it.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut got = 0;
        // SAFETY: `set` is initialised; sigwait blocks until one of its signals arrives.
        unsafe { libc::sigwait(&set, &mut got) };
        flag.store(true, Ordering::Relaxed);
    });
    let options = TargetOptions { interface: args.interface, exports, buffer_count: args.buffer_count };
    run(&options, stop).context("AoE target")?;
    Ok(())
}
