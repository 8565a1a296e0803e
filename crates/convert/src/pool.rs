//! The worker pool for small layers. A small layer keeps one encoder thread busy for a moment
//! only, so the small layers of a manifest are converted side by side, one thread each, before
//! the big ones get all the threads one at a time. The bytes do not depend on the thread count.

use crate::engine::Converter;
use crate::error::ConvertError;
use layerlift_layers::Encoding;
use layerlift_manifest::convert::Format;
use layerlift_manifest::{Descriptor, Digest, media_types};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Layers up to this size are converted side by side.
pub(crate) const SMALL_LAYER: u64 = 8 << 20;

impl Converter<'_> {
    /// Convert the small layers of one manifest in parallel. Results land in the layer cache
    /// (and their report lines wait until the manifest reaches them); the first error in layer
    /// order is returned.
    pub(crate) fn prefetch_small_layers(
        &mut self,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        format: Format,
    ) -> Result<(), ConvertError> {
        let threads = self.encoding.threads;
        let mut seen = HashSet::new();
        let todo: Vec<(usize, &Descriptor, &Digest)> = layers
            .iter()
            .zip(diff_ids)
            .enumerate()
            .filter(|(_, (l, _))| {
                !media_types::is_non_distributable(&l.media_type)
                    && l.size <= SMALL_LAYER
                    && !self.layers.contains_key(&(l.digest, format))
                    && seen.insert(l.digest)
            })
            .map(|(n, (l, d))| (n, l, d))
            .collect();
        if threads < 2 || todo.len() < 2 {
            return Ok(());
        }
        let one = Encoding {
            threads: 1,
            ..self.encoding
        };
        let this = &*self;
        let mut results = run_pool(threads, &todo, |&(n, l, d)| {
            (n, this.transcode(l, d, format, &one))
        });
        results.sort_by_key(|(n, _)| *n);
        for (n, result) in results {
            let (done, report, _) = result.map_err(|e| e.in_layer(n, layers[n].digest))?;
            self.layers.insert((layers[n].digest, format), done);
            self.prefetched.insert((layers[n].digest, format), report);
        }
        Ok(())
    }
}

/// Run `work` on every item of `todo` with up to `threads` scoped threads, each taking the next
/// item until none is left. Results come back in no particular order; the items of a worker
/// that panicked are missing (the caller's sequential pass does them).
fn run_pool<T: Sync, R: Send>(threads: usize, todo: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(todo.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(item) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        out.push(work(item));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_done_once() {
        let todo: Vec<usize> = (0..100).collect();
        let mut out = run_pool(4, &todo, |&n| n * 2);
        out.sort();
        assert_eq!(out, (0..100).map(|n| n * 2).collect::<Vec<_>>());
    }

    #[test]
    fn more_threads_than_items() {
        let out = run_pool(8, &[1, 2], |&n| n);
        assert_eq!(out.len(), 2);
        assert!(run_pool(8, &[] as &[u8], |&n| n).is_empty());
    }
}
