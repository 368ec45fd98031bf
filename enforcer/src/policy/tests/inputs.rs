//! Policy input stays inside the policy root: include escapes (`..`, absolute, symlink), files
//! that are not regular (FIFO, device), oversized files. Each is a precise error, nothing is
//! loaded, and no line of a file outside the root appears in the diagnostics.

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

use crate::policy::{load_paths, MAX_POLICY_FILE_BYTES};

/// A policy root `<tmp>/root` with `a.toml` including `include`, and a secret file outside the
/// root (`<tmp>/outside/secret.toml`) whose line must never be echoed.
struct Fixture {
    tmp: std::path::PathBuf,
}

const SECRET_LINE: &str = "secret-line = \"do-not-echo\"";

impl Fixture {
    fn new(include: &str) -> Fixture {
        let tmp = crate::audit::writer::tests::tempdir();
        std::fs::create_dir_all(tmp.join("root/sets")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        std::fs::write(
            tmp.join("outside/secret.toml"),
            format!("[set]\nname = \"s\"\n{SECRET_LINE}\n"),
        )
        .unwrap();
        let f = Fixture { tmp };
        f.write_agent(include);
        f
    }

    fn root(&self) -> std::path::PathBuf {
        self.tmp.join("root")
    }

    fn write_agent(&self, include: &str) {
        std::fs::write(
            self.root().join("a.toml"),
            format!("include = [{include:?}]\n[agent]\nname = \"a\"\n"),
        )
        .unwrap();
    }

    /// The loader's headlines; panics if the load succeeded.
    fn refused(&self) -> Vec<String> {
        let d = load_paths(&[self.root()]).expect_err("the load must be refused");
        let text = d.to_string();
        assert!(
            !text.contains("do-not-echo"),
            "a line of a file outside the root was echoed:\n{text}"
        );
        d.headlines()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn one_containing(headlines: &[String], needle: &str) {
    assert!(
        headlines.len() == 1 && headlines[0].contains(needle),
        "expected one error containing {needle:?}, got {headlines:#?}"
    );
}

#[test]
fn include_escaping_with_dotdot_is_refused() {
    let f = Fixture::new("../outside/secret.toml");
    let h = f.refused();
    one_containing(&h, "/root/a.toml:1:12: cannot read included file");
    one_containing(&h, "outside the policy directory");
}

#[test]
fn include_of_an_absolute_path_is_refused() {
    let f = Fixture::new("/etc/passwd");
    one_containing(
        &f.refused(),
        "include paths are relative to the including file",
    );
    // Also an absolute path that names a file inside the root: the rule is lexical.
    let inside = f.root().join("sets/x.toml");
    std::fs::write(&inside, "[set]\nname = \"x\"\n").unwrap();
    f.write_agent(&inside.to_string_lossy());
    one_containing(
        &f.refused(),
        "include paths are relative to the including file",
    );
}

#[test]
fn include_through_a_symlink_out_of_the_root_is_refused() {
    let f = Fixture::new("sets/link.toml");
    std::os::unix::fs::symlink(
        f.tmp.join("outside/secret.toml"),
        f.root().join("sets/link.toml"),
    )
    .unwrap();
    // The symlink is found by the directory walk too: both it and the include are refused.
    let h = f.refused();
    assert!(
        h.iter().all(|l| l.contains("outside the policy directory")),
        "{h:#?}"
    );
    assert!(
        h.iter().any(|l| l.contains("/root/a.toml:1:12:")),
        "the include is named: {h:#?}"
    );
    // A symlinked directory on the way out is the same escape.
    std::fs::remove_file(f.root().join("sets/link.toml")).unwrap();
    std::os::unix::fs::symlink(f.tmp.join("outside"), f.root().join("out")).unwrap();
    f.write_agent("out/secret.toml");
    one_containing(&f.refused(), "outside the policy directory");
}

#[test]
fn a_symlink_that_stays_inside_the_root_is_fine() {
    let f = Fixture::new("sets/link.toml");
    std::fs::write(f.root().join("sets/real.toml"), "[set]\nname = \"r\"\n").unwrap();
    std::os::unix::fs::symlink("real.toml", f.root().join("sets/link.toml")).unwrap();
    let set = load_paths(&[f.root()]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(set.agents.len(), 1);
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_fifo_is_an_error_not_a_hang() {
    // Included: the FIFO has no writer, so a blocking open would never return.
    let f = Fixture::new("sets/pipe.toml");
    mkfifo(&f.root().join("sets/pipe.toml"));
    let h = f.refused();
    assert!(
        h.iter().any(
            |l| l.contains("/root/a.toml:1:12: cannot read included file")
                && l.contains("not a regular file (a FIFO)")
        ),
        "{h:#?}"
    );
    // Found by the directory walk: an error of its own.
    assert!(
        h.iter().any(|l| l.ends_with("sets/pipe.toml: cannot read: not a regular file (a FIFO); policy files must be regular files")),
        "{h:#?}"
    );
}

#[test]
fn a_device_is_an_error_not_an_endless_read() {
    // A file argument /dev/zero has /dev as its root: the device check is what answers.
    let d = load_paths(&["/dev/zero".into()]).expect_err("refused");
    assert_eq!(
        d.headlines(),
        vec!["/dev/zero: cannot read: not a regular file (a character device); policy files must be regular files"]
    );
    // A symlink to it inside the root leaves the root (found by the walk and by the include).
    let f = Fixture::new("sets/zero.toml");
    std::os::unix::fs::symlink("/dev/zero", f.root().join("sets/zero.toml")).unwrap();
    let h = f.refused();
    assert!(
        h.len() == 2
            && h.iter()
                .all(|l| l.contains("resolves to `/dev/zero`, outside the policy directory")),
        "{h:#?}"
    );
    // A device node of its own inside the root (the same device as /dev/zero).
    std::fs::remove_file(f.root().join("sets/zero.toml")).unwrap();
    let node = CString::new(f.root().join("sets/zero.toml").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; the tests run as root (docs/testing.md).
    let made = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 5)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    let h = f.refused();
    assert!(
        h.iter().any(
            |l| l.contains("/root/a.toml:1:12: cannot read included file")
                && l.contains("not a regular file (a character device)")
        ),
        "{h:#?}"
    );
}

#[test]
fn an_oversized_include_is_refused() {
    let f = Fixture::new("sets/big.toml");
    let big = std::fs::File::create(f.root().join("sets/big.toml")).unwrap();
    // Sparse: no disk space, but fstat reports the size.
    big.set_len(MAX_POLICY_FILE_BYTES + 1).unwrap();
    let h = f.refused();
    assert!(
        h.iter().any(
            |l| l.contains("/root/a.toml:1:12: cannot read included file")
                && l.contains(&format!("larger than {MAX_POLICY_FILE_BYTES} bytes"))
        ),
        "{h:#?}"
    );
}
