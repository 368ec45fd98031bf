//! Diagnostics: every policy error as `file:line:col: message`, followed (when the error has a
//! position) by the offending source line and a caret under the offending text, like rustc.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

/// One policy file's text, kept so diagnostics can quote the offending line.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as the user named it (joined onto the directory argument): used in messages.
    pub path: PathBuf,
    pub text: Arc<str>,
    /// Byte offset where each line starts, so positions cost a binary search, not a scan (a
    /// 100,000-rule file asks for 100,000 of them).
    line_starts: Arc<[usize]>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line as u32, col as u32)
    }

    /// A diagnostic pointing at `span` (byte offsets into this file).
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let end = floor_char_boundary(&self.text, span.end.clamp(start, self.text.len()));
        let (line, col) = self.line_col(start);
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let source_line = self.text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        // The caret covers the span, but never runs past the first line of a multi-line span.
        let caret_len = self.text[start..end.min(line_end)].chars().count().max(1) as u32;
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
            source_line: Some(source_line),
            caret_len,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One error. `line`/`col` are 1-based; 0 means the error concerns the whole file (missing file,
/// unreadable directory) and has no source line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// The offending line, when the error has a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// How many characters the caret underlines.
    #[serde(skip)]
    pub caret_len: u32,
}

impl Diagnostic {
    /// An error about a file as a whole (no position).
    pub fn file_error(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            source_line: None,
            caret_len: 0,
        }
    }

    /// The first line of the rendering: `file:line:col: message` (or `file: message`).
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file.display(), self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        if let Some(source_line) = &self.source_line {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            // Tabs before the caret are kept so the caret lines up under the text.
            let lead: String = source_line
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{gutter} | {source_line}")?;
            writeln!(
                f,
                "{pad} | {lead}{}",
                "^".repeat(self.caret_len.max(1) as usize)
            )?;
        }
        Ok(())
    }
}

/// Every error found in one load or compile, in file order. Never empty when returned as an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(ToString::to_string).collect()
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// `Err(self)` if any error was recorded, else `Ok(value)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
    /// The headlines only, one per line (handy in tests and logs).
    pub fn headlines(&self) -> Vec<String> {
        self.0.iter().map(Diagnostic::headline).collect()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_headline_source_line_and_caret() {
        let src = SourceFile::new("p.toml".into(), "[agent]\nname = \"bad name\"\n");
        let d = src.error(15..25, "invalid agent name");
        assert_eq!(d.headline(), "p.toml:2:8: invalid agent name");
        assert_eq!(
            d.to_string(),
            "p.toml:2:8: invalid agent name\n2 | name = \"bad name\"\n  |        ^^^^^^^^^^\n"
        );
    }

    #[test]
    fn file_errors_have_no_position() {
        let d = Diagnostic::file_error(Path::new("x.toml"), "cannot read: gone");
        assert_eq!(d.to_string(), "x.toml: cannot read: gone\n");
    }
}
