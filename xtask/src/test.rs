//! `cargo xtask test`: unit tests, kernel tests on the host and in every VM kernel, fuzzing, then
//! the test x kernel table. Full logs go to target/test-logs/.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    adversarial::AdversarialTable,
    bootstrap::Toolchain,
    build::{self, TestExecutable},
    initramfs::{self, Contents},
    kernel_tests::{self, HostEnvironment, KernelTest},
    kernels::{self, Series},
    libtest::Outcome,
    project::Project,
    summary::{Cell, Row, Summary},
    vm::{self, Boot},
};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Run the kernel tests on the host kernel only (no VMs).
    #[arg(long, conflicts_with = "kernel")]
    pub host_only: bool,
    /// Boot only these VM kernels (repeatable); default: all.
    #[arg(long, value_enum)]
    pub kernel: Vec<Series>,
    /// Skip the workspace unit tests.
    #[arg(long)]
    pub skip_unit: bool,
    /// Only tests (and fuzz targets) whose row name contains this text, or one of several given
    /// comma-separated (`daemon_grant,verifier_budget`); also passed to the unit tests.
    #[arg(long)]
    pub filter: Option<String>,
    /// Seconds each fuzz target runs.
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub fuzz_seconds: u64,
    /// Time limit for one kernel test process.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub test_timeout: u64,
    /// Time limit for one VM boot (all tests inside it).
    #[arg(long, default_value_t = TEST_VM_TIMEOUT_SECS, value_name = "SECS")]
    pub vm_timeout: u64,
    /// VM boots running at the same time.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub vm_jobs: usize,
}

/// One boot runs every kernel test its kernel selects (`skip_reason`), far over `vm`'s 600 s
/// default. Measured in a full run on an idle 2-CPU machine: 6.1 42 tests in 1528 s, 6.12 42 in
/// 830 s, 6.12-nolsm 37 in 821 s (20-130 s a test: each loads its programs, verified under
/// emulation, 6.1 slowest). Two boots share the machine (`--vm-jobs`). Headroom for a slower
/// machine, inside CI's limit.
const TEST_VM_TIMEOUT_SECS: u64 = 3600;

/// A cell's value plus where its log is, for the list of failed logs.
struct Recorder {
    summary: Summary,
    failed_logs: Vec<PathBuf>,
    /// The adversarial suite's case lines, from every test's own log.
    adversarial: AdversarialTable,
}

impl Recorder {
    fn row(&mut self, name: &str) -> &mut Row {
        if let Some(index) = self.summary.rows.iter().position(|row| row.name == name) {
            return &mut self.summary.rows[index];
        }
        self.summary.rows.push(Row::new(name, "not run"));
        self.summary.rows.last_mut().expect("just pushed")
    }

    /// Rows that only run on the host (unit tests, fuzzing) say so in the VM columns.
    fn host_only(&mut self, row: &str) {
        for column in &crate::summary::COLUMNS[1..] {
            self.row(row)
                .set(column, Cell::NotApplicable("host only".into()));
        }
    }

    fn record(&mut self, row: &str, column: &str, outcome: Outcome, log: &Path) {
        let cell = match &outcome {
            Outcome::Pass => Cell::Pass,
            Outcome::NotApplicable(reason) => Cell::NotApplicable(reason.clone()),
            Outcome::Ignored | Outcome::Fail(_) => Cell::Fail,
        };
        let detail = match &outcome {
            Outcome::Ignored => " (ignored: a test must run somewhere)".to_string(),
            Outcome::Fail(why) => format!(" ({why})"),
            _ => String::new(),
        };
        println!("[{column:>4}] {row} ... {}{detail}", cell_text(&cell));
        if let Ok(output) = fs::read_to_string(log) {
            // A VM test that did not finish points at the whole console: its lines are not all
            // this test's.
            if log.extension().is_some_and(|e| e == "log") && !is_console_log(log) {
                self.adversarial.collect(row, column, &output);
            }
        }
        if cell == Cell::Fail && !self.failed_logs.iter().any(|known| known == log) {
            self.failed_logs.push(log.to_path_buf());
        }
        self.row(row).set(column, cell);
    }
}

/// `vm-<kernel>.log`: a whole guest console, not one test's output.
fn is_console_log(log: &Path) -> bool {
    log.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("vm-"))
}

fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Pass => "pass".into(),
        Cell::Fail => "FAIL".into(),
        Cell::NotApplicable(reason) => format!("n/a ({reason})"),
    }
}

pub fn run(args: TestArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure(&project)?;
    let logs = project.test_logs_dir();
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(logs.join("host"))
        .with_context(|| format!("creating {}", logs.display()))?;
    let mut recorder = Recorder {
        summary: Summary::default(),
        failed_logs: Vec::new(),
        adversarial: AdversarialTable::default(),
    };

    let binaries = build::build_binaries(&project, &toolchain, false)?;
    if !args.skip_unit {
        unit_tests(
            &project,
            &toolchain,
            args.filter.as_deref(),
            &logs,
            &mut recorder,
        )?;
    }

    // A kernel test that doesn't compile is a failure in the table, not the end of the run.
    let executables = match build::build_kernel_tests(&project, &toolchain, false) {
        Ok(executables) => executables,
        Err(err) => {
            eprintln!("building the kernel tests failed: {err:#}");
            let outcome = Outcome::Fail("cargo test -p enforcer-tests --no-run failed".into());
            recorder.record("kernel tests (build)", "host", outcome, &logs);
            Vec::new()
        }
    };
    let tests = kernel_tests::list(&executables, args.filter.as_deref())?;
    if tests.is_empty() {
        println!("no kernel tests found in package enforcer-tests");
    }
    let host_env = HostEnvironment {
        enforcer: &binaries.enforcer,
        testkit: &binaries.testkit,
        policies: &project.policies_dir(),
        working_dir: &project.root.join("tests"),
        timeout: Duration::from_secs(args.test_timeout),
    };
    for test in &tests {
        let log = logs.join("host").join(test.log_name());
        let outcome = kernel_tests::run_on_host(test, &host_env, &log)?;
        recorder.record(&test.row, "host", outcome, &log);
    }

    let series: Vec<Series> = match (args.host_only, args.kernel.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => Series::ALL.to_vec(),
        (false, false) => args.kernel.clone(),
    };
    // Every series with `bpf` in lsm=, then 6.12 without it: a kernel where LSM programs load and
    // attach but never run, which the daemon must detect (and fall back from).
    let mut boots: Vec<(Series, bool)> = series.iter().map(|s| (*s, true)).collect();
    if series.contains(&Series::V6_12) {
        boots.push((Series::V6_12, false));
    }
    if !tests.is_empty() {
        // Kernels and images are prepared one after the other (downloads, cpio), then the boots
        // run `--vm-jobs` at a time: most of a boot is one guest CPU verifying BPF programs,
        // so two boots side by side on a 2-CPU machine take little more than the longer one.
        let mut prepared = Vec::new();
        for (series, bpf_lsm) in boots {
            let column = column_label(series, bpf_lsm);
            // Each boot runs what is proven on its kernel and nowhere else (see `skip_reason`).
            let (selected, skipped): (Vec<KernelTest>, Vec<KernelTest>) = tests
                .iter()
                .cloned()
                .partition(|t| skip_reason(&t.row, bpf_lsm).is_none());
            for test in &skipped {
                let reason = skip_reason(&test.row, bpf_lsm).unwrap_or_default();
                recorder
                    .row(&test.row)
                    .set(column, Cell::NotApplicable(reason.into()));
            }
            match prepare_vm(
                &project,
                series,
                bpf_lsm,
                &binaries,
                &executables,
                selected.clone(),
                &args,
            ) {
                Ok(vm) => prepared.push(vm),
                // No kernel or no image: every test fails on that kernel, the others still run.
                Err(err) => {
                    eprintln!("kernel {column}: {err:#}");
                    for test in &selected {
                        let outcome = Outcome::Fail(format!("could not prepare {column}"));
                        recorder.record(&test.row, column, outcome, &logs);
                    }
                }
            }
        }
        for (vm, results) in boot_all(prepared, args.vm_jobs.max(1), &args) {
            for (row, outcome, log) in results {
                recorder.record(&row, vm.label, outcome, &log);
            }
        }
    }

    crate::fuzz::run_all(
        &project,
        &toolchain,
        args.filter.as_deref(),
        args.fuzz_seconds,
        &logs,
        &mut |row, outcome, log| {
            recorder.record(row, "host", outcome, log);
            recorder.host_only(row);
        },
    )?;

    println!();
    for log in &recorder.failed_logs {
        println!("failure log: {}", log.display());
    }
    println!(
        "logs: {}; total time {:.0} s",
        logs.display(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", recorder.summary.render_table());
    if !recorder.adversarial.is_empty() {
        println!();
        print!("{}", recorder.adversarial.render(&recorder.summary));
        println!();
    }
    println!("{}", recorder.summary.render_footer());
    Ok(if recorder.summary.failed() > 0 { 1 } else { 0 })
}

fn unit_tests(
    project: &Project,
    toolchain: &Toolchain,
    filter: Option<&str>,
    logs: &Path,
    recorder: &mut Recorder,
) -> anyhow::Result<()> {
    let log = logs.join("unit-tests.log");
    let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cargo = toolchain.cargo(project);
    // The eBPF crate only builds for the BPF target; enforcer-tests are the kernel tests below.
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    cargo.args([
        "test",
        "--workspace",
        "--exclude",
        "enforcer-tests",
        "--exclude",
        "enforcer-ebpf",
        "--no-fail-fast",
    ]);
    if let Some(filter) = filter {
        cargo.arg("--").args(kernel_tests::filter_parts(filter));
    }
    println!(
        "running unit tests (cargo test --workspace), log: {}",
        log.display()
    );
    let status = cargo
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("starting cargo test")?;
    let output = fs::read_to_string(&log).unwrap_or_default();
    let outcome = if status.success() {
        Outcome::Pass
    } else {
        let tail: Vec<&str> = output.lines().rev().take(30).collect();
        eprintln!("unit tests failed; last lines of {}:", log.display());
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        Outcome::Fail(format!("cargo test: {status}"))
    };
    recorder.record("unit tests", "host", outcome, &log);
    recorder.host_only("unit tests");
    Ok(())
}

/// Why a VM boot does not run `row`, or `None` if it does. Every test runs on the host; a boot
/// runs only what differs on its kernel, which keeps the whole run inside CI's time budget
/// (every program load is verified under emulation there):
/// - kernel-independent tests (user space only) run on the host alone;
/// - with `bpf` in lsm= (6.1, 6.12): the LSM, daemon and identity tests, not the tests that force
///   the fallback backend: the fallback is proven where it is the backend, the host kernel and
///   6.12-nolsm (`verifier_budget::fallback_programs_fit_the_verifier` still loads its programs
///   on every kernel, the 6.1 verifier being the strictest);
/// - without it (6.12-nolsm): the fallback and daemon tests and `lsm_file_open`, which proves the
///   inert-LSM detection; every other LSM test would verify all its programs only to say n/a.
fn skip_reason(row: &str, bpf_lsm: bool) -> Option<&'static str> {
    if kernel_independent(row) {
        Some("not run: kernel-independent (user space only), the host column runs it")
    } else if needs_host_toolchain(row) {
        Some("not run: a real build needs the Rust toolchain the VM images do not carry (the host column runs it)")
    } else if bpf_lsm && forces_fallback(row) && !row.starts_with("verifier_budget::") {
        Some("not run: the fallback backend is tested where it is the backend (host, 6.12-nolsm)")
    } else if !bpf_lsm && !runs_without_bpf_lsm(row) {
        Some("not run: needs BPF LSM, absent here (lsm_file_open proves the detection)")
    } else {
        None
    }
}

/// Tests that use the fallback backend whatever the kernel offers (the adversarial suite has an
/// `lsm_*` and a `fallback_*` test per file; shared bodies name the backend in the test).
fn forces_fallback(row: &str) -> bool {
    row.starts_with("fallback_")
        || row.contains("::fallback")
        || row.starts_with("bench_quick::quick_fallback")
}

/// Tests that run on the kernel booted without `bpf` in lsm= (the fallback's quick benchmark
/// is a benchmark, not a proof: the host runs it).
fn runs_without_bpf_lsm(row: &str) -> bool {
    (forces_fallback(row) && !row.starts_with("bench_"))
        || ["daemon_", "lsm_file_open::"]
            .iter()
            .any(|p| row.starts_with(p))
}

/// Tests of what user space alone does with the records (the audit log's hash chain, the
/// escaping of text output): the kernel only delivers events, so the host runs them and the VM
/// boots spend their time on what differs per kernel.
fn kernel_independent(row: &str) -> bool {
    [
        "daemon_audit_chain::",
        "daemon_terminal_safety::",
        "daemon_check_config::",
    ]
    .iter()
    .any(|p| row.starts_with(p))
}

/// Real workloads that need the host's Rust toolchain (cargo, rustc, cc): the host runs them
/// (the mechanisms they rely on have their own tests on every kernel).
fn needs_host_toolchain(row: &str) -> bool {
    row.starts_with("workload_cargo_build::")
}

/// The table column (and ENFORCER_KERNEL value) of a boot.
fn column_label(series: Series, bpf_lsm: bool) -> &'static str {
    match (series, bpf_lsm) {
        (Series::V6_12, false) => "6.12-nolsm",
        (s, _) => s.label(),
    }
}

/// A kernel and an initramfs ready to boot, with the tests inside.
struct PreparedVm {
    label: &'static str,
    bpf_lsm: bool,
    kernel: kernels::Kernel,
    image: PathBuf,
    tests: Vec<KernelTest>,
    console_log: PathBuf,
    per_test_logs: PathBuf,
    /// The line the guest prints last (built into the image).
    marker: String,
    /// Holds the image; removed when the boot is done.
    _scratch: crate::project::ScratchDir,
}

/// One boot of `series` runs every kernel test; the console is split per test.
fn prepare_vm(
    project: &Project,
    series: Series,
    bpf_lsm: bool,
    binaries: &build::Binaries,
    executables: &[TestExecutable],
    tests: Vec<KernelTest>,
    args: &TestArgs,
) -> anyhow::Result<PreparedVm> {
    let label = column_label(series, bpf_lsm);
    let logs = project.test_logs_dir();
    let console_log = logs.join(format!("vm-{label}.log"));
    let per_test_logs = logs.join(format!("vm-{label}"));
    fs::create_dir_all(&per_test_logs)
        .with_context(|| format!("creating {}", per_test_logs.display()))?;
    let kernel = kernels::resolve(series, &project.cache_dir())
        .with_context(|| format!("resolving the {label} kernel"))?;

    let scratch = project
        .scratch_dir(&format!("test-{label}"))
        .context("creating a scratch directory for the initramfs")?;
    let work_dir = scratch.path();
    let script = work_dir.join("run-kernel-tests");
    fs::write(
        &script,
        kernel_tests::guest_script(&tests, Duration::from_secs(args.test_timeout)),
    )
    .with_context(|| format!("writing {}", script.display()))?;
    // Only executables with a selected test: each is tens of megabytes in the guest's RAM.
    let mut added: Vec<PathBuf> = executables
        .iter()
        .filter(|executable| {
            tests
                .iter()
                .any(|test| test.executable.path == executable.path)
        })
        .map(|executable| executable.path.clone())
        .collect();
    added.push(script);
    let command = vec!["sh".to_string(), "/add/run-kernel-tests".to_string()];
    let marker = vm::exit_marker();
    let image = initramfs::build(
        &Contents {
            enforcer: &binaries.enforcer,
            testkit: &binaries.testkit,
            policies: &project.policies_dir(),
            added: &added,
            unpacked: &[],
            kernel_label: label,
            command: &command,
            exit_marker: &marker,
        },
        work_dir,
    )?;
    Ok(PreparedVm {
        label,
        bpf_lsm,
        kernel,
        image,
        tests,
        console_log,
        per_test_logs,
        marker,
        _scratch: scratch,
    })
}

/// (row, outcome, log) of every test of one boot.
type BootResults = Vec<(String, Outcome, PathBuf)>;

/// Boot every prepared VM, `jobs` at a time, in the given order; results in the same order.
fn boot_all(
    prepared: Vec<PreparedVm>,
    jobs: usize,
    args: &TestArgs,
) -> Vec<(PreparedVm, BootResults)> {
    let queue = std::sync::Mutex::new(
        prepared
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some((index, vm)) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let results = boot_prepared(&vm, args);
                done.lock().expect("results").push((index, vm, results));
            });
        }
    });
    let mut done = done.into_inner().expect("results");
    done.sort_by_key(|(index, _, _)| *index);
    done.into_iter()
        .map(|(_, vm, results)| (vm, results))
        .collect()
}

fn boot_prepared(vm: &PreparedVm, args: &TestArgs) -> BootResults {
    let label = vm.label;
    println!(
        "booting {} under QEMU to run {} kernel test(s), console log: {}",
        vm.kernel.package,
        vm.tests.len(),
        vm.console_log.display()
    );
    let mut console = String::new();
    let boot = vm::boot(
        &Boot {
            kernel: &vm.kernel,
            initrd: &vm.image,
            bpf_lsm: vm.bpf_lsm,
            apparmor: false,
            timeout: Duration::from_secs(args.vm_timeout),
            exit_marker: &vm.marker,
        },
        &mut |_phase, line| {
            console.push_str(line);
            console.push('\n');
        },
    );
    if let Err(err) = kernel_tests::write_log(&vm.console_log, &console) {
        eprintln!("kernel {label}: {err:#}");
    }
    match &boot {
        Ok(status) => println!(
            "kernel {label}: booted, ran the tests and powered off in {:.1} s",
            status.elapsed.as_secs_f64()
        ),
        Err(err) => println!("kernel {label}: {err}"),
    }
    let results = kernel_tests::split_console(&console, vm.tests.len());
    let mut out = Vec::new();
    for (index, test) in vm.tests.iter().enumerate() {
        let log = vm.per_test_logs.join(test.log_name());
        if let Err(err) = kernel_tests::write_log(&log, &results.outputs[index]) {
            eprintln!("kernel {label}: {err:#}");
        }
        let outcome = kernel_tests::guest_outcome(&results, index, test);
        let log = if results.finished[index] {
            log
        } else {
            vm.console_log.clone()
        };
        out.push((test.row.clone(), outcome, log));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::skip_reason;

    fn runs(row: &str, bpf_lsm: bool) -> bool {
        skip_reason(row, bpf_lsm).is_none()
    }

    #[test]
    fn each_boot_runs_what_its_kernel_proves() {
        // BPF LSM kernels: LSM, daemon, identity and the fallback's verifier budget.
        for row in [
            "lsm_write_ops::paths_across_mounts",
            "adversarial_paths::lsm_path_aliases",
            "daemon_api_roles::an_agent_cannot_widen_its_own_permissions",
            "subagents::lsm",
            "verifier_budget::fallback_programs_fit_the_verifier",
            "bench_quick::quick_lsm_runs_where_lsm_works",
        ] {
            assert!(runs(row, true), "{row} must run with BPF LSM");
        }
        // The fallback where it is the backend only.
        for row in [
            "fallback_differential::kernel_matches_reference_evaluator",
            "adversarial_paths::fallback_path_aliases",
            "subagents::fallback_backend",
            "bench_quick::quick_fallback_runs",
        ] {
            assert!(!runs(row, true), "{row} must not run with BPF LSM");
        }
        for row in [
            "fallback_differential::kernel_matches_reference_evaluator",
            "adversarial_paths::fallback_path_aliases",
            "subagents::fallback_backend",
            "verifier_budget::fallback_programs_fit_the_verifier",
            "daemon_reload::reloads_under_load_never_change_a_decision",
            "lsm_file_open::allow_deny_audit_detach",
        ] {
            assert!(runs(row, false), "{row} must run without BPF LSM");
        }
        for row in [
            "lsm_write_ops::paths_across_mounts",
            "subagents::lsm",
            "bench_quick::quick_fallback_runs",
        ] {
            assert!(!runs(row, false), "{row} must not run without BPF LSM");
        }
        assert!(!runs("workload_cargo_build::fallback_kill_mode", true));
        assert!(!runs("workload_cargo_build::fallback_audit_mode", false));
        // User space only: the host column alone.
        assert!(!runs(
            "daemon_audit_chain::tampering_with_the_audit_log_is_detected",
            true
        ));
        assert!(!runs(
            "daemon_audit_chain::tampering_with_the_audit_log_is_detected",
            false
        ));
    }
}
