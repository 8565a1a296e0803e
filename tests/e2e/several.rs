//! One read of SOURCE to several destinations (`layerlift-push SOURCE DEST DEST…`): each layer is
//! read and compressed once and goes up once to each registry; both pull back right; a
//! destination that fails does not stop the other, and the exit code and stderr say which failed.

use crate::util::{TestArchive, layer_tar, push_cmd};
use layerlift_testkit::{Fault, FaultProxy, ProxyLog, Registry};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Output, Stdio};

/// An archive of one layer streamed while it is compressed (6 MiB) and two small ones.
fn archive() -> TestArchive {
    let layers = vec![
        layer_tar("big", 11, 6 << 20),
        layer_tar("a", 12, 20_000),
        layer_tar("b", 13, 30_000),
    ];
    TestArchive::new(&layers, "several:1")
}

/// `layerlift-push - DESTS… --json` with `archive` on standard input.
fn push_pipe(archive: &[u8], dests: &[String], extra: &[&str]) -> Output {
    let mut c = push_cmd();
    c.arg("-")
        .args(dests)
        .args(["--json", "--plain-http", "--no-cache"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = archive.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("the whole archive was read");
    crate::util::assert_no_secrets(&o);
    o
}

/// Blob uploads committed through `proxy`, by digest (`PUT …?digest=`).
fn commits(log: &[ProxyLog]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for l in log {
        if l.method == "PUT"
            && let Some((_, q)) = l.target.split_once("digest=")
        {
            let d = q.split('&').next().unwrap().replace("%3A", ":");
            *n.entry(d).or_default() += 1;
        }
    }
    n
}

/// The last JSON line (the `result` event).
fn result(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap_or_default()
}

/// An archive from a pipe (it can be read only once) pushed to two registries: each blob is
/// committed once in each, the streamed layer included, and both serve the image.
#[test]
fn one_read_to_two_registries() {
    let (a, b) = (Registry::anonymous(), Registry::anonymous());
    let (pa, pb) = (
        FaultProxy::transparent(a.port()),
        FaultProxy::transparent(b.port()),
    );
    let image = archive();
    let dests = [
        format!("{}/one/app:1", pa.addr()),
        format!("{}/two/app:1", pb.addr()),
    ];
    let o = push_pipe(&image.bytes, &dests, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let r = result(&o);
    assert_eq!(r["ok"], true, "{r}");
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{r}");
    let digest = images[0]["digest"].as_str().unwrap();
    assert_eq!(
        images[1]["digest"].as_str().unwrap(),
        digest,
        "the same image"
    );
    for (proxy, reg, repo) in [(&pa, &a, "one/app"), (&pb, &b, "two/app")] {
        let log = proxy.log();
        // The large layer went up to each while it was compressed.
        assert_eq!(
            log.iter().filter(|l| l.method == "PATCH").count(),
            1,
            "{log:#?}"
        );
        let n = commits(&log);
        // Three layers and the config, each committed once.
        assert_eq!(n.len(), 4, "{n:?}");
        assert!(n.values().all(|c| *c == 1), "{n:?}");
        image.pulls_back(reg, &format!("{repo}:1"), digest);
    }
}

/// One destination refuses every blob upload, another is not listening at all: the third gets
/// the image; exit 1, and stderr names each failed destination on its own line.
#[test]
fn a_failed_destination_does_not_stop_the_others() {
    let good = Registry::anonymous();
    let refusing = Registry::anonymous();
    let proxy = FaultProxy::start(refusing.port(), |r| {
        if (r.method == "PUT" || r.method == "PATCH") && r.target.contains("/blobs/uploads/") {
            return Fault::Status {
                status: 400,
                retry_after: None,
            };
        }
        Fault::Pass
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let image = archive();
    let dests = [
        format!("{}/refused/app:1", proxy.addr()),
        format!("{}/good/app:1", good.addr()),
        format!("{closed_addr}/down/app:1"),
    ];
    let o = push_pipe(&image.bytes, &dests, &["--retries", "1"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("layerlift-push: error: {}: ", dests[0]))),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("layerlift-push: error: {}: ", dests[2]))),
        "{err}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(
            format!(
                "layerlift-push: error: the push to 2 of 3 destinations failed: {}, {}",
                dests[0], dests[2]
            )
            .as_str()
        ),
        "{err}"
    );
    let r = result(&o);
    assert_eq!(r["ok"], false, "{r}");
    let outcomes = r["destinations"].as_array().unwrap();
    let oks: Vec<bool> = outcomes.iter().map(|d| d["ok"] == true).collect();
    assert_eq!(oks, [false, true, false], "{r}");
    let digest = r["images"][0]["digest"].as_str().unwrap();
    assert_eq!(
        crate::util::tag_digest(&good, "good/app", "1").as_deref(),
        Some(digest)
    );
    assert_eq!(crate::util::tag_digest(&refusing, "refused/app", "1"), None);
    image.pulls_back(&good, "good/app:1", digest);
}

/// Credentials given on the command line are one registry's: with DESTs on two registries they
/// are refused before anything is read or sent.
#[test]
fn command_line_credentials_are_for_one_registry() {
    let mut c = push_cmd();
    c.args([
        "-",
        "127.0.0.1:1/a:1",
        "127.0.0.2:1/b:1",
        "--creds",
        "user:secret",
    ]);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("DESTs are on several registries"), "{err}");
}
