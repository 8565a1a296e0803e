//! What `layerlift-push` shows of a push's [`Event`]s and [`Progress`] (the library reports data;
//! the sentences are written here): plain lines or JSON events on stdout, notes on stderr,
//! progress bars (overall and per blob, with bytes/s) on stderr only when it is a terminal and
//! neither `-q` nor `--json` is given.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use layerlift_manifest::Digest;
use layerlift_push::{BlobAction, Event, Observer, Progress};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// The observer of `layerlift-push`: stdout and stderr.
pub struct Output {
    json: bool,
    quiet: bool,
    bars: Option<MultiProgress>,
    total: Mutex<Option<ProgressBar>>,
    /// The bar of each blob being uploaded.
    blob_bars: Mutex<BTreeMap<Digest, ProgressBar>>,
    stdout: Mutex<()>,
    /// The images of a push under own names (`--all`), as their events come.
    pub tally: super::bulk::Tally,
}

impl Observer for Output {
    fn event(&self, event: &Event) {
        match event {
            Event::Tag {
                reference,
                digest,
                dry_run,
            } => match dry_run {
                Some(true) => self.plain(&format!("would push {reference}@{digest}")),
                _ => self.plain(&format!("{reference}@{digest}")),
            },
            Event::Untagged { reference, .. } => {
                self.plain(reference);
                // The `result` event lists it.
                return;
            }
            Event::NewIndex {
                original,
                digest,
                dropped,
                ..
            } => self.notice(&format!(
                "pushing a new index {digest} in place of {original} (a new digest), without: {}",
                dropped.join("; ")
            )),
            Event::Referrers {
                subject,
                referrers,
                tag,
                ..
            } => self.notice(&match tag {
                Some(tag) => format!(
                    "pushed {} referrer(s) of {subject}, listed under the tag {tag} (the registry has no referrers API)",
                    referrers.len()
                ),
                None => format!(
                    "pushed {} referrer(s) of {subject}, listed by the registry's referrers API",
                    referrers.len()
                ),
            }),
            Event::ReferrerLeftOut { referrer, subject } => self.notice(&format!(
                "not pushing {referrer}, a referrer of {subject}: that manifest is not pushed (another image, or an archive's image whose layers are compressed on the way, which gives it a new digest: --compression none keeps it)"
            )),
            Event::Blob {
                action: BlobAction::WouldUpload,
                digest,
                size,
                ..
            } => self.plain(&format!("would upload {digest} ({size} bytes)")),
            Event::Blob {
                action: BlobAction::WouldMount { from },
                digest,
                ..
            } => self.plain(&format!("would mount {digest} from {from}")),
            Event::Image { .. } => {
                self.tally.count(event);
                match super::bulk::line(event) {
                    Some((line, true)) => self.error(&line),
                    Some((line, false)) => self.notice(&line),
                    None => {}
                }
            }
            Event::NotArchive { path, reason } => {
                self.warning(&format!("skipping {path}, not an archive: {reason}"))
            }
            Event::CacheUnused { path, reason } => self.warning(&format!(
                "not using the cache directory {path}: {reason} (give a private one with --cache-dir)"
            )),
            _ => self.note(event),
        }
        if self.json {
            // Through a `Value`: its keys come out sorted, as they always have.
            match serde_json::to_value(event) {
                Ok(line) => self.print(&line.to_string()),
                Err(e) => eprintln!("layerlift-push: cannot print an event: {e}"),
            }
        }
    }

    fn progress(&self, progress: &Progress) {
        match progress {
            Progress::Started { repository } => self.start_total(0, repository),
            Progress::Queued { bytes } => self.grow_total(*bytes),
            Progress::Advanced { bytes } => self.advance_total(*bytes),
            Progress::BlobStarted { digest, size } => {
                if let Some(bar) = self.blob_bar(digest, *size) {
                    self.blob_bars.lock().unwrap().insert(*digest, bar);
                }
            }
            Progress::BlobSent { digest, sent } => {
                if let Some(bar) = self.blob_bars.lock().unwrap().get(digest) {
                    bar.set_position(*sent);
                }
            }
            Progress::BlobFinished { digest } => {
                if let Some(bar) = self.blob_bars.lock().unwrap().remove(digest) {
                    bar.finish_and_clear();
                }
            }
            Progress::Finished => {}
        }
    }
}

impl Output {
    /// The events said to a person only on a terminal ([`Output::message`]).
    fn note(&self, event: &Event) {
        if let Some(text) = note_text(event) {
            self.message(&text);
        }
    }

    /// Plain lines, or JSON events with `json`; nothing on stderr but errors with `quiet`.
    pub fn new(json: bool, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bars = (tty && !quiet && !json)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Output {
            json,
            quiet,
            bars,
            total: Mutex::new(None),
            blob_bars: Mutex::new(BTreeMap::new()),
            stdout: Mutex::new(()),
            tally: super::bulk::Tally::default(),
        }
    }

    fn print(&self, line: &str) {
        let _g = self.stdout.lock().unwrap();
        let write = || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        match &self.bars {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }

    /// A result line on stdout (not with `--json`).
    fn plain(&self, line: &str) {
        if !self.json {
            self.print(line);
        }
    }

    /// An error on stderr, always (`layerlift-push: error: …`): one of several destinations
    /// that failed while the others went on.
    pub fn error(&self, msg: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(format!("layerlift-push: error: {msg}"));
            }
            None => eprintln!("layerlift-push: error: {msg}"),
        }
    }

    /// A message for a person on stderr, terminal or not; not with `-q` or `--json`.
    pub fn notice(&self, msg: &str) {
        if self.quiet || self.json {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(format!("layerlift-push: {msg}"));
            }
            None => eprintln!("layerlift-push: {msg}"),
        }
    }

    /// A message for a person on stderr: only on a terminal, not with `-q` or `--json`.
    pub fn message(&self, msg: &str) {
        if self.quiet || self.json {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => {
                if std::io::stderr().is_terminal() {
                    eprintln!("{msg}");
                }
            }
        }
    }

    /// A warning: on stderr, terminal or not, unless `-q` or `--json` (which has it as an event).
    fn warning(&self, msg: &str) {
        if self.quiet || self.json {
            return;
        }
        let line = format!("layerlift-push: warning: {msg}");
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn start_total(&self, total: u64, label: &str) {
        let Some(m) = &self.bars else { return };
        let template =
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}";
        let bar = crate::bars::add(m, total, template, label.to_string());
        if let Some(old) = self.total.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }

    /// More bytes to push than the bar was started with (blobs queued as an archive is read).
    fn grow_total(&self, n: u64) {
        if let Some(b) = self.total.lock().unwrap().as_ref() {
            b.inc_length(n);
        }
    }

    fn advance_total(&self, n: u64) {
        if let Some(b) = self.total.lock().unwrap().as_ref() {
            b.inc(n);
        }
    }

    fn blob_bar(&self, d: &Digest, size: u64) -> Option<ProgressBar> {
        let m = self.bars.as_ref()?;
        let template = "  {prefix} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec}";
        let bar = crate::bars::add(m, size, template, d.short());
        Some(bar)
    }

    /// Clear the progress bars.
    pub fn finish_bars(&self) {
        if let Some(b) = self.total.lock().unwrap().take() {
            b.finish_and_clear();
        }
        if let Some(m) = &self.bars {
            let _ = m.clear();
        }
    }
}

/// The sentence for an event that is a note for a person (what is read, what is reused, retries
/// and fallbacks), or `None`.
fn note_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Reading {
            source,
            compression: Some(c),
        } => format!("reading {source} (compressing layers: {c})"),
        Event::Reading { source, .. } => format!("reading {source}"),
        Event::Reused {
            destination,
            reused,
            layers,
        } => format!("{reused} of {layers} layers are in {destination} already: not read"),
        Event::ReuseUnavailable { reason } => reason.clone(),
        Event::ReadingBack { repository, layers } => format!(
            "reading back {layers} reused layer(s) learnt outside {repository} to check them against their diff_ids"
        ),
        Event::StreamFailed { registry, error } => format!(
            "streaming a layer to {registry} failed ({error}); uploading it from the temporary layout"
        ),
        Event::Converted {
            repository,
            original,
            refused,
            error,
            digest,
            media_type,
        } => format!(
            "{repository}: the registry refused {refused} ({error}); pushed {original} as {media_type}, digest {digest}"
        ),
        Event::Blob {
            digest,
            action: BlobAction::Retried {
                delay_ms, error, ..
            },
            ..
        } => format!(
            "retrying {} in {:.1}s after: {error}",
            digest.short(),
            *delay_ms as f64 / 1000.0
        ),
        Event::Blob {
            digest,
            action: BlobAction::Recompressed { offset },
            ..
        } => format!(
            "{}: the upload goes on from byte {offset}, the layer compressed again from the archive",
            digest.short()
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_worded_from_the_events_data() {
        let reading = Event::Reading {
            source: "app.tar".into(),
            compression: Some("gzip".into()),
        };
        assert_eq!(
            note_text(&reading).as_deref(),
            Some("reading app.tar (compressing layers: gzip)")
        );
        let reused = Event::Reused {
            destination: "localhost:5000/app".into(),
            reused: 2,
            layers: 3,
        };
        assert_eq!(
            note_text(&reused).as_deref(),
            Some("2 of 3 layers are in localhost:5000/app already: not read")
        );
        let retried = Event::blob(
            BlobAction::Retried {
                attempt: 1,
                delay_ms: 1500,
                error: "HTTP 503".into(),
            },
            "app",
            Digest::of(b"x"),
            1,
        );
        let short = Digest::of(b"x").short();
        assert_eq!(
            note_text(&retried),
            Some(format!("retrying {short} in 1.5s after: HTTP 503"))
        );
        let again = Event::blob(
            BlobAction::Recompressed { offset: 1024 },
            "app",
            Digest::of(b"x"),
            1,
        );
        assert_eq!(
            note_text(&again),
            Some(format!(
                "{short}: the upload goes on from byte 1024, the layer compressed again from the archive"
            ))
        );
        let tag = Event::Tag {
            reference: "r/a:1".into(),
            digest: Digest::of(b"x"),
            dry_run: None,
        };
        assert_eq!(note_text(&tag), None, "not a note");
    }
}
