//! `cargo xtask bootstrap`: everything a fresh machine needs, done once and checked quickly after.
//!
//! Steps: the toolchains the root Cargo.toml pins (the nightly of the eBPF build with its
//! `rust-src`, as aya-build runs `-Z build-std=core`; the `rust-version` toolchain the lint lane
//! checks with), bpf-linker built against the nightly's own libLLVM (Debian has no LLVM matching
//! the nightly), the Debian packages the VM runner needs, and the pseudo-filesystems the host
//! kernel tests need. Each step prints one line only when it actually does something.

use std::{
    ffi::OsString,
    fs,
    io::Read as _,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    process::{self, ProcessError},
    project::Project,
};

/// The bpf-linker build must use this exact version: newer ones need a newer rustc.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests use: QEMU, a static busybox for the initramfs, cpio to pack it,
/// binutils' `strip` to drop debug info from the binaries put into it; systemd for
/// `systemd-analyze verify` of packaging/enforcer.service (works without systemd as PID 1).
const DEBIAN_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "binutils",
    "systemd",
];

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
    #[error("reading the toolchain pins of {manifest}: {reason}")]
    Pins { manifest: PathBuf, reason: String },
    #[error(
        "the eBPF build needs the toolchain {name} (`ebpf-toolchain` in the root Cargo.toml): rustup \
         has no toolchain of that name, the installed `nightly` {installed}, and `rustup toolchain \
         install {name}` failed: {source}"
    )]
    NoPinnedNightly {
        name: String,
        installed: String,
        source: ProcessError,
    },
    #[error(
        "the lint lane checks with the toolchain {name} (`rust-version` in the root Cargo.toml), \
         which rustup does not have, and `rustup toolchain install {name}` failed: {source}"
    )]
    NoRustVersionToolchain { name: String, source: ProcessError },
    #[error("`rustc +{toolchain} -vV` did not report `{field}`:\n{output}")]
    NightlyInfo {
        toolchain: String,
        field: &'static str,
        output: String,
    },
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

/// What later steps need from the bootstrap: the pinned toolchains and where bpf-linker lives.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub bpf_linker_bin_dir: PathBuf,
    /// The rustup name of the pinned nightly (`nightly-YYYY-MM-DD`).
    pub nightly: String,
    /// The rustup name of the toolchain `rust-version` names (`1.95.0`).
    pub rust_version: String,
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

    /// `rustup run <toolchain> cargo`, with bpf-linker on PATH and without the variables of the
    /// cargo that runs xtask (they would pin its cargo and rustc).
    pub fn rustup_cargo(&self, project: &Project, toolchain: &str) -> Command {
        let mut command = Command::new("rustup");
        command
            .args(["run", toolchain, "cargo"])
            .current_dir(&project.root)
            .env("PATH", self.path_env());
        for key in [
            "CARGO",
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTUP_TOOLCHAIN",
        ] {
            command.env_remove(key);
        }
        command
    }
}

/// The toolchain names the root Cargo.toml pins.
#[derive(Debug, Clone)]
pub struct Pins {
    /// `[workspace.metadata.enforcer] ebpf-toolchain`.
    pub nightly: String,
    /// `[workspace.package] rust-version` as a rustup name (`1.95` -> `1.95.0`).
    pub rust_version: String,
}

/// Reads the pins with `cargo metadata --no-deps` (the same reader enforcer/build.rs uses).
pub fn pins(project: &Project) -> Result<Pins, BootstrapError> {
    let manifest = project.root.join("Cargo.toml");
    let error = |reason: String| BootstrapError::Pins {
        manifest: manifest.clone(),
        reason,
    };
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(&manifest)
        .no_deps()
        .exec()
        .map_err(|e| error(format!("cargo metadata: {e}")))?;
    let nightly = metadata
        .workspace_metadata
        .get("enforcer")
        .and_then(|enforcer| enforcer.get("ebpf-toolchain"))
        .and_then(|name| name.as_str())
        .ok_or_else(|| error("no [workspace.metadata.enforcer] ebpf-toolchain".into()))?
        .to_owned();
    let versions: Vec<_> = metadata
        .workspace_packages()
        .into_iter()
        .map(|package| package.rust_version.clone())
        .collect();
    let rust_version = match versions.first() {
        Some(Some(first)) if versions.iter().all(|v| v.as_ref() == Some(first)) => first,
        _ => {
            return Err(error(
                "every package must inherit one rust-version (`rust-version.workspace = true`)"
                    .into(),
            ));
        }
    };
    Ok(Pins {
        nightly,
        rust_version: format!(
            "{}.{}.{}",
            rust_version.major, rust_version.minor, rust_version.patch
        ),
    })
}

/// Facts about the installed nightly that name the bpf-linker build.
struct Nightly {
    /// First 12 characters of the nightly's commit hash: a new nightly means a new bpf-linker.
    short_hash: String,
    llvm_major: String,
    sysroot: PathBuf,
}

pub fn ensure(project: &Project) -> Result<Toolchain, BootstrapError> {
    let toolchain = ensure_toolchains(project)?;
    ensure_debian_packages()?;
    ensure_host_mounts();
    Ok(toolchain)
}

/// The part of the bootstrap that builds need (no Debian packages, no mounts): the pinned
/// toolchains and bpf-linker.
pub fn ensure_toolchains(project: &Project) -> Result<Toolchain, BootstrapError> {
    let pins = pins(project)?;
    ensure_pinned_nightly(&pins.nightly)?;
    ensure_rust_src(&pins.nightly)?;
    ensure_rust_version_toolchain(&pins.rust_version)?;
    ensure_bpf_linker(project, pins)
}

fn rustup_has(toolchain: &str) -> bool {
    process::stdout(Command::new("rustup").args(["run", toolchain, "rustc", "-V"])).is_ok()
}

/// `nightly-YYYY-MM-DD`: already there; else the installed `nightly` if it is that build (its
/// rustup channel manifest carries the date rustup names it by); else `rustup toolchain install`.
fn ensure_pinned_nightly(name: &str) -> Result<(), BootstrapError> {
    if rustup_has(name) {
        return Ok(());
    }
    let installed = installed_nightly_date();
    if let Ok((date, sysroot)) = &installed {
        if format!("nightly-{date}") == name {
            return link_official_name(name, sysroot);
        }
    }
    let installed = match installed {
        Ok((date, _)) => format!("is nightly-{date}"),
        Err(reason) => reason,
    };
    println!("bootstrap: installing the pinned eBPF toolchain {name}");
    process::run(Command::new("rustup").args([
        "toolchain",
        "install",
        name,
        "--profile",
        "minimal",
        "--component",
        "rust-src,rustfmt,clippy",
    ]))
    .map_err(|source| BootstrapError::NoPinnedNightly {
        name: name.to_owned(),
        installed,
        source,
    })
}

/// The date rustup names the installed `nightly` by (`date` in its channel manifest) and its
/// sysroot; the error says why it is unknown.
fn installed_nightly_date() -> Result<(String, PathBuf), String> {
    let sysroot = process::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .map_err(|e| format!("is not there ({e})"))?;
    let sysroot = PathBuf::from(sysroot.trim());
    let manifest = sysroot.join("lib/rustlib/multirust-channel-manifest.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| format!("has no readable {} ({e})", manifest.display()))?;
    let date = text
        .lines()
        .find_map(|line| line.strip_prefix("date = "))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .ok_or_else(|| format!("has no `date` in {}", manifest.display()))?;
    Ok((date, sysroot))
}

/// Makes `name` (an official toolchain name) resolve to the toolchain at `sysroot`.
/// `rustup toolchain link` refuses official names ("invalid custom toolchain name"), so this
/// does what rustup itself does for an installed toolchain: a directory
/// `<RUSTUP_HOME>/toolchains/<name>-<host>`, here a symbolic link to the installed one.
fn link_official_name(name: &str, sysroot: &Path) -> Result<(), BootstrapError> {
    let host = process::stdout(Command::new("rustc").args(["+nightly", "-vV"]))?
        .lines()
        .find_map(|line| {
            line.strip_prefix("host: ")
                .map(str::trim)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let link = sysroot
        .parent()
        .unwrap_or(sysroot)
        .join(format!("{name}-{host}"));
    println!(
        "bootstrap: the installed nightly is {name}: making rustup find it by that name ({} -> {})",
        link.display(),
        sysroot.display()
    );
    let _ = fs::remove_file(&link);
    symlink(sysroot, &link).map_err(io_error("creating symlink", &link))?;
    if !rustup_has(name) {
        return Err(BootstrapError::Io {
            action: "rustup does not run the linked toolchain",
            path: link,
            source: std::io::Error::other(format!("`rustup run {name} rustc -V` failed")),
        });
    }
    Ok(())
}

fn ensure_rust_src(toolchain: &str) -> Result<(), BootstrapError> {
    let sysroot = process::stdout(
        Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"]),
    )?;
    let core = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if core.is_dir() {
        return Ok(());
    }
    println!(
        "bootstrap: installing rust-src for {toolchain} (the eBPF build uses -Z build-std=core)"
    );
    process::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        toolchain,
    ]))?;
    Ok(())
}

fn ensure_rust_version_toolchain(name: &str) -> Result<(), BootstrapError> {
    if rustup_has(name) {
        return Ok(());
    }
    println!("bootstrap: installing {name}, the toolchain `rust-version` names (the lint lane checks with it)");
    process::run(Command::new("rustup").args([
        "toolchain",
        "install",
        name,
        "--profile",
        "minimal",
        "--component",
        "clippy",
    ]))
    .map_err(|source| BootstrapError::NoRustVersionToolchain {
        name: name.to_owned(),
        source,
    })
}

fn nightly(toolchain: &str) -> Result<Nightly, BootstrapError> {
    let plus = format!("+{toolchain}");
    let verbose = process::stdout(Command::new("rustc").args([plus.as_str(), "-vV"]))?;
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
                toolchain: toolchain.to_owned(),
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
    let sysroot =
        process::stdout(Command::new("rustc").args([plus.as_str(), "--print", "sysroot"]))?;
    Ok(Nightly {
        short_hash,
        llvm_major,
        sysroot: PathBuf::from(sysroot.trim()),
    })
}

fn ensure_bpf_linker(project: &Project, pins: Pins) -> Result<Toolchain, BootstrapError> {
    let nightly = nightly(&pins.nightly)?;
    let install_root = project
        .tools_dir()
        .join(format!("bpf-linker-{}", nightly.short_hash));
    let bin_dir = install_root.join("bin");
    let linker = bin_dir.join("bpf-linker");
    let toolchain = Toolchain {
        bpf_linker_bin_dir: bin_dir,
        nightly: pins.nightly,
        rust_version: pins.rust_version,
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
        "bootstrap: installing Debian packages {} (needed by the tests: QEMU test kernels, systemd-analyze)",
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
