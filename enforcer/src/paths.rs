//! Every well-known path, in one place.

/// Default daemon configuration file.
pub const CONFIG_FILE: &str = "/etc/enforcer/enforcer.toml";
/// Default policy directory.
pub const POLICY_DIR: &str = "/etc/enforcer/policies";
/// Default audit log.
pub const AUDIT_LOG: &str = "/var/log/enforcer/audit.jsonl";
/// Default API socket.
pub const API_SOCKET: &str = "/run/enforcer/api.sock";
/// Where bpffs is (or gets) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Directory of pinned maps, programs and links under bpffs.
pub const PIN_DIR: &str = "/sys/fs/bpf/enforcer";
/// Kernel BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// securityfs's list of active LSMs (informational only: usability is detected by loading).
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";
/// tracefs mount point (tracepoint format files).
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// Mount table, to find cgroup v2 (never hard-code its mount point).
pub const PROC_MOUNTS: &str = "/proc/mounts";
/// Daemon state that outlives it (policy version counter, reported loss counters).
pub const STATE_DIR: &str = "/var/lib/enforcer";
