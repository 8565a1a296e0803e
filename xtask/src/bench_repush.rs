//! The re-push comparisons of `cargo xtask bench --steps repush`: pushing an image the registry
//! already has, and a "rebuilt" image whose last layer changed, against skopeo with and without its
//! blob-info cache. layerlift runs with a fresh, empty `--cache-dir` every time, so what it skips it
//! learnt from the registry alone (a CI machine that keeps nothing).
//!
//! skopeo's cache is containers/image's `blob-info-cache-v1.boltdb` (root:
//! `/var/lib/containers/cache`; others: `$XDG_DATA_HOME/containers/cache` or
//! `~/.local/share/containers/cache`). "Without its cache" removes that file before the run; "with
//! its cache" runs an untimed copy of the same archive first, so the cache knows every layer.

use crate::measure::{self, Log, Sample, Step};
use crate::registry::Registry;
use crate::util;
use anyhow::{Context, Result, bail};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

pub const REPUSH: &str = "layerlift-push ARCHIVE re-push (fresh cache dir)";
pub const SKOPEO_REPUSH_CACHED: &str = "skopeo docker-archive: re-push, with its cache";
pub const SKOPEO_REPUSH_UNCACHED: &str = "skopeo docker-archive: re-push, no cache";
pub const REBUILT: &str = "layerlift-push rebuilt ARCHIVE (fresh cache dir)";
pub const SKOPEO_REBUILT_UNCACHED: &str = "skopeo docker-archive: rebuilt, no cache";

/// Where containers/image keeps its blob-info cache for this user.
fn skopeo_cache_files() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/var/lib/containers/cache")];
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        dirs.push(PathBuf::from(d).join("containers/cache"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".local/share/containers/cache"));
    }
    dirs.into_iter()
        .map(|d| d.join("blob-info-cache-v1.boltdb"))
        .collect()
}

pub fn forget_skopeo_cache() -> Result<()> {
    for f in skopeo_cache_files() {
        match fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", f.display())),
        }
    }
    Ok(())
}

/// What the rebuilt push sent, read from its `--json` events after the run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    /// Blobs and bytes uploaded.
    pub blobs: u64,
    pub bytes: u64,
    /// Layers read (and compressed) from the archive, and layers taken from the registry unread.
    pub layers_read: u64,
    pub layers_reused: u64,
}

/// What the rebuilt push sent in its last run, set by its check.
pub type SentCell = Rc<Cell<Option<Sent>>>;

fn sent_of(events: &Path) -> Result<Sent> {
    let text = fs::read_to_string(events)?;
    let mut s = Sent::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not JSON: {line}", events.display()))?;
        match (v["event"].as_str(), v["action"].as_str()) {
            (Some("blob"), Some("uploaded")) => {
                s.blobs += 1;
                s.bytes += v["size"].as_u64().unwrap_or(0);
            }
            (Some("layer"), _) if v["verified"] == true => s.layers_read += 1,
            (Some("layer"), _) => s.layers_reused += 1,
            _ => {}
        }
    }
    Ok(s)
}

/// A repository counter: `bench/<prefix>N`, earlier ones removed from the registry's storage.
struct Repos {
    registry: Rc<Registry>,
    prefix: &'static str,
    n: Cell<usize>,
}

impl Repos {
    fn dest(&self) -> String {
        format!(
            "{}/bench/{}{}:1",
            self.registry.addr(),
            self.prefix,
            self.n.get()
        )
    }

    /// A new repository (nothing can be mounted from the earlier ones: they are deleted).
    fn next(&self) -> Result<String> {
        if let Ok(rd) = fs::read_dir(self.registry.repo_dir("bench")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(self.prefix) {
                    util::remove_any(&e.path())?;
                }
            }
        }
        self.n.set(self.n.get() + 1);
        Ok(self.dest())
    }

    fn has_tag(&self) -> bool {
        self.n.get() > 0
            && self
                .registry
                .repo_dir(&format!("bench/{}{}", self.prefix, self.n.get()))
                .join("_manifests/tags/1/current/link")
                .is_file()
    }
}

fn push_cmd(push: &Path, archive: &Path, dest: &str, cache: &Path) -> Command {
    let mut c = Command::new(push);
    c.arg(archive)
        .arg(dest)
        .arg("-q")
        .arg("--cache-dir")
        .arg(cache);
    c
}

fn skopeo_cmd(archive: &Path, dest: &str) -> Command {
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{dest}"));
    c
}

/// The five steps, and what the rebuilt push sent (set by its check after each run).
pub fn repush_steps(
    push: &Path,
    archive: &Path,
    rebuilt: &Path,
    registry: Rc<Registry>,
    work: &Path,
) -> Result<(Vec<Step>, SentCell)> {
    let cache = work.join("layerlift-cache");
    let log = |n: &str| Rc::new(Log(work.join(format!("{n}.log"))));
    let fresh_cache = {
        let cache = cache.clone();
        move || -> Result<()> {
            util::remove_any(&cache)?;
            Ok(())
        }
    };

    // (a) the same archive again: seeded once, untimed.
    let ours_a = Rc::new(Repos {
        registry: registry.clone(),
        prefix: "e",
        n: Cell::new(0),
    });
    let sk_a = Rc::new(Repos {
        registry: registry.clone(),
        prefix: "f",
        n: Cell::new(0),
    });
    let mut steps = Vec::new();
    {
        let (r1, r2) = (ours_a.clone(), ours_a.clone());
        let (p1, a1, c1, p2, a2, c2) = (
            push.to_path_buf(),
            archive.to_path_buf(),
            cache.clone(),
            push.to_path_buf(),
            archive.to_path_buf(),
            cache.clone(),
        );
        let fresh = fresh_cache.clone();
        let l = log("repush");
        steps.push(
            Step::new(REPUSH, move || {
                measure::time_command(&mut push_cmd(&p1, &a1, &r1.dest(), &c1), &l)
            })
            .prepare(move || {
                if !r2.has_tag() {
                    let dest = r2.next()?;
                    util::run_quiet(&mut push_cmd(&p2, &a2, &dest, &c2))
                        .context("seeding the re-push")?;
                }
                fresh()
            }),
        );
    }
    for (name, cached) in [
        (SKOPEO_REPUSH_CACHED, true),
        (SKOPEO_REPUSH_UNCACHED, false),
    ] {
        let (r1, r2) = (sk_a.clone(), sk_a.clone());
        let (a1, a2) = (archive.to_path_buf(), archive.to_path_buf());
        let l = log(if cached {
            "skopeo-repush-cached"
        } else {
            "skopeo-repush-uncached"
        });
        steps.push(
            Step::new(name, move || {
                measure::time_command(&mut skopeo_cmd(&a1, &r1.dest()), &l)
            })
            .prepare(move || {
                let dest = if r2.has_tag() { r2.dest() } else { r2.next()? };
                if cached {
                    // Seeds the repository, and skopeo's cache with this archive's layers (the
                    // other steps remove it or fill it with the rebuilt image's).
                    util::run_quiet(&mut skopeo_cmd(&a2, &dest))
                        .context("seeding skopeo's re-push")?;
                } else {
                    if !r2.has_tag() {
                        util::run_quiet(&mut skopeo_cmd(&a2, &dest))
                            .context("seeding skopeo's re-push")?;
                    }
                    forget_skopeo_cache()?;
                }
                Ok(())
            }),
        );
    }

    // (b) the rebuilt archive into a repository that holds the original: a new one every round.
    let sent: SentCell = Rc::default();
    {
        let repos = Rc::new(Repos {
            registry: registry.clone(),
            prefix: "g",
            n: Cell::new(0),
        });
        let (r1, r2) = (repos.clone(), repos.clone());
        let (p1, p2) = (push.to_path_buf(), push.to_path_buf());
        let (a2, rb1) = (archive.to_path_buf(), rebuilt.to_path_buf());
        let (c1, c2) = (cache.clone(), cache.clone());
        let events = work.join("rebuilt-events.json");
        let ev1 = events.clone();
        let fresh = fresh_cache.clone();
        let sent1 = sent.clone();
        let l = log("rebuilt");
        steps.push(
            Step::new(REBUILT, move || {
                // `exec`: the measured process is layerlift-push itself; its --json goes to a file.
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("exec \"$0\" \"$@\" --json > \"$EVENTS\"")
                    .arg(&p1)
                    .arg(&rb1)
                    .arg(r1.dest())
                    .arg("--cache-dir")
                    .arg(&c1)
                    .env("EVENTS", &ev1);
                measure::time_command(&mut c, &l)
            })
            .prepare(move || {
                let dest = r2.next()?;
                util::run_quiet(&mut push_cmd(&p2, &a2, &dest, &c2))
                    .context("seeding the rebuilt push with the original")?;
                fresh()
            })
            .verify(move || {
                let s = sent_of(&events)?;
                if s.layers_read != 1 {
                    bail!(
                        "the rebuilt push read {} layers (only the changed one should be)",
                        s.layers_read
                    );
                }
                sent1.set(Some(s));
                Ok(())
            }),
        );
    }
    {
        let repos = Rc::new(Repos {
            registry,
            prefix: "h",
            n: Cell::new(0),
        });
        let (r1, r2) = (repos.clone(), repos);
        let (a2, rb1) = (archive.to_path_buf(), rebuilt.to_path_buf());
        let l = log("skopeo-rebuilt");
        steps.push(
            Step::new(SKOPEO_REBUILT_UNCACHED, move || -> Result<Sample> {
                measure::time_command(&mut skopeo_cmd(&rb1, &r1.dest()), &l)
            })
            .prepare(move || {
                let dest = r2.next()?;
                util::run_quiet(&mut skopeo_cmd(&a2, &dest))
                    .context("seeding skopeo's rebuilt push with the original")?;
                forget_skopeo_cache()
            }),
        );
    }
    Ok((steps, sent))
}
