//! Exit codes and the one-line error report shared by every binary.

use std::process::ExitCode;

/// The job failed (bad input, I/O, registry refused...).
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap also uses 2).
pub const USAGE: u8 = 2;

/// Print `error: ...` as one line ([`one_line`]) to stderr, return exit code 1.
pub fn report(program: &str, err: &anyhow::Error) -> ExitCode {
    eprintln!("{program}: error: {}", one_line(err));
    ExitCode::from(FAILURE)
}

/// The error chain as one line, causes joined with `: ` (a cause whose text the line already
/// holds is left out).
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for (i, cause) in err.chain().enumerate() {
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
