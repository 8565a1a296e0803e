//! The worker pool for small layers. A small layer keeps one encoder thread busy for a moment
//! only, so the small layers of a manifest are converted side by side, one thread each, before
//! the big ones get all the threads one at a time (a rayon pool of the encoding's thread count).
//! The bytes do not depend on the thread count.

use crate::engine::Converter;
use crate::error::ConvertError;
use layerlift_layers::Encoding;
use layerlift_manifest::convert::Format;
use layerlift_manifest::{Descriptor, Digest, media_types};
use rayon::prelude::*;
use std::collections::HashSet;

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
        // Without a pool (no thread could be started) the manifest's own pass converts them.
        let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(threads).build() else {
            return Ok(());
        };
        let results: Vec<_> = pool.install(|| {
            todo.par_iter()
                .map(|&(n, l, d)| (n, this.transcode(l, d, format, &one)))
                .collect()
        });
        for (n, result) in results {
            let (done, report, _) = result.map_err(|e| e.in_layer(n, layers[n].digest))?;
            self.layers.insert((layers[n].digest, format), done);
            self.prefetched.insert((layers[n].digest, format), report);
        }
        Ok(())
    }
}
