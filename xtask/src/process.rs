//! Running external programs with errors that say what was run and how it failed.

use std::process::{Command, ExitStatus, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`{command}` printed output that is not UTF-8")]
    NotUtf8 { command: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(":\n{trimmed}")
    }
}

/// `program arg1 arg2` for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs with inherited stdio; fails unless the exit status is 0.
pub fn run(command: &mut Command) -> Result<(), ProcessError> {
    let status = status(command)?;
    if status.success() {
        Ok(())
    } else {
        Err(ProcessError::Failed {
            command: describe(command),
            status,
            stderr: String::new(),
        })
    }
}

/// Runs with inherited stdio and returns the exit status, whatever it is.
pub fn status(command: &mut Command) -> Result<ExitStatus, ProcessError> {
    command.status().map_err(|source| ProcessError::Spawn {
        command: describe(command),
        source,
    })
}

/// Runs and returns stdout; fails (quoting stderr) unless the exit status is 0.
pub fn stdout(command: &mut Command) -> Result<String, ProcessError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProcessError::Spawn {
            command: describe(command),
            source,
        })?;
    if !output.status.success() {
        return Err(ProcessError::Failed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    String::from_utf8(output.stdout).map_err(|_| ProcessError::NotUtf8 {
        command: describe(command),
    })
}
