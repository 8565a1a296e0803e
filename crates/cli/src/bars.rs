//! The one way the binaries draw a byte-counting progress bar (indicatif) on standard error.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// A bar of `len` bytes added to `multi`, drawn with `template` (indicatif's syntax, `[{bar}]`
/// filled with `=>`), showing `prefix`.
pub fn add(multi: &MultiProgress, len: u64, template: &str, prefix: String) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = multi.add(ProgressBar::new(len));
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}
