//! [`PushError`]: why a push failed.

use layerlift_archive::ArchiveError;
use layerlift_layout::LayoutError;
use layerlift_manifest::Digest;
use layerlift_registry::Error as RegistryError;

/// Why a push failed. [`PushError::is_usage`] tells the errors of the options themselves (the
/// command line's fault) from the others.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// `compression_level` that `compression` cannot take.
    #[error(transparent)]
    Level(#[from] layerlift_layers::LevelError),
    /// `all` with a DEST or extra tags that name a tag.
    #[error("--all takes the tags from SOURCE: give DEST as HOST/REPOSITORY without a tag")]
    AllWithTag,
    /// A `reuse_from` reference on another registry than DEST's.
    #[error(
        "--reuse-from {reference}: layers can only be reused from the destination's registry ({registry})"
    )]
    ReuseFromElsewhere {
        /// The reference.
        reference: String,
        /// DEST's registry.
        registry: String,
    },
    /// SOURCE cannot be opened.
    #[error("{source_name}: cannot open")]
    Open {
        /// SOURCE as given.
        source_name: String,
        /// Why.
        source: std::io::Error,
    },
    /// SOURCE's layout is not valid.
    #[error("{source_name}")]
    Layout {
        /// SOURCE (or the temporary layout).
        source_name: String,
        /// Why.
        source: LayoutError,
    },
    /// The archive SOURCE cannot be read.
    #[error("{}", archive_what(source_name))]
    Archive {
        /// SOURCE as given.
        source_name: String,
        /// Why.
        source: ArchiveError,
    },
    /// Reading the archive stopped (an upload failed, and its error was already taken).
    #[error("reading {source_name} stopped")]
    Stopped {
        /// SOURCE.
        source_name: String,
    },
    /// The temporary layout an archive was read into does not open.
    #[error(transparent)]
    TempLayout(LayoutError),
    /// The file SOURCE does not start like an archive.
    #[error("{source_name}")]
    NotAnArchive {
        /// SOURCE as given.
        source_name: String,
        /// Why.
        source: ArchiveError,
    },
    /// The temporary directory an archive is read into cannot be made.
    #[error("cannot {what} {}", path.display())]
    Temp {
        /// What failed (`create a temporary directory in`, `lock`…).
        what: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry does not answer.
    #[error("cannot reach registry {registry}")]
    Unreachable {
        /// DEST's registry.
        registry: String,
        /// Why.
        source: RegistryError,
    },
    /// What to push cannot be worked out from SOURCE and the options.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// A blob could not be pushed.
    #[error(transparent)]
    Blob(#[from] crate::upload::BlobError),
    /// A reused layer is not what the registry or the cache said it was.
    #[error(transparent)]
    Reuse(#[from] crate::reuse::ConfirmError),
    /// A request about a manifest or a tag failed.
    #[error("{what}")]
    Manifest {
        /// `pushing manifest … to …`, `tagging …`, `checking …`.
        what: String,
        /// Why.
        source: RegistryError,
    },
    /// The registry refuses a manifest's media type and it was not pushed converted.
    #[error("{what}: the registry refuses {media_type}: {source}; {conversion}")]
    FormatRefused {
        /// `pushing manifest … to …`, `tagging …`.
        what: String,
        /// The refused media type.
        media_type: String,
        /// What converting would change, or why it cannot be converted.
        conversion: String,
        /// The registry's answer.
        source: RegistryError,
    },
    /// A tag read back does not point at the pushed image.
    #[error("{reference} points at {} after the push, not at the pushed {pushed}", found.map_or("nothing".to_string(), |d| d.to_string()))]
    TagMismatch {
        /// `REGISTRY/REPOSITORY:TAG`.
        reference: String,
        /// What it points at.
        found: Option<Digest>,
        /// What was pushed.
        pushed: Digest,
    },
    /// The cache directory given (`cache_dir`, `LAYERLIFT_CACHE_DIR`) is not private to this
    /// user.
    #[error("cache directory {}: another user could change what is in it", path.display())]
    CacheDir {
        /// The cache directory.
        path: std::path::PathBuf,
        /// Why.
        source: crate::cache::CacheDirError,
    },
    /// A worker thread could not be started.
    #[error("cannot start an upload thread")]
    Thread(#[source] std::io::Error),
    /// A push was asked for no destination.
    #[error("no destination to push to")]
    NoDestination,
    /// A push under own names (`all`) left images out or failed some (named in the
    /// [`Report::failed`](crate::Report::failed) of the destination).
    #[error("{count} image(s) failed (named above)")]
    ImagesFailed {
        /// How many.
        count: usize,
    },
}

fn archive_what(source: &str) -> String {
    format!("reading {source}")
}

impl PushError {
    /// Whether the options themselves are wrong, whatever SOURCE and the registry hold
    /// (`layerlift-push` exits with code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PushError::Level(_)
                | PushError::AllWithTag
                | PushError::ReuseFromElsewhere { .. }
                | PushError::Plan(crate::plan::PlanError::BadSelector(_))
        )
    }
}
