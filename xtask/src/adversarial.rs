//! The adversarial suite's case x backend x kernel table (docs/testing.md, "The adversarial suite"). The kernel tests print one
//! line per case after its assertions held (tests/src/adversarial.rs):
//! `ADVERSARIAL <case> <backend> pass` or `ADVERSARIAL <case> <backend> limitation: <why>`.
//! This collects them from every test's output in every column and renders the table printed
//! after the test x kernel one.
//!
//! A case without a line in a column takes the cell of the test that printed it elsewhere:
//! `FAIL` if that test failed there (it stopped at the failed case), `n/a` / `-` if it was not
//! applicable or not run, `no line` if it passed without printing the case.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use crate::summary::{Cell, Summary, COLUMNS};

/// Prefix of the lines the kernel tests print.
pub const PREFIX: &str = "ADVERSARIAL ";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Limitation(String),
}

#[derive(Debug, Default)]
struct Case {
    /// Test rows (`<target>::<test>`) that printed this case, in any column.
    tests: BTreeSet<String>,
    cells: [Option<Verdict>; COLUMNS.len()],
}

#[derive(Debug, Default)]
pub struct AdversarialTable {
    /// (case, backend) -> what each column said.
    cases: BTreeMap<(String, String), Case>,
}

/// `<case> <backend> pass` / `<case> <backend> limitation: <why>` (after the prefix).
fn parse_line(rest: &str) -> Option<(String, String, Verdict)> {
    let mut words = rest.splitn(3, ' ');
    let (case, backend, verdict) = (words.next()?, words.next()?, words.next()?.trim());
    let result = if verdict == "pass" {
        Verdict::Pass
    } else {
        Verdict::Limitation(verdict.strip_prefix("limitation:")?.trim().to_string())
    };
    Some((case.to_string(), backend.to_string(), result))
}

/// Case names start with the case number (`6-path-alias/symlink`): sort by it.
fn case_order(case: &str) -> (u32, &str) {
    let number = case
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    (number, case)
}

impl AdversarialTable {
    /// Take the ADVERSARIAL lines of one test's output (`row` in `column`).
    pub fn collect(&mut self, row: &str, column: &str, output: &str) {
        let index = COLUMNS
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("unknown summary column {column}"));
        for line in output.lines() {
            // The VM console may end lines with \r, or put the line after other output.
            let Some((_, rest)) = line.trim_end_matches('\r').split_once(PREFIX) else {
                continue;
            };
            let Some((case, backend, result)) = parse_line(rest) else {
                continue;
            };
            let entry = self.cases.entry((case, backend)).or_default();
            entry.tests.insert(row.to_string());
            entry.cells[index] = Some(result);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// The table and, below it, each distinct limitation with its reason.
    pub fn render(&self, summary: &Summary) -> String {
        let mut keys: Vec<&(String, String)> = self.cases.keys().collect();
        keys.sort_by(|a, b| (case_order(&a.0), &a.1).cmp(&(case_order(&b.0), &b.1)));
        let rows: Vec<[String; 2 + COLUMNS.len()]> = keys
            .iter()
            .map(|key| {
                let case = &self.cases[*key];
                let mut row: [String; 2 + COLUMNS.len()] = Default::default();
                row[0] = key.0.clone();
                row[1] = key.1.clone();
                for (i, cell) in row[2..].iter_mut().enumerate() {
                    *cell = self.cell(key, case, i, summary);
                }
                row
            })
            .collect();
        let mut header: [String; 2 + COLUMNS.len()] = Default::default();
        header[0] = "adversarial case".into();
        header[1] = "backend".into();
        for (i, column) in COLUMNS.iter().enumerate() {
            header[2 + i] = column.to_string();
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .chain(std::iter::once(&header))
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(text.join(" | ").trim_end());
            out.push('\n');
        };
        line(&header);
        line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for row in &rows {
            line(row);
        }
        let mut reasons = BTreeSet::new();
        for key in &keys {
            for cell in self.cases[*key].cells.iter().flatten() {
                if let Verdict::Limitation(why) = cell {
                    reasons.insert((case_order(&key.0), key.1.clone(), why.clone()));
                }
            }
        }
        for ((_, case), backend, why) in reasons {
            let _ = writeln!(out, "limitation {case} ({backend}): {why}");
        }
        out
    }

    fn cell(
        &self,
        key: &(String, String),
        case: &Case,
        column: usize,
        summary: &Summary,
    ) -> String {
        match &case.cells[column] {
            Some(Verdict::Pass) => return "pass".into(),
            Some(Verdict::Limitation(_)) => return "limitation".into(),
            None => {}
        }
        // A test that picks its backend by kernel (the daemon's `auto`) printed this case for
        // another backend here.
        let other_backend = self.cases.iter().any(|((c, b), other)| {
            *c == key.0
                && *b != key.1
                && other.cells[column].is_some()
                && !other.tests.is_disjoint(&case.tests)
        });
        if other_backend {
            return "-".into();
        }
        let test_cells: Vec<&Cell> = summary
            .rows
            .iter()
            .filter(|row| case.tests.contains(&row.name))
            .map(|row| &row.cells[column])
            .collect();
        if test_cells.contains(&&Cell::Fail) {
            "FAIL".into()
        } else if test_cells.contains(&&Cell::Pass) {
            "no line".into()
        } else if test_cells
            .iter()
            .any(|c| matches!(c, Cell::NotApplicable(r) if !r.starts_with("not run")))
        {
            "n/a".into()
        } else {
            "-".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Row;

    #[test]
    fn lines_become_cells_and_missing_lines_take_the_test_cell() {
        let mut table = AdversarialTable::default();
        let host = "fallback backend loaded\nADVERSARIAL 6-path-alias/symlink fallback pass\n\
                    ADVERSARIAL 6-path-alias/bind-mount fallback limitation: mount(2) is not hooked\n";
        table.collect("adversarial_paths::fallback_path_aliases", "host", host);
        let vm = "noise ADVERSARIAL 6-path-alias/symlink fallback pass\r\n";
        table.collect("adversarial_paths::fallback_path_aliases", "6.12", vm);
        table.collect(
            "adversarial_net::lsm_unix",
            "6.1",
            "ADVERSARIAL 10-unix/abstract lsm pass\n",
        );
        table.collect("x::y", "6.1", "ADVERSARIAL broken\nADVERSARIAL a b maybe\n");
        // A test whose backend depends on the kernel: the other backend's row is "-" there.
        table.collect("d::auto", "host", "ADVERSARIAL 11-tamper/x fallback pass\n");
        table.collect("d::auto", "6.1", "ADVERSARIAL 11-tamper/x lsm pass\n");

        let mut paths = Row::new("adversarial_paths::fallback_path_aliases", "not run");
        paths.set("host", Cell::Pass);
        paths.set("6.12", Cell::Fail);
        paths.set("6.1", Cell::Pass);
        let mut net = Row::new("adversarial_net::lsm_unix", "not run");
        net.set("host", Cell::NotApplicable("BPF LSM unusable".into()));
        net.set("6.1", Cell::Pass);
        let mut auto = Row::new("d::auto", "not run");
        auto.set("host", Cell::Pass);
        auto.set("6.1", Cell::Pass);
        let summary = Summary {
            rows: vec![paths, net, auto],
        };
        let text = table.render(&summary);
        let lines: Vec<&str> = text.lines().collect();
        let cells = |line: &str| {
            line.split('|')
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[0]),
            [
                "adversarial case",
                "backend",
                "host",
                "6.1",
                "6.12",
                "6.12-nolsm"
            ]
        );
        // Case numbers sort numerically: 6 before 10.
        assert_eq!(
            cells(lines[2]),
            [
                "6-path-alias/bind-mount",
                "fallback",
                "limitation",
                "no line",
                "FAIL",
                "-"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            [
                "6-path-alias/symlink",
                "fallback",
                "pass",
                "no line",
                "pass",
                "-"
            ]
        );
        assert_eq!(
            cells(lines[4]),
            ["10-unix/abstract", "lsm", "n/a", "pass", "-", "-"]
        );
        assert_eq!(
            cells(lines[5]),
            ["11-tamper/x", "fallback", "pass", "-", "-", "-"]
        );
        assert_eq!(
            cells(lines[6]),
            ["11-tamper/x", "lsm", "-", "pass", "-", "-"]
        );
        assert_eq!(lines.len(), 8, "malformed lines are ignored:\n{text}");
        assert_eq!(
            lines[7],
            "limitation 6-path-alias/bind-mount (fallback): mount(2) is not hooked"
        );
    }
}
