//! The test x kernel table and the closing `N passed, N failed` line.

use std::fmt::Write as _;

/// The table's columns, in order.
pub const COLUMNS: [&str; 4] = ["host", "6.1", "6.12", "6.12-nolsm"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Pass,
    Fail,
    /// Not applicable on this kernel, with the reason (including "not run" for skipped columns).
    NotApplicable(String),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Pass => "pass".into(),
            Cell::Fail => "FAIL".into(),
            Cell::NotApplicable(reason) => format!("n/a ({reason})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub cells: [Cell; COLUMNS.len()],
}

impl Row {
    /// Every cell starts as "not run" with the given reason.
    pub fn new(name: impl Into<String>, not_run_reason: &str) -> Self {
        let cell = Cell::NotApplicable(not_run_reason.to_string());
        Self {
            name: name.into(),
            cells: std::array::from_fn(|_| cell.clone()),
        }
    }

    pub fn set(&mut self, column: &str, cell: Cell) {
        let index = COLUMNS
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("unknown summary column {column}"));
        self.cells[index] = cell;
    }

    /// A row that neither passed nor failed anywhere verified nothing: that is a failure.
    fn ran_nowhere(&self) -> bool {
        self.cells
            .iter()
            .all(|cell| matches!(cell, Cell::NotApplicable(_)))
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub rows: Vec<Row>,
}

impl Summary {
    pub fn passed(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|row| &row.cells)
            .filter(|cell| **cell == Cell::Pass)
            .count()
    }

    /// Failed cells, plus one for each row that ran nowhere.
    pub fn failed(&self) -> usize {
        let cells = self
            .rows
            .iter()
            .flat_map(|row| &row.cells)
            .filter(|cell| **cell == Cell::Fail)
            .count();
        cells + self.rows.iter().filter(|row| row.ran_nowhere()).count()
    }

    /// The table, the "ran nowhere" notes, and as the last line `N passed, N failed` (`test`
    /// prints another table between the two parts).
    #[cfg(test)]
    pub fn render(&self) -> String {
        format!("{}{}", self.render_table(), self.render_footer())
    }

    /// The test x kernel table.
    pub fn render_table(&self) -> String {
        let name_width = self
            .rows
            .iter()
            .map(|row| row.name.len())
            .chain(std::iter::once("test".len()))
            .max()
            .unwrap_or(4);
        let widths: Vec<usize> = (0..COLUMNS.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|row| row.cells[i].text().len())
                    .chain(std::iter::once(COLUMNS[i].len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |name: &str, cells: &[String]| {
            let mut text = format!("{name:<name_width$}");
            for (cell, width) in cells.iter().zip(&widths) {
                let _ = write!(text, " | {cell:<width$}");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line("test", &COLUMNS.map(str::to_string));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&"-".repeat(name_width), &rule);
        for row in &self.rows {
            line(&row.name, &row.cells.clone().map(|cell| cell.text()));
        }
        out
    }

    /// The "ran nowhere" notes and, as the last line, `N passed, N failed`.
    pub fn render_footer(&self) -> String {
        let mut out = String::new();
        for row in self.rows.iter().filter(|row| row.ran_nowhere()) {
            let _ = writeln!(
                out,
                "FAIL {}: ran nowhere (n/a on every kernel it was run on)",
                row.name
            );
        }
        let _ = write!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cells: [Cell; 4]) -> Row {
        Row {
            name: name.into(),
            cells,
        }
    }

    #[test]
    fn counts_cells_and_rows_that_ran_nowhere() {
        let na = |r: &str| Cell::NotApplicable(r.into());
        let summary = Summary {
            rows: vec![
                row(
                    "unit tests",
                    [
                        Cell::Pass,
                        na("host only"),
                        na("host only"),
                        na("host only"),
                    ],
                ),
                row(
                    "kernel::lsm",
                    [
                        na("no BPF LSM"),
                        Cell::Pass,
                        Cell::Fail,
                        na("lsm= lacks bpf"),
                    ],
                ),
                row("kernel::nowhere", [na("a"), na("b"), na("c"), na("d")]),
            ],
        };
        assert_eq!(summary.passed(), 2);
        assert_eq!(
            summary.failed(),
            2,
            "one FAIL cell plus one row that ran nowhere"
        );
        let text = summary.render();
        assert!(
            text.ends_with("\n2 passed, 2 failed"),
            "last line must be the count:\n{text}"
        );
        assert!(text.contains("FAIL kernel::nowhere: ran nowhere"), "{text}");
        let header = text.lines().next().expect("header line");
        assert_eq!(
            header.split('|').map(str::trim).collect::<Vec<_>>(),
            ["test", "host", "6.1", "6.12", "6.12-nolsm"]
        );
        assert!(text.contains("n/a (no BPF LSM)"), "{text}");
    }

    #[test]
    fn empty_summary_still_ends_with_the_count() {
        assert!(Summary::default()
            .render()
            .ends_with("\n0 passed, 0 failed"));
    }
}
