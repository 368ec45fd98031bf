//! The initramfs the test kernels boot: busybox, `enforcer`, `policies/`, the added files, the
//! shared libraries of every dynamic binary among them, and an `/init` that runs one command as
//! root, prints its exit status behind a marker and powers off.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufWriter, Write as _},
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    bootstrap::is_elf,
    process::{self, ProcessError},
};

/// The first line /init prints: everything before it is firmware and kernel boot output.
pub const START_MARKER: &str = "@@ENFORCER-VM-INIT-STARTED@@";

/// Where Debian's busybox-static installs the static busybox.
const BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(
        "{BUSYBOX} is missing or not static (install busybox-static: `cargo xtask bootstrap`)"
    )]
    NoStaticBusybox,
    #[error("two added files are both called {name}: {first} and {second}")]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("--add {path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InitramfsError {
    let path = path.to_path_buf();
    move |source| InitramfsError::Io {
        action,
        path,
        source,
    }
}

/// Programs from Debian packages unpacked under `root` (`dpkg-deb -x`, never installed), put
/// into the guest under `guest` at the same relative paths, with the libraries they need: those
/// of the unpacked packages (looked up first, as `LD_LIBRARY_PATH` does in the guest) at their
/// relative paths too, the host's at their own paths.
#[derive(Debug)]
pub struct Unpacked<'a> {
    pub root: &'a Path,
    pub guest: &'a str,
    /// Paths relative to `root`, e.g. `sbin/auditd`.
    pub programs: &'a [&'a str],
}

impl Unpacked<'_> {
    /// Where the unpacked packages keep their libraries (`LD_LIBRARY_PATH` for their programs).
    pub fn library_path(root: &Path) -> String {
        format!(
            "{}:{}",
            root.join("lib/x86_64-linux-gnu").display(),
            root.join("usr/lib/x86_64-linux-gnu").display()
        )
    }
}

/// What goes into one image.
#[derive(Debug)]
pub struct Contents<'a> {
    pub enforcer: &'a Path,
    /// The test tooling binary, at /bin/enforcer-testkit (`ENFORCER_TESTKIT`).
    pub testkit: &'a Path,
    pub policies: &'a Path,
    pub added: &'a [PathBuf],
    pub unpacked: &'a [Unpacked<'a>],
    /// `ENFORCER_KERNEL` inside the guest.
    pub kernel_label: &'a str,
    /// The command `/init` runs (argv; words are quoted for the shell).
    pub command: &'a [String],
    /// The line prefix `/init` prints before the command's exit status.
    pub exit_marker: &'a str,
}

/// Builds `<work_dir>/initramfs.cpio.gz` from a fresh staging tree `<work_dir>/root`.
pub fn build(contents: &Contents<'_>, work_dir: &Path) -> Result<PathBuf, InitramfsError> {
    let root = work_dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(io_error("removing", &root))?;
    }
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root", "etc",
        "add", "policies",
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io_error("creating", &path))?;
    }
    // Debian's layout: daemons such as auditd write their pid file to /var/run.
    let var = root.join("var");
    fs::create_dir_all(&var).map_err(io_error("creating", &var))?;
    symlink("/run", var.join("run")).map_err(io_error("creating symlink", &var.join("run")))?;
    install_busybox(&root)?;

    let mut staged_files = vec![
        stage_binary(contents.enforcer, &root.join("bin/enforcer"))?,
        stage_binary(contents.testkit, &root.join("bin/enforcer-testkit"))?,
    ];
    let mut seen_names = std::collections::BTreeMap::new();
    for added in contents.added {
        if !added.is_file() {
            return Err(InitramfsError::NotAFile {
                path: added.clone(),
            });
        }
        let name = added
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some(first) = seen_names.insert(name.clone(), added.clone()) {
            return Err(InitramfsError::DuplicateName {
                name,
                first,
                second: added.clone(),
            });
        }
        staged_files.push(stage_binary(added, &root.join("add").join(&name))?);
    }
    if contents.policies.is_dir() {
        copy_tree(contents.policies, &root.join("policies"))?;
    }
    // Copy the libraries the *host* binaries link against; the staged copies are identical.
    let sources: Vec<&Path> = [contents.enforcer, contents.testkit]
        .into_iter()
        .chain(contents.added.iter().map(PathBuf::as_path))
        .collect();
    let mut libraries = BTreeSet::new();
    for (source, staged) in sources.iter().zip(&staged_files) {
        if is_elf(staged) {
            libraries.extend(shared_libraries(source)?);
            strip_debug_info(staged)?;
        }
    }
    for unpacked in contents.unpacked {
        let guest = root.join(unpacked.guest.trim_start_matches('/'));
        let library_path = Unpacked::library_path(unpacked.root);
        for program in unpacked.programs {
            let source = unpacked.root.join(program);
            stage_binary(&source, &guest.join(program))?;
            for library in libraries_with(&source, Some(&library_path))? {
                match library.strip_prefix(unpacked.root) {
                    Ok(relative) => {
                        copy_file(&library, &guest.join(relative))?;
                    }
                    Err(_) => {
                        libraries.insert(library);
                    }
                }
            }
        }
    }
    for library in &libraries {
        let relative = library.strip_prefix("/").unwrap_or(library);
        copy_file(library, &root.join(relative))?;
    }
    write_init(contents, &root)?;
    pack(&root, &work_dir.join("initramfs.cpio.gz"))
}

fn install_busybox(root: &Path) -> Result<(), InitramfsError> {
    if !is_elf(Path::new(BUSYBOX)) || !shared_libraries(Path::new(BUSYBOX))?.is_empty() {
        return Err(InitramfsError::NoStaticBusybox);
    }
    copy_file(Path::new(BUSYBOX), &root.join("bin/busybox"))?;
    // `busybox --list-full` names every applet with its usual path (`bin/sh`, `sbin/poweroff`, ...).
    let applets = process::stdout(Command::new(BUSYBOX).arg("--list-full"))?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "bin/busybox")
    {
        let link = root.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
        }
        if !link.exists() {
            symlink("/bin/busybox", &link).map_err(io_error("creating symlink", &link))?;
        }
    }
    Ok(())
}

/// Debug builds of enforcer and of each test executable are about 100 MB, mostly DWARF; the
/// guest unpacks the initramfs into its 1 GiB of RAM. Symbols stay, so backtraces keep function
/// names, and panic messages carry their file:line anyway.
fn strip_debug_info(staged: &Path) -> Result<(), InitramfsError> {
    process::stdout(Command::new("strip").arg("--strip-debug").arg(staged))?;
    Ok(())
}

/// Copies a file (following symlinks), keeping its permissions; returns the destination.
/// Copy an added file; ELF files without their debug info. Debug builds of the test
/// executables are ~90 MB each, mostly DWARF: unstripped, a few dozen of them no longer unpack
/// into the guest's RAM ("Initramfs unpacking failed: write error"). Falls back to a plain copy
/// if objcopy is missing or fails.
fn stage_binary(source: &Path, destination: &Path) -> Result<PathBuf, InitramfsError> {
    if is_elf(source) {
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
        }
        let stripped = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(source)
            .arg(destination)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if stripped {
            return Ok(destination.to_path_buf());
        }
        eprintln!(
            "initramfs: objcopy --strip-debug {} failed; copying it whole",
            source.display()
        );
    }
    copy_file(source, destination)
}

fn copy_file(source: &Path, destination: &Path) -> Result<PathBuf, InitramfsError> {
    if let Some(parent) = destination.parent() {
        fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
    }
    fs::copy(source, destination).map_err(io_error("copying", source))?;
    Ok(destination.to_path_buf())
}

fn copy_tree(source: &Path, destination: &Path) -> Result<(), InitramfsError> {
    fs::create_dir_all(destination).map_err(io_error("creating", destination))?;
    for entry in fs::read_dir(source).map_err(io_error("reading", source))? {
        let path = entry.map_err(io_error("reading", source))?.path();
        let target = destination.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

/// The absolute paths `ldd` resolves for a binary, the ELF interpreter included; empty for a
/// static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, InitramfsError> {
    libraries_with(binary, None)
}

/// [`shared_libraries`], looking in `library_path` first (`LD_LIBRARY_PATH`).
fn libraries_with(
    binary: &Path,
    library_path: Option<&str>,
) -> Result<Vec<PathBuf>, InitramfsError> {
    let mut ldd = Command::new("ldd");
    if let Some(path) = library_path {
        ldd.env("LD_LIBRARY_PATH", path);
    }
    let output = ldd
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProcessError::Spawn {
            command: format!("ldd {}", binary.display()),
            source,
        })?;
    // ldd exits 1 with "not a dynamic executable" for static binaries.
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x...)` (the interpreter) or `linux-vdso.so.1 (0x...)` (no file).
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let resolved = match line.split_once("=>") {
                Some((_, right)) => right,
                None => line,
            };
            let path = resolved.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Single-quotes a word for the shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn init_script(contents: &Contents<'_>) -> String {
    let command: Vec<String> = contents
        .command
        .iter()
        .map(|word| shell_quote(word))
        .collect();
    format!(
        r#"#!/bin/busybox sh
# Generated by `cargo xtask vm`: mount what enforcer needs, run one command, report, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo
echo '{start}'
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
ip link set lo up
export PATH=/add:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export ENFORCER_BIN=/bin/enforcer
export ENFORCER_TESTKIT=/bin/enforcer-testkit
export ENFORCER_POLICIES=/policies
export ENFORCER_KERNEL={kernel}
cd /
{command}
status=$?
echo "{marker}$status"
poweroff -f
"#,
        kernel = shell_quote(contents.kernel_label),
        command = command.join(" "),
        marker = contents.exit_marker,
        start = START_MARKER,
    )
}

fn write_init(contents: &Contents<'_>, root: &Path) -> Result<(), InitramfsError> {
    use std::os::unix::fs::PermissionsExt as _;
    let init = root.join("init");
    fs::write(&init, init_script(contents)).map_err(io_error("writing", &init))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))
        .map_err(io_error("chmod", &init))?;
    Ok(())
}

/// `find . | cpio -o -H newc` (owned by root) through gzip.
fn pack(root: &Path, image: &Path) -> Result<PathBuf, InitramfsError> {
    let listing = process::stdout(
        Command::new("find")
            .args([".", "-print0"])
            .current_dir(root),
    )?;
    let file = fs::File::create(image).map_err(io_error("creating", image))?;
    let mut gzip = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast());
    let mut cpio = Command::new("cpio");
    cpio.args([
        "--null",
        "--create",
        "--format=newc",
        "--owner=0:0",
        "--quiet",
    ])
    .current_dir(root);
    let mut child = cpio
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            command: process::describe(&cpio),
            source,
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(listing.as_bytes()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    std::io::copy(&mut stdout, &mut gzip).map_err(io_error("compressing", image))?;
    let status = child.wait().map_err(|source| ProcessError::Spawn {
        command: process::describe(&cpio),
        source,
    })?;
    writer
        .join()
        .expect("cpio stdin writer")
        .map_err(io_error("feeding the file list to cpio for", image))?;
    if !status.success() {
        return Err(ProcessError::Failed {
            command: process::describe(&cpio),
            status,
            stderr: String::new(),
        }
        .into());
    }
    gzip.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_error("writing", image))?;
    Ok(image.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_yields_libraries_and_interpreter_but_not_vdso() {
        let output = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(output),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn quoting_survives_single_quotes_and_spaces() {
        assert_eq!(shell_quote("it's a b"), r#"'it'\''s a b'"#);
    }

    #[test]
    fn init_runs_the_quoted_command_and_reports_its_status() {
        let command = vec!["enforcer".to_string(), "--version".to_string()];
        let contents = Contents {
            enforcer: Path::new("/e"),
            testkit: Path::new("/t"),
            policies: Path::new("/p"),
            added: &[],
            unpacked: &[],
            kernel_label: "6.12",
            command: &command,
            exit_marker: "@@EXIT@@ ",
        };
        let script = init_script(&contents);
        assert!(
            script.contains(
                "\n'enforcer' '--version'\nstatus=$?\necho \"@@EXIT@@ $status\"\npoweroff -f\n"
            ),
            "{script}"
        );
        assert!(script.contains("export ENFORCER_KERNEL='6.12'"), "{script}");
        assert!(
            script.contains("export ENFORCER_TESTKIT=/bin/enforcer-testkit\n"),
            "{script}"
        );
    }
}
