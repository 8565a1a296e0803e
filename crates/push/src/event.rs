//! What a push tells its observer: [`Event`]s (one per blob, layer, manifest and tag, what is
//! read and reused, and the result) and [`Progress`] for progress bars. Events are data; the
//! caller (`crates/cli`) words them for a person.
//!
//! Events serialise (serde) to the JSON objects `layerlift-push --json` prints, one per line:
//! `{"event": "blob", "action": "uploaded", …}`.

use layerlift_manifest::Digest;
use serde::Serialize;

/// Receives what a push does, from several threads at once (the upload workers).
pub trait Observer: Sync {
    /// Something happened (see [`Event`]).
    fn event(&self, event: &Event);
    /// Bytes moved, for progress bars. Default: none.
    fn progress(&self, _progress: &Progress) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _event: &Event) {}
}

/// One thing a push did. Serialises to a JSON object whose `event` field names the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A blob of a repository: found, mounted, uploaded, … (see [`BlobAction`]).
    Blob {
        /// The repository it is pushed to.
        repository: String,
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// What happened: its `action` field, and the fields of that action.
        #[serde(flatten)]
        action: BlobAction,
    },
    /// A layer of an archive SOURCE's images, and where its blob comes from.
    Layer {
        /// The layer blob the manifest names.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// The layer's diff_id, when known.
        #[serde(rename = "diffId")]
        diff_id: Option<Digest>,
        /// Checked against the diff_id in this run (read from the archive or from the registry).
        verified: bool,
        /// Where the blob comes from.
        source: LayerSource,
        /// The repository that holds a blob taken from the registry.
        #[serde(skip_serializing_if = "Option::is_none")]
        repository: Option<String>,
    },
    /// A manifest or index stored in a repository.
    Manifest {
        /// The repository.
        repository: String,
        /// The registry's digest of it.
        digest: Digest,
        /// Its media type.
        #[serde(rename = "mediaType")]
        media_type: String,
        /// Its size in bytes.
        size: usize,
    },
    /// A tag read back after the push (or, with `dry_run`, one that would be pushed).
    Tag {
        /// `REGISTRY/REPOSITORY:TAG`.
        reference: String,
        /// The image it points at.
        digest: Digest,
        /// Only set (true) on a dry run.
        #[serde(rename = "dryRun", skip_serializing_if = "Option::is_none")]
        dry_run: Option<bool>,
    },
    /// An index of SOURCE is pushed as a new index, without entries the options left out
    /// (`--skip-absent-platforms`, `--attestations drop`): its digest changes.
    NewIndex {
        /// The repository.
        repository: String,
        /// The index SOURCE holds.
        original: Digest,
        /// The new index pushed in its place.
        digest: Digest,
        /// What was left out, one line each.
        dropped: Vec<String>,
    },
    /// Manifests whose `subject` is an image pushed (signatures, SBOMs) were pushed with it, and
    /// the registry lists them: through its referrers API, or (a registry without it) under the
    /// referrers tag schema's tag, an index of them.
    Referrers {
        /// The repository.
        repository: String,
        /// The manifest they refer to.
        subject: Digest,
        /// The referrers pushed.
        referrers: Vec<Digest>,
        /// The tag schema's tag (`sha256-<hex>`) written, or None when the registry has the
        /// referrers API.
        #[serde(skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        /// The tag's index.
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<Digest>,
    },
    /// A referrer of SOURCE is not pushed: its subject is not (another image than those pushed,
    /// or an archive's image pushed under a new digest because its layers were compressed on the
    /// way).
    ReferrerLeftOut {
        /// The referrer.
        referrer: Digest,
        /// The manifest it refers to.
        subject: Digest,
    },
    /// A request to the registry failed and is tried again.
    Retried {
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The wait before the next attempt, in milliseconds.
        #[serde(rename = "delayMs")]
        delay_ms: u64,
        /// What went wrong.
        error: String,
    },
    /// The default cache directory is not private to this user (another user could write to
    /// it): the push goes on without the layer cache and the resume journal.
    #[serde(rename = "cache-unused")]
    CacheUnused {
        /// The cache directory.
        path: String,
        /// Why it is not used, on one line.
        reason: String,
    },
    /// An archive SOURCE is being read (into push's temporary layout), its uncompressed layers
    /// compressed on the way when `compression` is set.
    Reading {
        /// SOURCE as given (`-` for standard input).
        source: String,
        /// The compression its uncompressed layers get (`gzip`, `zstd`).
        #[serde(skip_serializing_if = "Option::is_none")]
        compression: Option<String>,
    },
    /// Layers of the archive that a destination holds already are not read.
    Reused {
        /// `REGISTRY/REPOSITORY` of the destination.
        destination: String,
        /// How many of the archive's layers are not read.
        reused: usize,
        /// How many layers the archive holds.
        layers: usize,
    },
    /// What a destination holds cannot be used to reuse layers (a manifest that cannot be read,
    /// say): the push reads those layers instead.
    #[serde(rename = "reuse-unavailable")]
    ReuseUnavailable {
        /// Why, on one line.
        reason: String,
    },
    /// Reused layers learnt outside DEST's repository (`--reuse-from`, the cache) are read back
    /// from the registry and checked against their diff_ids before any manifest is pushed.
    #[serde(rename = "reading-back")]
    ReadingBack {
        /// DEST's repository.
        repository: String,
        /// How many layers are read back.
        layers: usize,
    },
    /// Streaming a layer while it was compressed failed; it goes up from the temporary layout
    /// once it is finished (and later layers go up as files if the registry refuses streams).
    #[serde(rename = "stream-failed")]
    StreamFailed {
        /// The registry.
        registry: String,
        /// What went wrong, on one line.
        error: String,
    },
    /// The registry refused a manifest's media type and `--convert-refused` pushed it converted
    /// to the other format, under a new digest.
    Converted {
        /// The repository.
        repository: String,
        /// The document as SOURCE has it.
        original: Digest,
        /// Its media type, which the registry refused.
        refused: String,
        /// The registry's answer, on one line.
        error: String,
        /// The converted document pushed.
        digest: Digest,
        /// Its media type.
        #[serde(rename = "mediaType")]
        media_type: String,
    },
    /// An image pushed by digest only (no tag). `--json` does not print it: the `result` lists it.
    Untagged {
        /// `REGISTRY/REPOSITORY@DIGEST`.
        reference: String,
        /// The image.
        digest: Digest,
    },
    /// The push is over. [`push`](crate::push) does not send it: its caller does, once it is done
    /// with the [`Report`](crate::Report) too (a file of digests written, say), so that a run has
    /// one outcome.
    Result {
        /// Whether everything was pushed.
        ok: bool,
        /// On success: whether it was a dry run.
        #[serde(rename = "dryRun", skip_serializing_if = "Option::is_none")]
        dry_run: Option<bool>,
        /// On success: the images pushed.
        #[serde(skip_serializing_if = "Option::is_none")]
        images: Option<Vec<Pushed>>,
        /// On failure: the error, on one line.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// On failure: the registry's own error code (`NAME_UNKNOWN`, `MANIFEST_INVALID`…), when
        /// a request failed with one.
        #[serde(rename = "registryCode", skip_serializing_if = "Option::is_none")]
        registry_code: Option<String>,
        /// On failure: the registry's own error message, when a request failed with one.
        #[serde(rename = "registryMessage", skip_serializing_if = "Option::is_none")]
        registry_message: Option<String>,
        /// A push to several destinations: each one's outcome, in the order given.
        #[serde(skip_serializing_if = "Option::is_none")]
        destinations: Option<Vec<DestinationOutcome>>,
    },
    /// An image of a push under own names (`all`): where it went and how, once its repository is
    /// done (or, for an image left out, once the plan is made).
    Image {
        /// Its name in SOURCE (`None`: it has none).
        name: Option<String>,
        /// Its digest in SOURCE.
        digest: Digest,
        /// `REGISTRY/REPOSITORY:TAG` (or `@DIGEST`) it went to, or would go to; `None` when left
        /// out.
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// What happened.
        status: ImageStatus,
        /// The `--map` rule that named it.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// Why it failed or was left out, on one line.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A file of a directory of archives (`all`) that is not an archive: skipped. Sent by the
    /// caller that walks the directory ([`archives_in`](crate::archives_in)).
    #[serde(rename = "not-archive")]
    NotArchive {
        /// The file.
        path: String,
        /// Why it is not read as an archive, on one line.
        reason: String,
    },
}

/// What happened to one image of a push under own names (`image` event's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    /// Pushed, and its tags read back.
    Pushed,
    /// Its tags pointed at it already: nothing was sent.
    Present,
    /// Dry run: it would be pushed.
    WouldPush,
    /// Left out: no `--map` rule names it and only mapped images are pushed.
    Skipped,
    /// Not pushed: it has no usable name, or its repository's push failed.
    Failed,
}

/// An image of a push under own names that did not get to the registry ([`Report::failed`](crate::Report::failed)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedImage {
    /// Its name in SOURCE (`None`: it has none).
    pub name: Option<String>,
    /// Its digest in SOURCE.
    pub digest: Digest,
    /// Where it was to go, when it had a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Why, on one line.
    pub error: String,
}

/// How the push to one of several destinations ended (in the `result` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationOutcome {
    /// DEST as given.
    pub destination: String,
    /// Whether everything was pushed there.
    pub ok: bool,
    /// On failure: the error, on one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On failure: the registry's own error code, when a request failed with one.
    #[serde(rename = "registryCode", skip_serializing_if = "Option::is_none")]
    pub registry_code: Option<String>,
}

impl Event {
    /// A `blob` event: `action` on the blob `digest` (`size` bytes) of `repository`.
    pub fn blob(action: BlobAction, repository: &str, digest: Digest, size: u64) -> Self {
        Event::Blob {
            repository: repository.to_string(),
            digest,
            size,
            action,
        }
    }
}

/// What happened to a blob (`blob` event's `action`), with what the action tells besides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum BlobAction {
    /// The repository has it already.
    Skipped,
    /// A non-distributable layer that is not in SOURCE: left to its own URLs.
    Foreign,
    /// Mounted from another repository of the registry.
    Mounted {
        /// The repository it was mounted from.
        from: String,
    },
    /// Dry run: it would be uploaded.
    WouldUpload,
    /// Uploaded.
    Uploaded,
    /// A request of its upload failed and is tried again.
    Retried {
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The wait before the next attempt, in milliseconds.
        #[serde(rename = "delayMs")]
        delay_ms: u64,
        /// What went wrong.
        error: String,
    },
    /// Its upload continues a session a previous run left.
    Resumed {
        /// The bytes the registry already held.
        offset: u64,
    },
    /// A layer streamed from a seekable archive without a staged copy: its upload goes on from
    /// `offset` with the layer compressed again from the archive (the bytes before `offset`
    /// compressed and hashed but not sent; the whole checked against the first pass's digest).
    Recompressed {
        /// The compressed offset the upload goes on from (what the registry holds).
        offset: u64,
    },
    /// Dry run: it would be mounted from another repository that holds it (or, in a push under
    /// own names, that an earlier repository of this push would have uploaded it to).
    WouldMount {
        /// The repository it would be mounted from.
        from: String,
    },
}

/// Where a layer's blob comes from (`layer` event's `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerSource {
    /// Read from the archive (and compressed by this push when it stores it uncompressed).
    Archive,
    /// Named by an image the registry holds.
    Registry,
    /// Named by the local layer cache.
    Cache,
    /// Named by the archive's metadata (a compressed layer whose digest is kept), not read.
    ArchiveMetadata,
}

/// One image a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// `REGISTRY/REPOSITORY:TAG`, or `REGISTRY/REPOSITORY@DIGEST` for an untagged image.
    pub reference: String,
    /// The image's digest.
    pub digest: Digest,
}

/// Bytes moved, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The uploads to `repository` start (the total is 0 and grows with [`Progress::Queued`]).
    Started {
        /// The repository.
        repository: String,
    },
    /// More bytes to push (a blob queued).
    Queued {
        /// The blob's size.
        bytes: u64,
    },
    /// Bytes done (sent, or found in the registry).
    Advanced {
        /// How many more.
        bytes: u64,
    },
    /// One blob's upload starts.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// One blob's upload has sent `sent` bytes.
    BlobSent {
        /// The blob.
        digest: Digest,
        /// Bytes sent so far.
        sent: u64,
    },
    /// One blob's upload is over.
    BlobFinished {
        /// The blob.
        digest: Digest,
    },
    /// No more bytes move (the push is over or failed).
    Finished,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: &Event) -> String {
        serde_json::to_value(e).unwrap().to_string()
    }

    /// The JSON lines `layerlift-push --json` prints (tests/e2e parse them).
    #[test]
    fn events_serialise_to_the_json_lines_of_the_cli() {
        let d = Digest::of(b"blob");
        let mounted = Event::blob(
            BlobAction::Mounted {
                from: "base".into(),
            },
            "app",
            d,
            4,
        );
        assert_eq!(
            json(&mounted),
            format!(
                r#"{{"action":"mounted","digest":"{d}","event":"blob","from":"base","repository":"app","size":4}}"#
            )
        );
        assert_eq!(
            json(&Event::blob(BlobAction::WouldUpload, "app", d, 4)),
            format!(
                r#"{{"action":"would-upload","digest":"{d}","event":"blob","repository":"app","size":4}}"#
            )
        );
        let retried = Event::blob(
            BlobAction::Retried {
                attempt: 2,
                delay_ms: 500,
                error: "HTTP 502".into(),
            },
            "app",
            d,
            4,
        );
        assert_eq!(
            json(&retried),
            format!(
                r#"{{"action":"retried","attempt":2,"delayMs":500,"digest":"{d}","error":"HTTP 502","event":"blob","repository":"app","size":4}}"#
            )
        );
        let resumed = Event::blob(BlobAction::Resumed { offset: 3 }, "app", d, 4);
        assert_eq!(
            json(&resumed),
            format!(
                r#"{{"action":"resumed","digest":"{d}","event":"blob","offset":3,"repository":"app","size":4}}"#
            )
        );
        let again = Event::blob(BlobAction::Recompressed { offset: 3 }, "app", d, 4);
        assert_eq!(
            json(&again),
            format!(
                r#"{{"action":"recompressed","digest":"{d}","event":"blob","offset":3,"repository":"app","size":4}}"#
            )
        );
        let layer = Event::Layer {
            digest: d,
            size: 4,
            diff_id: None,
            verified: true,
            source: LayerSource::ArchiveMetadata,
            repository: None,
        };
        assert_eq!(
            json(&layer),
            format!(
                r#"{{"diffId":null,"digest":"{d}","event":"layer","size":4,"source":"archive-metadata","verified":true}}"#
            )
        );
        let tag = Event::Tag {
            reference: "r/app:1".into(),
            digest: d,
            dry_run: Some(true),
        };
        assert_eq!(
            json(&tag),
            format!(r#"{{"digest":"{d}","dryRun":true,"event":"tag","reference":"r/app:1"}}"#)
        );
        let retried = Event::Retried {
            attempt: 1,
            delay_ms: 250,
            error: "HTTP 503".into(),
        };
        assert_eq!(
            json(&retried),
            r#"{"attempt":1,"delayMs":250,"error":"HTTP 503","event":"retried"}"#
        );
        let unused = Event::CacheUnused {
            path: "/c".into(),
            reason: "/c is writable by other users (mode 0777)".into(),
        };
        assert_eq!(
            json(&unused),
            r#"{"event":"cache-unused","path":"/c","reason":"/c is writable by other users (mode 0777)"}"#
        );
        let result = Event::Result {
            ok: true,
            dry_run: Some(false),
            images: Some(vec![Pushed {
                reference: "r/app:1".into(),
                digest: d,
            }]),
            error: None,
            registry_code: None,
            registry_message: None,
            destinations: None,
        };
        assert_eq!(
            json(&result),
            format!(
                r#"{{"dryRun":false,"event":"result","images":[{{"digest":"{d}","reference":"r/app:1"}}],"ok":true}}"#
            )
        );
    }
}
