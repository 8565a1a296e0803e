//! Exit codes and the one-line error report shared by every binary.

use std::process::ExitCode;

/// The job failed (bad input, I/O, registry refused...).
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap also uses 2).
pub const USAGE: u8 = 2;

/// A command line that cannot work whatever the inputs hold (a DEST that is no reference, options
/// that exclude each other): reported like any error, but exit code [`USAGE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Print `error: ...` as one line ([`one_line`]) to stderr; return exit code 2 when the chain holds
/// a [`UsageError`], else 1.
pub fn report(program: &str, err: &anyhow::Error) -> ExitCode {
    eprintln!("{program}: error: {}", one_line(err.as_ref()));
    if err.chain().any(|c| c.is::<UsageError>()) {
        ExitCode::from(USAGE)
    } else {
        ExitCode::from(FAILURE)
    }
}

/// The error chain as one line, causes joined with `: ` (a cause whose text the line already
/// holds is left out).
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let chain = std::iter::successors(Some(err), |e| e.source());
    for (i, cause) in chain.enumerate() {
        let text = cause.to_string();
        if i > 0 {
            // Skip a cause whose text the previous message already contains.
            if line.contains(&text) {
                continue;
            }
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// Turn a step's result into the process exit code.
pub fn finish(program: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => report(program, &err),
    }
}
