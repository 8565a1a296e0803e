//! The path the push bench's users want to avoid, timed beside `layerlift-push ARCHIVE (cold)`:
//! `docker load -i ARCHIVE` into the machine's Docker Engine, then `docker tag` and `docker push`
//! to the same local registry. One step runs both and is timed as a whole; each part's time is kept
//! too and printed after the table ([`Parts::print`]).
//!
//! Every repetition is cold: before it the loaded image is removed from the daemon (so the load
//! writes every layer again) and the earlier `bench/e*` repositories from the registry (so that
//! Docker, which remembers where it pushed each layer, cannot mount a blob from one). Docker
//! compresses each layer with gzip while it pushes, as layerlift does. The loaded and pushed images
//! are removed from the daemon when the step is dropped. Without a daemon the step is not built.

use crate::measure::{self, Log, Sample, Step};
use crate::registry::Registry;
use crate::util;
use anyhow::{Result, bail};
use std::cell::{Cell, RefCell};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

pub const DOCKER_LOAD_PUSH: &str = "docker load -i ARCHIVE + docker push (cold)";

/// The name the bench archive's manifest.json gives its image (bench.rs writes it).
const ARCHIVE_TAG: &str = "layerlift-bench:latest";

/// The daemon's version, or why no daemon answers.
pub fn daemon_version() -> Result<String, String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() && !o.stdout.trim_ascii().is_empty() => {
            Ok(String::from_utf8_lossy(o.stdout.trim_ascii()).into_owned())
        }
        Ok(o) => Err(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(o.stderr.trim_ascii())
        )),
        Err(e) => Err(format!("cannot run `docker`: {e}")),
    }
}

/// The wall times of each part, one per timed repetition.
#[derive(Default)]
pub struct Parts {
    load: Vec<Duration>,
    push: Vec<Duration>,
}

impl Parts {
    /// `docker load` and `docker push` medians over the timed runs (the first run is the
    /// warm-up), and their share of the whole.
    pub fn print(&self) {
        let timed = |v: &[Duration]| median(v.get(1..).unwrap_or_default());
        let (Some(load), Some(push)) = (timed(&self.load), timed(&self.push)) else {
            return;
        };
        let total = load + push;
        println!(
            "\ndocker load -i ARCHIVE + docker push, median of {}: load {:.2}s ({:.0}%), push {:.2}s ({:.0}%), together {:.2}s",
            self.load.len() - 1,
            load.as_secs_f64(),
            100.0 * load.as_secs_f64() / total.as_secs_f64(),
            push.as_secs_f64(),
            100.0 * push.as_secs_f64() / total.as_secs_f64(),
            total.as_secs_f64()
        );
    }
}

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

/// Removes what the step put into the daemon.
struct Daemon {
    tags: RefCell<Vec<String>>,
}

impl Daemon {
    fn rmi(&self) {
        let mut tags = self.tags.borrow_mut();
        let mut c = Command::new("docker");
        c.args(["rmi", "-f", ARCHIVE_TAG]).args(tags.iter());
        let _ = c.stdin(Stdio::null()).output();
        tags.clear();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.rmi();
    }
}

/// The step, and where its parts' times go.
pub fn docker_step(
    archive: &Path,
    registry: Rc<Registry>,
    work: &Path,
) -> (Step, Rc<RefCell<Parts>>) {
    let parts = Rc::new(RefCell::new(Parts::default()));
    let daemon = Rc::new(Daemon {
        tags: RefCell::new(Vec::new()),
    });
    let n = Rc::new(Cell::new(0usize));
    let log = Rc::new(Log(work.join("docker-load-push.log")));
    let archive = archive.to_path_buf();
    let repo = |n: &Cell<usize>| format!("bench/e{}", n.get());

    let (reg, d, p, n1) = (registry.clone(), daemon.clone(), parts.clone(), n.clone());
    let step = Step::new(DOCKER_LOAD_PUSH, move || {
        let before = reg.cpu_time()?;
        let load = measure::time_command(
            Command::new("docker").arg("load").arg("-i").arg(&archive),
            &log,
        )?;
        let dest = format!("{}/{}:1", reg.addr(), repo(&n1));
        d.tags.borrow_mut().push(dest.clone());
        util::run_quiet(Command::new("docker").args(["tag", ARCHIVE_TAG, &dest]))?;
        let push = measure::time_command(Command::new("docker").args(["push", &dest]), &log)?;
        let mut p = p.borrow_mut();
        p.load.push(load.wall);
        p.push.push(push.wall);
        Ok(Sample {
            wall: load.wall + push.wall,
            peak_rss_kib: load.peak_rss_kib.max(push.peak_rss_kib),
            cpu: load.cpu + push.cpu,
            server_cpu: Some(reg.cpu_time()?.saturating_sub(before)),
        })
    });

    let (reg, n2) = (registry.clone(), n.clone());
    let step = step.prepare(move || {
        daemon.rmi();
        if let Ok(rd) = fs::read_dir(reg.repo_dir("bench")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with('e') {
                    util::remove_any(&e.path())?;
                }
            }
        }
        n2.set(n2.get() + 1);
        Ok(())
    });

    let step = step.verify(move || {
        let link = registry
            .repo_dir(&repo(&n))
            .join("_manifests/tags/1/current/link");
        if !link.is_file() {
            bail!("docker push: the registry has no {}", link.display());
        }
        Ok(())
    });
    (step, parts)
}
