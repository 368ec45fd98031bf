//! Which live processes are agents, for `enforcer status`: every process in /proc is looked up
//! in the kernel's process table. Only thread-group leaders are counted (processes, not threads).

use enforcer_common::ProcState;

use crate::kernel::Backend;

/// `(pid, state)` of every live process that is an agent member.
pub fn agent_members(backend: &dyn Backend) -> Vec<(u32, ProcState)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| match backend.proc_state(pid) {
            Ok(Some(state)) => Some((pid, state)),
            _ => None,
        })
        .collect()
}

/// The executable of process `tgid`, if it still exists.
pub fn exe_of(tgid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}
