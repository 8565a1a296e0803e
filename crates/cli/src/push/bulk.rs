//! What `layerlift-push --all` shows of each image ([`Event::Image`]): one line per image on
//! stderr (pushed, already there, would push, skipped; failed ones as errors, even with `-q`), and
//! the tally behind the summary line and the exit code.

use layerlift_push::{Event, ImageStatus};
use std::sync::Mutex;

/// The images of a push under own names, counted as their events come.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    pushed: usize,
    present: usize,
    would_push: usize,
    skipped: usize,
    /// Each failed image, as the exit message names it.
    failed: Vec<String>,
}

/// How a line names an image: its name in SOURCE, else its digest.
fn label(name: Option<&String>, digest: &layerlift_manifest::Digest) -> String {
    name.map_or_else(|| digest.to_string(), String::clone)
}

/// One image's line and whether it is an error; `None` for other events.
pub fn line(event: &Event) -> Option<(String, bool)> {
    let Event::Image {
        name,
        digest,
        reference,
        status,
        rule,
        error,
    } = event
    else {
        return None;
    };
    let what = label(name.as_ref(), digest);
    let to = reference
        .as_ref()
        .map(|r| format!(" -> {r}"))
        .unwrap_or_default();
    let by = rule
        .as_ref()
        .map(|r| format!(" (--map {r})"))
        .unwrap_or_default();
    let why = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
    Some(match status {
        ImageStatus::Pushed => (format!("pushed {what}{to}{by}"), false),
        ImageStatus::Present => (format!("already there: {what}{to}{by}"), false),
        ImageStatus::WouldPush => (format!("would push {what}{to}{by}"), false),
        ImageStatus::Skipped => (format!("skipped {what}{why}"), false),
        ImageStatus::Failed => (format!("{what}{to}{by} failed{why}"), true),
    })
}

impl Tally {
    /// Count `event` when it is an image's.
    pub fn count(&self, event: &Event) {
        let Event::Image {
            name,
            digest,
            reference,
            status,
            ..
        } = event
        else {
            return;
        };
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match status {
            ImageStatus::Pushed => c.pushed += 1,
            ImageStatus::Present => c.present += 1,
            ImageStatus::WouldPush => c.would_push += 1,
            ImageStatus::Skipped => c.skipped += 1,
            ImageStatus::Failed => c.failed.push(match reference {
                Some(r) => format!("{} ({r})", label(name.as_ref(), digest)),
                None => label(name.as_ref(), digest),
            }),
        }
    }

    /// `N images: a pushed, b already there, …`; `None` when no image was counted.
    pub fn summary(&self) -> Option<String> {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let parts = [
            (c.pushed, "pushed"),
            (c.present, "already there"),
            (c.would_push, "would be pushed"),
            (c.skipped, "skipped"),
            (c.failed.len(), "failed"),
        ];
        let total: usize = parts.iter().map(|(n, _)| n).sum();
        if total == 0 {
            return None;
        }
        let said: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let plural = if total == 1 { "" } else { "s" };
        Some(format!("{total} image{plural}: {}", said.join(", ")))
    }

    /// The images that failed, for the exit message.
    pub fn failed(&self) -> Vec<String> {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.failed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerlift_manifest::Digest;

    fn image(name: Option<&str>, status: ImageStatus, error: Option<&str>) -> Event {
        Event::Image {
            name: name.map(str::to_string),
            digest: Digest::of(name.unwrap_or("x").as_bytes()),
            reference: name.map(|n| format!("reg/{n}")),
            status,
            rule: None,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn lines_and_summary() {
        let t = Tally::default();
        assert_eq!(t.summary(), None);
        let events = [
            image(Some("a:1"), ImageStatus::Pushed, None),
            image(Some("b:1"), ImageStatus::Present, None),
            image(Some("c:1"), ImageStatus::Failed, Some("denied")),
            image(None, ImageStatus::Failed, Some("it has no name")),
        ];
        for e in &events {
            t.count(e);
        }
        assert_eq!(
            line(&events[0]),
            Some(("pushed a:1 -> reg/a:1".to_string(), false))
        );
        assert_eq!(
            line(&events[2]),
            Some(("c:1 -> reg/c:1 failed: denied".to_string(), true))
        );
        assert_eq!(
            t.summary().unwrap(),
            "4 images: 1 pushed, 1 already there, 2 failed"
        );
        let failed = t.failed();
        assert_eq!(failed[0], "c:1 (reg/c:1)");
        assert!(failed[1].starts_with("sha256:"), "{failed:?}");
    }
}
