//! Reading libtest's output: the test list, and the outcome of running one test by exact name.
//!
//! Each kernel test runs alone (`--exact NAME --test-threads=1 --nocapture`), so its outcome is
//! read from libtest's closing `test result:` line, which comes after everything the test itself
//! printed, plus the `ENFORCER-NA <name>: <reason>` line a test prints when the kernel cannot do
//! what it tests (it still passes: it asserted that the limitation is detected).

/// Prefix of the line the kernel tests' helper prints for "not applicable on this kernel".
pub const NOT_APPLICABLE_PREFIX: &str = "ENFORCER-NA ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Passed by detecting and reporting that this kernel can't run it.
    NotApplicable(String),
    Ignored,
    Fail(String),
}

/// Test names from `<binary> --list`: lines `<name>: test` (benchmarks are skipped).
pub fn parse_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u32,
    failed: u32,
    ignored: u32,
}

/// `test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.01s`
fn parse_result_line(output: &str) -> Option<Counts> {
    let line = output
        .lines()
        .rev()
        .find_map(|line| line.split_once("test result: ").map(|(_, rest)| rest))?;
    let (_, counts) = line.split_once(". ")?;
    let mut parsed = Counts::default();
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(number), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse() else { continue };
        match kind {
            "passed" => parsed.passed = number,
            "failed" => parsed.failed = number,
            "ignored" => parsed.ignored = number,
            _ => {}
        }
    }
    Some(parsed)
}

/// What the `ENFORCER-NA` lines of one test's output say.
#[derive(Debug, PartialEq, Eq)]
enum NotApplicableLine {
    None,
    /// `ENFORCER-NA <this test>: <reason>`; the name may carry the executable's name in front
    /// (`<target>::<test>`).
    Ours(String),
    /// A line naming some other test: the helper that printed it is confused, which must not
    /// pass silently.
    Foreign(String),
}

/// The line may follow libtest's `test <name> ... ` on the same line (output is not captured).
fn not_applicable_line(output: &str, test: &str) -> NotApplicableLine {
    let qualified_suffix = format!("::{test}");
    let mut foreign = None;
    for line in output.lines() {
        let Some((_, rest)) = line.split_once(NOT_APPLICABLE_PREFIX) else {
            continue;
        };
        let Some((name, reason)) = rest.split_once(": ") else {
            foreign.get_or_insert_with(|| rest.trim().to_string());
            continue;
        };
        if name == test || name.ends_with(&qualified_suffix) {
            return NotApplicableLine::Ours(reason.trim().to_string());
        }
        foreign.get_or_insert_with(|| name.to_string());
    }
    foreign.map_or(NotApplicableLine::None, NotApplicableLine::Foreign)
}

/// The outcome of `<binary> --exact <test>`, from its output and exit status (None: it did not
/// exit normally, e.g. killed by a signal or a time limit).
pub fn classify(output: &str, exit_code: Option<i32>, test: &str) -> Outcome {
    let Some(code) = exit_code else {
        return Outcome::Fail("killed (signal or time limit)".into());
    };
    let Some(counts) = parse_result_line(output) else {
        return Outcome::Fail(format!(
            "exited with status {code} without a libtest result line (crashed?)"
        ));
    };
    if counts.failed > 0 || code != 0 {
        return Outcome::Fail(format!("exit status {code}"));
    }
    match (counts.passed, counts.ignored) {
        (1, 0) => match not_applicable_line(output, test) {
            NotApplicableLine::Ours(reason) => Outcome::NotApplicable(reason),
            NotApplicableLine::None => Outcome::Pass,
            NotApplicableLine::Foreign(name) => Outcome::Fail(format!(
                "printed `{NOT_APPLICABLE_PREFIX}{name}: ...` but the test is `{test}`"
            )),
        },
        (0, 1) => Outcome::Ignored,
        (passed, ignored) => Outcome::Fail(format!(
            "expected exactly one test to run, libtest reported {passed} passed, {ignored} ignored"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "lsm_file_open::denies_registered_process";

    #[test]
    fn list_keeps_tests_and_drops_benchmarks_and_totals() {
        let output = "lsm_file_open::denies_registered_process: test\nhelpers::bench_x: benchmark\nprobe::reports: test\n\n2 tests, 1 benchmark\n";
        assert_eq!(
            parse_list(output),
            vec![NAME.to_string(), "probe::reports".to_string()]
        );
    }

    #[test]
    fn passing_test_is_pass() {
        let output = format!("\nrunning 1 test\ntest {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; finished in 0.20s\n\n");
        assert_eq!(classify(&output, Some(0), NAME), Outcome::Pass);
    }

    #[test]
    fn not_applicable_line_interleaved_with_libtest_output() {
        let output = format!(
            "\nrunning 1 test\ntest {NAME} ... ENFORCER-NA {NAME}: BPF LSM programs cannot load here (EPERM)\nok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n"
        );
        assert_eq!(
            classify(&output, Some(0), NAME),
            Outcome::NotApplicable("BPF LSM programs cannot load here (EPERM)".into())
        );
    }

    #[test]
    fn not_applicable_line_naming_another_test_fails() {
        let output = "ENFORCER-NA other::test: nope\ntest x ... ok\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
        assert!(matches!(classify(output, Some(0), "x"), Outcome::Fail(_)));
    }

    #[test]
    fn not_applicable_line_may_name_the_executable_too() {
        let output = format!("ENFORCER-NA lsm::{NAME}: no BPF LSM\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n");
        assert_eq!(
            classify(&output, Some(0), NAME),
            Outcome::NotApplicable("no BPF LSM".into())
        );
    }

    #[test]
    fn failing_test_is_fail_even_if_it_claimed_not_applicable() {
        let output = format!("test {NAME} ... ENFORCER-NA {NAME}: x\nthread 'main' panicked at tests/src/lib.rs:1:1:\nboom\nFAILED\n\nfailures:\n    {NAME}\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n");
        assert!(matches!(
            classify(&output, Some(101), NAME),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn ignored_test_is_ignored() {
        let output = format!("test {NAME} ... ignored\n\ntest result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n");
        assert_eq!(classify(&output, Some(0), NAME), Outcome::Ignored);
    }

    #[test]
    fn crash_without_result_line_fails() {
        assert!(matches!(
            classify("test x ... ", Some(134), "x"),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            classify("test x ... ", None, "x"),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn test_that_matched_nothing_fails() {
        let output = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n";
        assert!(matches!(
            classify(output, Some(0), "gone"),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn test_output_that_looks_like_a_result_line_earlier_does_not_win() {
        let output = "test x ... test result: ok. 5 passed; 0 failed; 0 ignored;\nFAILED\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
        assert!(matches!(classify(output, Some(101), "x"), Outcome::Fail(_)));
    }
}
