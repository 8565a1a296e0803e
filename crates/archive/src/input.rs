//! Where an archive is read from: a path (file or directory) or standard input.

use std::path::PathBuf;

/// Where the archive comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file (tar, possibly compressed) or a directory (OCI layout, `dir:` transport, extracted archive).
    Path(PathBuf),
    /// Standard input, read once.
    Stdin,
}

impl Input {
    /// `-` means standard input.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    /// How messages name it.
    pub fn display(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}
