//! A fresh filesystem for one benchmark invocation, shared by our servers and their peers.
//!
//! Why: on ext4 without a journal (the root filesystem of the machines these benchmarks run
//! on), creating a file skips, one inode-table lookup at a time, every inode deleted in the
//! last one to five minutes. A benchmark that starts by deleting the previous run's tens of
//! thousands of message files therefore slows down every file creation of the next run, the
//! more so for whoever creates more files (three replicas against one copy), and back-to-back
//! runs drifted from 1.06 to 0.55 with nothing changed. A new filesystem per invocation, made
//! like the root one (ext4, no journal) on a loop device with direct I/O, gives every run the
//! same start. Needs root and `mkfs.ext4`/`losetup`; without them the benchmark runs in the
//! plain directory and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A mounted scratch filesystem; unmounted, detached and deleted on drop.
pub struct ScratchFs {
    mount: PathBuf,
    image: PathBuf,
    device: String,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
    let path = path.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&*path))
}

impl ScratchFs {
    /// Make `dir` (emptied first) the mount point of a new `size_bytes` filesystem whose
    /// image lives beside it.
    pub fn create(dir: &Path, size_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mount = std::fs::canonicalize(dir)?;
        // A run that was killed may have left its filesystem mounted.
        if is_mount_point(&mount) {
            run(Command::new("umount").arg(&mount))?;
        }
        std::fs::remove_dir_all(&mount)?;
        std::fs::create_dir_all(&mount)?;
        let image = mount.with_extension("img");
        // ... and its loop device still attached to the image.
        if image.exists() {
            let attached = run(Command::new("losetup").arg("-j").arg(&image)).unwrap_or_default();
            for device in attached.lines().filter_map(|l| l.split(':').next()) {
                let _ = run(Command::new("losetup").arg("-d").arg(device));
            }
        }
        let _ = std::fs::remove_file(&image);
        let file = std::fs::File::create(&image)?;
        file.set_len(size_bytes)?;
        drop(file);
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-O", "^has_journal"]).arg(&image))?;
        let device = run(Command::new("losetup").args(["--find", "--show", "--direct-io=on"]).arg(&image))?;
        if let Err(e) = run(Command::new("mount").arg(&device).arg(&mount)) {
            let _ = run(Command::new("losetup").arg("-d").arg(&device));
            return Err(e);
        }
        Ok(Self { mount, image, device })
    }

    /// [`ScratchFs::create`], or `None` (with the reason on stderr) where it cannot be made:
    /// the benchmark then runs in the plain directory.
    pub fn create_or_warn(dir: &Path, size_bytes: u64) -> Option<Self> {
        match Self::create(dir, size_bytes) {
            Ok(fs) => {
                eprintln!("data on a fresh ext4 (no journal) at {}", fs.mount.display());
                Some(fs)
            }
            Err(e) => {
                eprintln!("no scratch filesystem ({e:#}); using {} as it is", dir.display());
                None
            }
        }
    }
}

/// Size of a scratch filesystem: sparse, so only what a benchmark writes takes disk space.
pub const SCRATCH_BYTES: u64 = 24 << 30;

/// The directories of a side-by-side benchmark: ours and the peer's, made under a
/// [`prepare`]d, canonical `dir`. Keep it until every process has stopped (the scratch
/// filesystem is unmounted when it drops).
pub struct Sides {
    pub scratch: Option<ScratchFs>,
    pub ours: std::path::PathBuf,
    pub peer: std::path::PathBuf,
}

/// [`prepare`] `dir` and make `storaged/` and `peer` in it.
pub fn sides(dir: &Path, plain: bool, peer: &str) -> anyhow::Result<Sides> {
    let scratch = prepare(dir, plain)?;
    let dir = std::fs::canonicalize(dir)?;
    let (ours, peer) = (dir.join("storaged"), dir.join(peer));
    std::fs::create_dir_all(&ours)?;
    std::fs::create_dir_all(&peer)?;
    Ok(Sides { scratch, ours, peer })
}

/// An empty `dir` for a benchmark: a fresh scratch filesystem mounted there unless `plain`
/// (or unless one cannot be made), else the directory emptied.
pub fn prepare(dir: &Path, plain: bool) -> anyhow::Result<Option<ScratchFs>> {
    let scratch = if plain { None } else { ScratchFs::create_or_warn(dir, SCRATCH_BYTES) };
    if scratch.is_none() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    Ok(scratch)
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        for attempt in 0..10 {
            match run(Command::new("umount").arg(&self.mount)) {
                Ok(_) => break,
                // Processes that were just killed may still hold files for a moment.
                Err(e) if attempt == 9 => eprintln!("scratch filesystem left mounted: {e:#}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(300)),
            }
        }
        let _ = run(Command::new("losetup").arg("-d").arg(&self.device));
        let _ = std::fs::remove_file(&self.image);
    }
}
