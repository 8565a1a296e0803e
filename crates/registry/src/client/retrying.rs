//! The retry loop every operation runs in: transient errors (connection failures, 408, 429,
//! 5xx) are retried with the client's [`RetryPolicy`](crate::RetryPolicy) backoff, honouring
//! `Retry-After`, until attempts or time run out.

use super::Client;
use crate::error::Error;
use std::time::{Duration, Instant};

/// Told about one retry: attempt number, the error, the wait before the next attempt.
pub(super) type RetryHook<'a> = dyn Fn(u32, &Error, Duration) + 'a;

impl Client {
    /// Run `op` until it succeeds, fails for good, or retries run out. `on_retry(attempt,
    /// error, delay)` is told before each wait (else the client's retry observer).
    pub(crate) fn retrying<T>(
        &self,
        on_retry: Option<&RetryHook<'_>>,
        op: impl FnMut(u32) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.retrying_progress(on_retry, None, op)
    }

    /// [`Self::retrying`] for an operation made of many requests (a chunked upload): whenever
    /// `progress` grew since the last failure, the retry budget (attempts and time) starts again,
    /// so that it bounds each failing request rather than the whole operation.
    pub(crate) fn retrying_progress<T>(
        &self,
        on_retry: Option<&RetryHook<'_>>,
        progress: Option<&std::cell::Cell<u64>>,
        mut op: impl FnMut(u32) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut start = Instant::now();
        let mut attempt = 1;
        let mut seen = progress.map_or(0, |p| p.get());
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    if let Some(p) = progress
                        && p.get() > seen
                    {
                        seen = p.get();
                        attempt = 1;
                        start = Instant::now();
                    }
                    let delay = self.retry.delay(attempt, e.retry_after());
                    let budget = if e.is_refused() {
                        self.retry.max_total.min(self.retry.max_refused)
                    } else {
                        self.retry.max_total
                    };
                    if attempt >= self.retry.max_attempts || start.elapsed() + delay > budget {
                        if attempt == 1 {
                            return Err(e);
                        }
                        return Err(Error::GaveUp {
                            attempts: attempt,
                            seconds: start.elapsed().as_secs(),
                            last: Box::new(e),
                        });
                    }
                    match (on_retry, &self.observer) {
                        (Some(hook), _) => hook(attempt, &e, delay),
                        (None, Some(obs)) => obs(attempt, &e, delay),
                        (None, None) => {}
                    }
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
