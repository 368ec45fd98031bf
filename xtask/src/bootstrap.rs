//! `cargo xtask bootstrap`: everything a fresh machine needs, done once and checked quickly after.
//!
//! Steps: `rust-src` for the nightly (aya-build runs `-Z build-std=core`), bpf-linker built against
//! the nightly's own libLLVM (Debian has no LLVM matching the nightly), the Debian packages the VM
//! runner needs, and the pseudo-filesystems the host kernel tests need. Each step prints one line
//! only when it actually does something.

use std::ffi::OsString;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, ProcessError};
use crate::project::Project;

/// The bpf-linker build must use this exact version: newer ones need a newer rustc.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the VM runner uses: QEMU, a static busybox for the initramfs, cpio to pack it,
/// binutils' `strip` to drop debug info from the binaries put into it.
const DEBIAN_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio", "binutils"];

/// Pseudo-filesystems host kernel tests need: (type, mount point).
const HOST_MOUNTS: &[(&str, &str)] = &[
    ("bpf", "/sys/fs/bpf"),
    ("tracefs", "/sys/kernel/tracing"),
    ("securityfs", "/sys/kernel/security"),
];

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("`rustc +nightly -vV` did not report `{field}`:\n{output}")]
    NightlyInfo { field: &'static str, output: String },
    #[error("no real libLLVM.so.<version> (an ELF file) in {dir}; the nightly toolchain looks incomplete")]
    NoLibLlvm { dir: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bpf-linker was installed but {path} does not run: {source}")]
    LinkerBroken { path: PathBuf, source: ProcessError },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError {
    let path = path.to_path_buf();
    move |source| BootstrapError::Io {
        action,
        path,
        source,
    }
}

/// What later steps need from the bootstrap: where bpf-linker lives.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub bpf_linker_bin_dir: PathBuf,
}

impl Toolchain {
    /// PATH with the bpf-linker directory first: aya-build finds `bpf-linker` through it.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.bpf_linker_bin_dir.clone()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }

    /// A `cargo` command for the toolchain that runs xtask, with bpf-linker on PATH.
    pub fn cargo(&self, project: &Project) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(&project.root)
            .env("PATH", self.path_env());
        command
    }
}

/// Facts about the installed nightly that name the bpf-linker build.
struct Nightly {
    /// First 12 characters of the nightly's commit hash: a new nightly means a new bpf-linker.
    short_hash: String,
    llvm_major: String,
    sysroot: PathBuf,
}

pub fn ensure(project: &Project) -> Result<Toolchain, BootstrapError> {
    ensure_rust_src()?;
    let toolchain = ensure_bpf_linker(project)?;
    ensure_debian_packages()?;
    ensure_host_mounts();
    Ok(toolchain)
}

fn ensure_rust_src() -> Result<(), BootstrapError> {
    let installed = process::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|line| line.trim() == "rust-src") {
        return Ok(());
    }
    println!("bootstrap: installing rust-src for the nightly toolchain (the eBPF build uses -Z build-std=core)");
    process::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(())
}

fn nightly() -> Result<Nightly, BootstrapError> {
    let verbose = process::stdout(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let field = |name: &'static str| {
        verbose
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(": "))
            })
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| BootstrapError::NightlyInfo {
                field: name,
                output: verbose.clone(),
            })
    };
    let short_hash: String = field("commit-hash")?.chars().take(12).collect();
    let llvm_major = field("LLVM version")?
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let sysroot = process::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    Ok(Nightly {
        short_hash,
        llvm_major,
        sysroot: PathBuf::from(sysroot.trim()),
    })
}

fn ensure_bpf_linker(project: &Project) -> Result<Toolchain, BootstrapError> {
    let nightly = nightly()?;
    let install_root = project
        .tools_dir()
        .join(format!("bpf-linker-{}", nightly.short_hash));
    let bin_dir = install_root.join("bin");
    let linker = bin_dir.join("bpf-linker");
    let toolchain = Toolchain {
        bpf_linker_bin_dir: bin_dir,
    };
    if linker.is_file() && process::stdout(Command::new(&linker).arg("--version")).is_ok() {
        return Ok(toolchain);
    }

    let llvm_prefix = project
        .tools_dir()
        .join(format!("llvm-{}", nightly.short_hash));
    link_nightly_libllvm(&nightly, &llvm_prefix)?;
    println!(
        "bootstrap: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {} into {} (takes 2-3 minutes, once per nightly)",
        nightly.llvm_major,
        install_root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    process::run(
        Command::new(cargo)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{}", nightly.llvm_major)])
            .arg("--root")
            .arg(&install_root)
            .env("LLVM_PREFIX", &llvm_prefix)
            // Outside the repository, so the repo's rust-toolchain.toml and .cargo/config.toml don't apply.
            .current_dir(project.tools_dir()),
    )?;
    process::stdout(Command::new(&linker).arg("--version")).map_err(|source| {
        BootstrapError::LinkerBroken {
            path: linker.clone(),
            source,
        }
    })?;
    Ok(toolchain)
}

/// `<prefix>/lib/{libLLVM.so, libLLVM.so.<ver>}` -> the nightly's real shared libLLVM, which is
/// what llvm-sys links against when `LLVM_PREFIX` is set. The sysroot also holds a
/// `libLLVM-<major>-rust-*.so` that is a linker script, not a library: only ELF files qualify.
fn link_nightly_libllvm(nightly: &Nightly, llvm_prefix: &Path) -> Result<(), BootstrapError> {
    let sysroot_lib = nightly.sysroot.join("lib");
    let entries = fs::read_dir(&sysroot_lib).map_err(io_error("reading", &sysroot_lib))?;
    let real_library = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
                && is_elf(path)
        })
        .ok_or_else(|| BootstrapError::NoLibLlvm {
            dir: sysroot_lib.clone(),
        })?;
    let lib_dir = llvm_prefix.join("lib");
    fs::create_dir_all(&lib_dir).map_err(io_error("creating", &lib_dir))?;
    let versioned_name = real_library.file_name().unwrap_or_default().to_owned();
    for name in [OsString::from("libLLVM.so"), versioned_name] {
        let link = lib_dir.join(name);
        if fs::read_link(&link).is_ok_and(|target| target == real_library) {
            continue;
        }
        let _ = fs::remove_file(&link);
        symlink(&real_library, &link).map_err(io_error("creating symlink", &link))?;
    }
    Ok(())
}

pub fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn ensure_debian_packages() -> Result<(), BootstrapError> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "bootstrap: installing Debian packages {} (needed to boot test kernels under QEMU)",
        missing.join(", ")
    );
    apt_get_update()?;
    process::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

fn debian_package_installed(package: &str) -> bool {
    process::stdout(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// `apt-get update`, at most once per xtask run.
pub fn apt_get_update() -> Result<(), ProcessError> {
    static UPDATED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if UPDATED.get().is_some() {
        return Ok(());
    }
    println!("bootstrap: apt-get update");
    process::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let _ = UPDATED.set(());
    Ok(())
}

/// Mounts missing pseudo-filesystems. A failure is a warning, not an error: building and the VM
/// runner don't need them, and host kernel tests report what they can't do.
fn ensure_host_mounts() {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for (fstype, target) in HOST_MOUNTS {
        let mounted = mounts.lines().any(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next();
            fields.next() == Some(target) && fields.next() == Some(fstype)
        });
        if mounted {
            continue;
        }
        println!("bootstrap: mounting {fstype} at {target} (host kernel tests need it)");
        if let Err(err) = process::run(Command::new("mount").args(["-t", fstype, fstype, target])) {
            eprintln!("bootstrap: warning: could not mount {fstype} at {target}: {err}");
        }
    }
}
