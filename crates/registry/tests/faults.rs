//! Fault tests: the registry client against a real `docker-registry` behind the testkit's fault
//! proxy (dropped connections mid-upload, 500/503, 429 with and without Retry-After, stalls, a
//! redirect to a second host that must not receive `Authorization`).

use layerlift_manifest::Digest;
use layerlift_registry::{
    BlobSource, BytesSource, Client, Credential, Error, ErrorCode, RetryPolicy, TransportOptions,
    UploadEvent, UploadOptions,
};
use layerlift_testkit::{Fault, FaultProxy, Registry};

mod common;
use common::{fast_retries, image, plain_http_client, push};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A fault proxy in front of `port` that asks `rule` about each PATCH, numbered from 1, and passes
/// every other request.
fn on_patches(port: u16, rule: impl Fn(u32) -> Fault + Send + Sync + 'static) -> FaultProxy {
    let patches = Mutex::new(0);
    FaultProxy::start(port, move |r| {
        if r.method != "PATCH" {
            return Fault::Pass;
        }
        let mut p = patches.lock().unwrap();
        *p += 1;
        rule(*p)
    })
}

#[test]
fn twenty_pushes_through_drops_5xx_and_429() {
    let reg = Registry::anonymous();
    // One request in five fails: dropped mid-body, 500, 503, 429, or stalled.
    let proxy = FaultProxy::start(reg.port(), |r| {
        if r.n % 5 != 4 {
            return Fault::Pass;
        }
        match (r.n / 5) % 5 {
            0 => Fault::Drop {
                after: r.content_length / 2,
            },
            1 => Fault::Status {
                status: 500,
                retry_after: None,
            },
            2 => Fault::Status {
                status: 503,
                retry_after: None,
            },
            3 => Fault::Status {
                status: 429,
                retry_after: None,
            },
            _ => Fault::Stall(Duration::from_millis(50)),
        }
    });
    let retries = Mutex::new(0usize);
    let on_event = |e: UploadEvent| {
        if let UploadEvent::Retry { .. } = e {
            *retries.lock().unwrap() += 1;
        }
    };
    for i in 0..20u8 {
        let c = plain_http_client(&proxy.addr(), Credential::Anonymous, fast_retries());
        let img = image(i, 4);
        let opts = if i % 2 == 0 {
            UploadOptions::default()
        } else {
            UploadOptions {
                chunk_size: Some(1024),
                ..UploadOptions::default()
            }
        };
        let d = push(&c, &format!("faulty/r{i}"), &img, &opts, &on_event)
            .unwrap_or_else(|e| panic!("push {i}: {e}"));
        assert_eq!(d, Digest::of(&img.manifest), "push {i}");
    }
    assert!(proxy.faults() >= 40, "faults injected: {}", proxy.faults());
    assert!(*retries.lock().unwrap() > 0);
}

#[test]
fn retry_after_is_honoured() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |r| {
        if r.method == "PUT" && r.target.contains("/manifests/") && r.n < 100 {
            // Only the first manifest PUT.
            static ONCE: std::sync::Once = std::sync::Once::new();
            let mut hit = false;
            ONCE.call_once(|| hit = true);
            if hit {
                return Fault::Status {
                    status: 429,
                    retry_after: Some(1),
                };
            }
        }
        Fault::Pass
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, fast_retries());
    let img = image(99, 4);
    let start = Instant::now();
    push(&c, "ra/x", &img, &UploadOptions::default(), &|_| {}).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        start.elapsed()
    );
    assert_eq!(proxy.faults(), 1);
}

#[test]
fn gives_up_with_a_clear_error() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |r| {
        if r.method == "POST" {
            Fault::Status {
                status: 503,
                retry_after: None,
            }
        } else {
            Fault::Pass
        }
    });
    let policy = RetryPolicy {
        max_attempts: 3,
        ..fast_retries()
    };
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, policy);
    let err = push(
        &c,
        "down/x",
        &image(1, 4),
        &UploadOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{text}");
    assert!(
        text.contains("POST") && text.contains("/v2/down/x/blobs/uploads/"),
        "{text}"
    );
    assert!(
        text.contains("503") && text.contains("UNAVAILABLE"),
        "{text}"
    );
    assert_eq!(err.code(), Some(&ErrorCode::Unavailable));
}

#[test]
fn chunked_upload_resumes_where_the_registry_is() {
    let reg = Registry::anonymous();
    // The third PATCH loses its connection before any of its body arrives.
    let proxy = on_patches(reg.port(), |p| {
        if p == 3 {
            Fault::Drop { after: 0 }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, fast_retries());
    c.ping().unwrap();
    let blob = BytesSource::new((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let resumed = Mutex::new(Vec::new());
    c.upload_blob(
        "resume/x",
        &blob,
        &UploadOptions {
            chunk_size: Some(2000),
            ..UploadOptions::default()
        },
        None,
        &|e| {
            if let UploadEvent::Resumed { offset } = e {
                resumed.lock().unwrap().push(offset);
            }
        },
    )
    .unwrap();
    assert!(c.blob_exists("resume/x", &blob.digest()).unwrap());
    assert_eq!(
        *resumed.lock().unwrap(),
        vec![4000],
        "resumed after two chunks"
    );
    // One upload session only: no second POST.
    let posts = proxy.log().iter().filter(|l| l.method == "POST").count();
    assert_eq!(posts, 1);
}

/// A registry that loses the upload session again and again, while each session gets further
/// than nothing: every accepted chunk is progress, so the retry budget bounds each failing request
/// and the upload finishes (with a budget counting the blob's failures, it gave up: seen with
/// docker-registry, which drops a session whose PATCH was cut mid-body).
#[test]
fn sessions_lost_again_and_again_still_finish_while_chunks_are_accepted() {
    let reg = Registry::anonymous();
    // 10 chunks. Session 1 gets 4 in, then the session is lost; sessions 2 and 3 get one chunk
    // each before they are lost; session 4 is left alone.
    let proxy = on_patches(reg.port(), |p| {
        if [5, 7, 9].contains(&p) {
            Fault::Status {
                status: 404,
                retry_after: None,
            }
        } else {
            Fault::Pass
        }
    });
    let retry = RetryPolicy {
        max_attempts: 3,
        ..fast_retries()
    };
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, retry.clone());
    c.ping().unwrap();
    let blob = BytesSource::new((0..10_000u32).map(|i| (i % 241) as u8).collect::<Vec<_>>());
    let chunked = UploadOptions {
        chunk_size: Some(1000),
        ..UploadOptions::default()
    };
    c.upload_blob("lost/again", &blob, &chunked, None, &|_| {})
        .unwrap();
    assert!(c.blob_exists("lost/again", &blob.digest()).unwrap());
    assert_eq!(proxy.log().iter().filter(|l| l.method == "POST").count(), 4);

    // A registry that loses every session after its first chunk still makes the client give
    // up, once the blob's bytes have been sent max_attempts times over.
    let proxy = on_patches(reg.port(), |p| {
        if p % 2 == 0 {
            Fault::Status {
                status: 404,
                retry_after: None,
            }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, retry);
    c.ping().unwrap();
    let err = c
        .upload_blob("lost/always", &blob, &chunked, None, &|_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("lost this blob's upload sessions"),
        "{err}"
    );
    let posts = proxy.log().iter().filter(|l| l.method == "POST").count();
    assert_eq!(
        posts, 30,
        "one POST per 1000 bytes accepted, up to 3 × 10 000"
    );
}

#[test]
fn redirect_to_another_host_drops_authorization() {
    let reg = Registry::htpasswd("dora", "pw-redirect-1");
    // The second host: another proxy to the same registry, on another port.
    let second = FaultProxy::transparent(reg.port());
    let to = format!("http://{}", second.addr());
    let first = FaultProxy::start(reg.port(), move |r| {
        if r.method == "GET" && r.target.contains("/manifests/") {
            Fault::Redirect { to: to.clone() }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(
        &first.addr(),
        Credential::from_creds("dora:pw-redirect-1").unwrap(),
        RetryPolicy::none(),
    );
    let img = image(3, 4);
    push(&c, "redir/x", &img, &UploadOptions::default(), &|_| {}).unwrap();
    // The redirected GET reaches the second host without credentials, which then refuses it.
    let err = c.get_manifest("redir/x", "latest").unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let first_log = first.log();
    assert!(
        first_log
            .iter()
            .any(|l| l.authorization && l.method == "GET")
    );
    let second_log = second.log();
    assert!(!second_log.is_empty(), "the redirect was followed");
    assert!(
        second_log.iter().all(|l| !l.authorization),
        "Authorization leaked to the second host: {second_log:?}"
    );
}

#[test]
fn a_lost_upload_session_is_started_again() {
    let reg = Registry::anonymous();
    // The first blob PUT and the first PATCH find their session gone.
    let proxy = FaultProxy::start(reg.port(), {
        let seen = Mutex::new((false, false));
        move |r| {
            let mut s = seen.lock().unwrap();
            let upload = r.target.contains("/blobs/uploads/");
            if upload && r.method == "PUT" && !s.0 {
                s.0 = true;
                return Fault::Status {
                    status: 404,
                    retry_after: None,
                };
            }
            if upload && r.method == "PATCH" && !s.1 {
                s.1 = true;
                return Fault::Status {
                    status: 404,
                    retry_after: None,
                };
            }
            Fault::Pass
        }
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, fast_retries());
    c.ping().unwrap();
    let a = BytesSource::new(vec![1u8; 5000]);
    let b = BytesSource::new(vec![2u8; 5000]);
    c.upload_blob("lost/x", &a, &UploadOptions::default(), None, &|_| {})
        .unwrap();
    let chunked = UploadOptions {
        chunk_size: Some(1500),
        ..UploadOptions::default()
    };
    c.upload_blob("lost/x", &b, &chunked, None, &|_| {})
        .unwrap();
    assert!(c.blob_exists("lost/x", &a.digest()).unwrap());
    assert!(c.blob_exists("lost/x", &b.digest()).unwrap());
    assert_eq!(proxy.faults(), 2);
    // Each lost session was replaced by a new POST.
    assert_eq!(proxy.log().iter().filter(|l| l.method == "POST").count(), 4);
}

#[test]
fn a_stalled_request_times_out_and_is_retried() {
    let reg = Registry::anonymous();
    // The first blob HEAD stalls longer than the client's read timeout.
    let proxy = FaultProxy::start(reg.port(), {
        let stalled = Mutex::new(false);
        move |r| {
            let mut s = stalled.lock().unwrap();
            if r.method == "HEAD" && !*s {
                *s = true;
                return Fault::Stall(Duration::from_secs(8));
            }
            Fault::Pass
        }
    });
    let c = Client::new(
        &proxy.addr(),
        Credential::Anonymous,
        TransportOptions {
            plain_http: true,
            io_timeout: Duration::from_millis(700),
            ..TransportOptions::default()
        },
        fast_retries(),
    )
    .unwrap();
    let retries = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = retries.clone();
    let mut c = c;
    c.set_retry_observer(Box::new(move |attempt, e, _| {
        seen.lock().unwrap().push((attempt, e.to_string()));
    }));
    c.ping().unwrap();
    let img = image(42, 4);
    let start = Instant::now();
    let d = push(&c, "stall/x", &img, &UploadOptions::default(), &|_| {}).unwrap();
    assert_eq!(d, Digest::of(&img.manifest));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "did not wait for the stall"
    );
    assert_eq!(proxy.faults(), 1);
}

#[test]
fn head_401_reads_as_absent() {
    // Docker Hub and Harbor answer 401 to HEAD on a repository that does not exist yet.
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |r| {
        if r.method == "HEAD" && r.target.contains("/blobs/") {
            Fault::Status {
                status: 401,
                retry_after: None,
            }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, RetryPolicy::none());
    let img = image(7, 4);
    let d = push(&c, "new/repo", &img, &UploadOptions::default(), &|_| {}).unwrap();
    assert_eq!(d, Digest::of(&img.manifest));
    let posts = proxy.log().iter().filter(|l| l.method == "POST").count();
    assert_eq!(posts, img.blobs.len(), "every blob uploaded");
}

#[test]
fn a_token_that_expires_mid_upload_is_renewed() {
    let reg = Registry::token("gus", "pw-token-expiry");
    let ts = reg.token_server().unwrap();
    let challenge = format!(
        r#"Bearer realm="{}",service="{}",scope="repository:exp/x:pull,push",error="invalid_token""#,
        ts.realm(),
        ts.service()
    );
    // The first blob PUT is refused as if its token had just expired.
    let proxy = FaultProxy::start(reg.port(), {
        let done = Mutex::new(false);
        move |r| {
            let mut d = done.lock().unwrap();
            if r.method == "PUT" && r.target.contains("/blobs/uploads/") && !*d {
                *d = true;
                return Fault::Unauthorized {
                    challenge: challenge.clone(),
                };
            }
            Fault::Pass
        }
    });
    let c = plain_http_client(
        &proxy.addr(),
        Credential::from_creds("gus:pw-token-expiry").unwrap(),
        RetryPolicy::none(),
    );
    let img = image(11, 4);
    let d = push(&c, "exp/x", &img, &UploadOptions::default(), &|_| {}).unwrap();
    assert_eq!(d, Digest::of(&img.manifest));
    assert_eq!(proxy.faults(), 1);
    assert_eq!(
        ts.requests().len(),
        2,
        "one token, then a new one after the 401"
    );
    // The refused PUT was sent again, with its body and credentials.
    let puts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.method == "PUT" && l.target.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(puts.len(), img.blobs.len() + 1);
    assert!(puts.iter().all(|l| l.authorization));
}
