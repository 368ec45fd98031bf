//! Kernel state pinned in bpffs, so enforcement outlives the daemon: a crash, a restart or an
//! upgrade attempt never leaves agents unconfined, and a new daemon adopts what it finds.
//!
//! Layout of a pin directory (`--pin-dir`, default `/sys/fs/bpf/enforcer`):
//!
//! ```text
//! maps/<MAP>    every map of the object (`PINNED_MAPS`): rules, PROCS, ring buffer, counters
//! progs/<prog>  the loaded programs (for inspection with bpftool)
//! links/<prog>  the attachments: while a link is pinned its program keeps running
//! ```
//!
//! `maps/PIN_META` says which build installed the state (`META_LAYOUT`, written last: zero or
//! absent means an install that never completed) and when a daemon last ran. Backend-agnostic:
//! a backend passes its name and program names; nothing here knows about LSM hooks.

use std::path::{Path, PathBuf};

use aya::{
    maps::{Array, Map, MapData},
    programs::{links::FdLink, loaded_programs, ProgramInfo},
    Ebpf, EbpfLoader,
};
use enforcer_common::{MAP_PIN_META, PINNED_MAPS, PIN_META_ENTRIES};

/// `PIN_META` indices.
const META_LAYOUT: u32 = 0;
const META_BACKEND: u32 = 1;
const META_PID: u32 = enforcer_common::PIN_META_PID;
const META_HEARTBEAT: u32 = 3;
const META_INSTALLED: u32 = 4;
const META_ADOPTIONS: u32 = 5;

/// bpffs's `f_type` (statfs): pins anywhere else are impossible, say so early.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error(
        "{} holds kernel state installed by another enforcer build (pinned layout {pinned:016x}, backend {pinned_backend}; this binary: layout {ours:016x}, backend {ours_backend}). \
         It keeps enforcing as it is; refusing to mix it with this binary. To switch: stop the agents, run `enforcer daemon --uninstall --pin-dir {}` \
         (enforcement stops), start this daemon, start the agents again",
        dir.display(), dir.display()
    )]
    LayoutMismatch {
        dir: PathBuf,
        pinned: u64,
        ours: u64,
        pinned_backend: String,
        ours_backend: String,
    },
    #[error("{} is in use by a running daemon (pid {pid}): stop it first (SIGTERM)", dir.display())]
    InUse { dir: PathBuf, pid: u32 },
    #[error("pinning {what}: {reason}")]
    Pin { what: String, reason: String },
    #[error("programs {ids:?} are still loaded {secs} s after their pins were removed: another process holds them (see `bpftool prog show id N`)")]
    StillLoaded { ids: Vec<u32>, secs: u64 },
}

fn io(path: &Path, e: impl std::fmt::Display) -> PinError {
    PinError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Identifies what may adopt a pin directory: the exact eBPF object (a different object may
/// lay its maps out differently or decide differently) and the backend that attached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub object: u64,
    pub backend: u64,
}

impl Layout {
    /// This binary's layout for backend `name` (at most 8 bytes: stored readable in a u64).
    pub fn of(name: &str) -> Layout {
        Layout {
            object: super::object::layout_id(),
            backend: name_word(name),
        }
    }
}

fn name_word(name: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = name.len().min(8);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_le_bytes(b)
}

fn word_name(w: u64) -> String {
    let b = w.to_le_bytes();
    String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(8)]).into_owned()
}

/// What a new daemon learns from the pinned state it adopts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Adoption {
    pub pin_dir: PathBuf,
    /// Pid of the daemon that ran last; `None` when it stopped cleanly (SIGTERM/SIGINT).
    pub previous_pid: Option<u32>,
    /// CLOCK_BOOTTIME ns of that daemon's last heartbeat (every 500 ms, and at its stop).
    pub last_heartbeat_boot_ns: u64,
    /// Programs whose link pin was missing and were attached again.
    pub relinked: Vec<String>,
    /// Daemons that adopted this state before this one.
    pub adoptions: u64,
    /// Policy version active in the kernel when adopted (the new daemon's first version is
    /// above it, even if its state directory was lost).
    pub policy_version: u32,
    /// Agent threads in the pinned process table: they stay agents.
    pub agent_threads: usize,
    /// The pinned process table's capacity (it keeps it: `max_agent_processes` only applies to
    /// a fresh install).
    pub procs_capacity: u32,
    /// The event ring buffer's consumer position the previous daemon left: it had released the
    /// events before it; those from it on are read (again) by this daemon, so events the
    /// previous one wrote but had not released yet appear twice in the log, with the same
    /// `ring_pos`, at or after this value.
    pub ring_released_pos: u64,
}

impl Adoption {
    /// Fill in what the adopted maps hold (best effort: these are for the log, not decisions).
    pub fn read_state(&mut self, ebpf: &Ebpf) {
        use aya::maps::HashMap;
        use enforcer_common::{Config, ProcState, MAP_CONFIG, MAP_PROCS};
        if let Some(config) = ebpf
            .map(MAP_CONFIG)
            .and_then(|m| Array::<&MapData, Config>::try_from(m).ok())
        {
            self.policy_version = config.get(&0, 0).map(|c| c.policy_version).unwrap_or(0);
        }
        if let Some(procs) = ebpf
            .map(MAP_PROCS)
            .and_then(|m| HashMap::<&MapData, u32, ProcState>::try_from(m).ok())
        {
            self.agent_threads = procs.keys().filter(Result::is_ok).count();
        }
        if let Ok(info) =
            aya::maps::MapInfo::from_pin(PinDir::new(&self.pin_dir).map_path(MAP_PROCS))
        {
            self.procs_capacity = info.max_entries();
        }
    }
}

/// What a pin directory holds, found before anything is loaded (aya reuses pinned maps blindly,
/// so the layout must be checked first).
pub enum Found {
    /// Nothing complete: install afresh.
    Nothing,
    /// A complete install of this layout.
    Adoptable(Adoption),
}

pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(root: &Path) -> PinDir {
        PinDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub fn link_path(&self, prog: &str) -> PathBuf {
        self.root.join("links").join(prog)
    }

    pub fn prog_path(&self, prog: &str) -> PathBuf {
        self.root.join("progs").join(prog)
    }

    /// Create the directories; the root must be on bpffs.
    pub fn create(&self) -> Result<(), PinError> {
        for sub in ["maps", "progs", "links"] {
            let d = self.root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        let stat = nix::sys::statfs::statfs(&self.root).map_err(|e| io(&self.root, e))?;
        if stat.filesystem_type().0 as i64 != BPF_FS_MAGIC {
            return Err(io(
                &self.root,
                "not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)",
            ));
        }
        Ok(())
    }

    /// Look at the pin directory: adoptable, nothing (an incomplete install is removed: it
    /// never got past loading, so no agent was registered in it), or another build's state.
    pub fn inspect(&self, layout: Layout, programs: &[&str]) -> Result<Found, PinError> {
        if !self.root.exists() {
            return Ok(Found::Nothing);
        }
        let meta = read_meta(&self.map_path(MAP_PIN_META));
        let meta = match meta {
            Some(m) if m[META_LAYOUT as usize] != 0 => m,
            _ => {
                tracing::warn!(
                    "{}: removing an install that never completed",
                    self.root.display()
                );
                uninstall(&self.root)?;
                return Ok(Found::Nothing);
            }
        };
        let pinned = Layout {
            object: meta[META_LAYOUT as usize],
            backend: meta[META_BACKEND as usize],
        };
        if pinned != layout {
            return Err(PinError::LayoutMismatch {
                dir: self.root.clone(),
                pinned: pinned.object,
                ours: layout.object,
                pinned_backend: word_name(pinned.backend),
                ours_backend: word_name(layout.backend),
            });
        }
        if let Some(pid) = live_daemon(meta[META_PID as usize]) {
            return Err(PinError::InUse {
                dir: self.root.clone(),
                pid,
            });
        }
        let relinked = programs
            .iter()
            .filter(|p| !self.link_path(p).exists())
            .map(|p| p.to_string())
            .collect();
        Ok(Found::Adoptable(Adoption {
            pin_dir: self.root.clone(),
            previous_pid: u32::try_from(meta[META_PID as usize])
                .ok()
                .filter(|&p| p != 0),
            last_heartbeat_boot_ns: meta[META_HEARTBEAT as usize],
            relinked,
            adoptions: meta[META_ADOPTIONS as usize],
            policy_version: 0,
            agent_threads: 0,
            procs_capacity: 0,
            ring_released_pos: 0,
        }))
    }

    /// Make the loader pin every map here, or reuse the one already pinned.
    pub fn pin_maps(&self, loader: &mut EbpfLoader<'_>) {
        for name in PINNED_MAPS {
            loader.map_pin_path(name, self.map_path(name));
        }
    }

    /// Every non-global map of a loaded object must be pinned: a map missing from
    /// `PINNED_MAPS` would start empty after each restart.
    pub fn check_all_pinned(ebpf: &Ebpf) -> Result<(), PinError> {
        for (name, _) in ebpf.maps() {
            if !name.starts_with('.') && !PINNED_MAPS.contains(&name) {
                return Err(PinError::Pin {
                    what: format!("map {name}"),
                    reason: "not in PINNED_MAPS".into(),
                });
            }
        }
        Ok(())
    }

    /// Pin a program (by name) of a loaded object, replacing an old pin.
    pub fn pin_program(&self, ebpf: &mut Ebpf, prog: &str) -> Result<(), PinError> {
        let path = self.prog_path(prog);
        remove_pin(&path)?;
        let p = ebpf.program_mut(prog).ok_or_else(|| PinError::Pin {
            what: prog.into(),
            reason: "no such program".into(),
        })?;
        p.pin(&path).map_err(|e| PinError::Pin {
            what: format!("program {prog}"),
            reason: e.to_string(),
        })
    }

    /// Pin an attachment: from now on it outlives every file descriptor (and the daemon).
    pub fn pin_link(&self, prog: &str, link: FdLink) -> Result<(), PinError> {
        let path = self.link_path(prog);
        remove_pin(&path)?;
        link.pin(&path).map(drop).map_err(|e| PinError::Pin {
            what: format!("link of {prog}"),
            reason: e.to_string(),
        })
    }

    /// Record that this daemon runs on the state (after everything is pinned and proven): the
    /// layout goes in last, so a crash before this leaves an install seen as incomplete.
    pub fn mark_running(
        &self,
        ebpf: &mut Ebpf,
        layout: Layout,
        adopted: bool,
    ) -> Result<(), PinError> {
        let mut meta = meta_of(ebpf)?;
        let now = boot_ns();
        let get = |m: &Array<&mut MapData, u64>, i| m.get(&i, 0).unwrap_or(0);
        let installed = get(&meta, META_INSTALLED);
        let adoptions = get(&meta, META_ADOPTIONS) + u64::from(adopted);
        for (i, v) in [
            (META_BACKEND, layout.backend),
            (META_PID, u64::from(std::process::id())),
            (META_HEARTBEAT, now),
            (META_INSTALLED, if installed == 0 { now } else { installed }),
            (META_ADOPTIONS, adoptions),
            (META_LAYOUT, layout.object),
        ] {
            meta.set(i, v, 0).map_err(|e| PinError::Pin {
                what: MAP_PIN_META.into(),
                reason: e.to_string(),
            })?;
        }
        hold_links(&self.root.join("links"));
        Ok(())
    }
}

/// A link pin of the running daemon, held open twice: `hold` keeps the hook attached while the
/// daemon runs even if the pin is removed, `spare` is consumed to pin it again.
struct HeldLink {
    path: PathBuf,
    _hold: FdLink,
    spare: Option<FdLink>,
}

/// Every link pin of this daemon (process-wide: one daemon runs on one pin directory), from
/// `mark_running` to its clean stop (`heartbeat(false)`) or an uninstall.
static HELD_LINKS: std::sync::Mutex<Vec<HeldLink>> = std::sync::Mutex::new(Vec::new());

/// Open every link pinned in `dir`. Removing a pin is then no way to detach a hook while a
/// daemon runs (an agent allowed to write bpffs, or the fallback, where a kill-mode agent's
/// unlink completes before it dies): the link stays attached through these descriptors, and
/// [`heartbeat`] pins it again.
fn hold_links(dir: &Path) {
    let mut held = HELD_LINKS.lock().unwrap_or_else(|e| e.into_inner());
    for path in pins_in(dir) {
        if held.iter().any(|h| h.path == path) {
            continue;
        }
        let open = || aya::programs::links::PinnedLink::from_pin(&path).map(FdLink::from);
        match (open(), open()) {
            (Ok(hold), Ok(spare)) => held.push(HeldLink {
                path,
                _hold: hold,
                spare: Some(spare),
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot hold link pin {}: {e}", path.display())
            }
        }
    }
}

/// Close the held descriptors: from now on only the pins keep the hooks attached.
fn release_links() {
    HELD_LINKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Pin again every held link whose pin is gone (someone removed it while the daemon runs).
fn repin_removed_links() {
    let mut held = HELD_LINKS.lock().unwrap_or_else(|e| e.into_inner());
    for h in held.iter_mut() {
        if h.path.symlink_metadata().is_ok() {
            continue;
        }
        let Some(spare) = h.spare.take() else {
            continue;
        };
        if let Some(dir) = h.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match spare.pin(&h.path) {
            Ok(pinned) => {
                tracing::warn!("link pin {} was removed by someone else; the hook stayed attached (held by the daemon) and is pinned again", h.path.display());
                h.spare = Some(FdLink::from(pinned));
            }
            Err(e) => tracing::error!(
                "link pin {} was removed and cannot be pinned again ({e}): the hook stays attached only while this daemon runs",
                h.path.display()
            ),
        }
    }
}

/// A daemon is alive (`running`: pid and time) or has stopped cleanly (pid 0, time of the stop).
pub fn heartbeat(ebpf: &mut Ebpf, running: bool) -> Result<(), PinError> {
    if running {
        repin_removed_links();
    } else {
        release_links();
    }
    let mut meta = meta_of(ebpf)?;
    let pid = if running {
        u64::from(std::process::id())
    } else {
        0
    };
    for (i, v) in [(META_HEARTBEAT, boot_ns()), (META_PID, pid)] {
        meta.set(i, v, 0).map_err(|e| PinError::Pin {
            what: MAP_PIN_META.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn meta_of(ebpf: &mut Ebpf) -> Result<Array<&mut MapData, u64>, PinError> {
    let map = ebpf.map_mut(MAP_PIN_META).ok_or_else(|| PinError::Pin {
        what: MAP_PIN_META.into(),
        reason: "missing from the object".into(),
    })?;
    Array::try_from(map).map_err(|e| PinError::Pin {
        what: MAP_PIN_META.into(),
        reason: e.to_string(),
    })
}

fn read_meta(path: &Path) -> Option<Vec<u64>> {
    let map = Map::from_map_data(MapData::from_pin(path).ok()?).ok()?;
    let meta: Array<MapData, u64> = Array::try_from(map).ok()?;
    Some(
        (0..PIN_META_ENTRIES)
            .map(|i| meta.get(&i, 0).unwrap_or(0))
            .collect(),
    )
}

/// CLOCK_BOOTTIME, the clock of kernel event stamps (pins live exactly one boot).
fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The pid recorded in PIN_META if it is a running `enforcer daemon` other than us (a stale
/// pid reused by an unrelated process does not count).
fn live_daemon(pid: u64) -> Option<u32> {
    let pid = u32::try_from(pid)
        .ok()
        .filter(|&p| p != 0 && p != std::process::id())?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_daemon =
        args.iter().any(|a| *a == b"daemon") && !args.iter().any(|a| *a == b"--uninstall");
    is_daemon.then_some(pid)
}

fn remove_pin(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}

/// Remove everything pinned under `root` (deliberate uninstall): links first, so every hook is
/// detached before the maps go (a link pin is the last reference once no daemon runs). Refuses
/// while a daemon uses the directory: its file descriptors would keep the state alive and it
/// would go on claiming enforcement. Returns once the programs are gone from the kernel (the
/// kernel releases links asynchronously), so "uninstalled" means no hook runs any more.
/// Returns whether there was anything.
pub fn uninstall(root: &Path) -> Result<bool, PinError> {
    if !root.exists() {
        return Ok(false);
    }
    let dir = PinDir::new(root);
    if let Some(pid) =
        read_meta(&dir.map_path(MAP_PIN_META)).and_then(|m| live_daemon(m[META_PID as usize]))
    {
        return Err(PinError::InUse {
            dir: root.to_path_buf(),
            pid,
        });
    }
    let programs: Vec<u32> = pins_in(&root.join("progs"))
        .iter()
        .filter_map(|p| ProgramInfo::from_pin(p).ok().map(|i| i.id()))
        .collect();
    // An uninstall from the process that ran on the directory (tests) must not be kept
    // attached by its own descriptors.
    release_links();
    for link in pins_in(&root.join("links")) {
        remove_pin(&link)?;
    }
    std::fs::remove_dir_all(root).map_err(|e| io(root, e))?;
    wait_unloaded(&programs, UNLOAD_TIMEOUT)?;
    Ok(true)
}

/// Generous: releasing a sleepable LSM program waits for RCU grace periods, slow under emulation.
const UNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn pins_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn wait_unloaded(ids: &[u32], timeout: std::time::Duration) -> Result<(), PinError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(PinError::StillLoaded {
                ids: alive,
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip_through_a_word() {
        assert_eq!(word_name(name_word("lsm")), "lsm");
        assert_eq!(word_name(name_word("fallback")), "fallback");
        assert_ne!(name_word("lsm"), name_word("fallback"));
    }

    #[test]
    fn pid_zero_and_our_own_pid_are_never_a_live_daemon() {
        assert_eq!(live_daemon(0), None);
        assert_eq!(live_daemon(u64::from(std::process::id())), None);
        assert_eq!(live_daemon(u64::MAX), None);
    }

    #[test]
    fn uninstall_of_a_missing_directory_is_not_an_error() {
        assert!(!uninstall(Path::new("/nonexistent/enforcer-pins")).unwrap());
    }
}
