//! One layer: detect its stored compression, then keep its bytes (checking them) or re-encode
//! them, verify digest, size and diff_id, and publish the result into the destination.

use crate::engine::Converter;
use crate::error::ConvertError;
use crate::observer::{Event, LayerId, Observer};
use crate::report::{Action, Blob, LayerDone, LayerReport, SourceLayer};
use layerlift_layers::{
    Compression, Encoding, LayerOutput, copy_layer, encode_layer, encode_layer_clamped, sniff,
};
use layerlift_layout::{BlobWriter, LayoutError};
use layerlift_manifest::convert::{Format, LayerCompression, layer_media_type};
use layerlift_manifest::{Descriptor, Digest};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What [`Converter::write_layer`] read and wrote: the output (no writer when the destination
/// had the kept blob already), the new diff_id when times were clamped, and what was done.
type Written = (LayerOutput<Option<BlobWriter>>, Option<Digest>, Action);

/// A reader that tells the observer how many bytes went through.
struct Counted<'a, R> {
    inner: R,
    id: LayerId,
    observer: &'a dyn Observer,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.observer.event(&Event::LayerProgress {
                id: self.id,
                bytes: n as u64,
            });
        }
        Ok(n)
    }
}

impl<'a> Converter<'a> {
    /// Re-encode or check one layer into the destination: what it became, its report line, and its
    /// new descriptor. Takes `&self` only, so that small layers can run side by side.
    pub(crate) fn transcode(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        format: Format,
        encoding: &Encoding,
    ) -> Result<(LayerDone, LayerReport, Descriptor), ConvertError> {
        let started = Instant::now();
        let mut file = self.src.open_blob(&layer.digest)?;
        let path = self.src.blob_path(&layer.digest);
        let from = sniff_file(&mut file).map_err(|source| ConvertError::Io {
            path: path.clone(),
            source,
        })?;
        let target = encoding.compression;
        let keep = self.options.keeps(from);
        let id = LayerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.observer.event(&Event::LayerStarted {
            id,
            digest: layer.digest,
            size: layer.size,
            from,
            to: target,
            keep,
        });
        let reader = Counted {
            inner: file,
            id,
            observer: self.observer,
        };
        let result = self.write_layer(reader, layer, keep, encoding);
        self.observer.event(&Event::LayerFinished { id });
        let (output, new_diff_id, action) = result?;

        // The stored bytes are what the descriptor says, and their tar is what the config says.
        if output.stored_digest != layer.digest {
            return Err(LayoutError::DigestMismatch {
                path,
                expected: layer.digest,
                actual: output.stored_digest,
            }
            .into());
        }
        if output.stored_size != layer.size {
            return Err(ConvertError::SizeMismatch {
                path,
                expected: layer.size,
                actual: output.stored_size,
            });
        }
        output.diff_id.check(&layer.digest, diff_id)?;

        let (digest, size) = match output.out {
            Some(w) => {
                let staged = w.finish()?;
                let (digest, size) = (staged.digest(), staged.size());
                staged.commit()?;
                (digest, size)
            }
            None => (layer.digest, layer.size),
        };
        let stored_as = if keep { from } else { target };
        let label = match stored_as {
            Compression::Gzip => LayerCompression::Gzip,
            Compression::Zstd => LayerCompression::Zstd,
            _ => LayerCompression::None,
        };
        let done = LayerDone {
            diff_id: new_diff_id.unwrap_or(*diff_id),
            media_type: layer_media_type(format, label, false)?.to_string(),
            digest,
            size,
            reencoded: !keep,
        };
        let to = done.descriptor(layer);
        let report = LayerReport {
            from: SourceLayer {
                media_type: layer.media_type.clone(),
                digest: layer.digest,
                size: layer.size,
                compression: Some(from),
            },
            to: Blob::from(&to),
            diff_id: *diff_id,
            new_diff_id: new_diff_id.filter(|d| d != diff_id),
            action,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((done, report, to))
    }

    /// Read the stored layer from `reader`: copy it (or only check it when the destination has it
    /// already) when `keep`, else encode it (clamping times with an epoch). Returns the output,
    /// the new diff_id when times were clamped, and what was done.
    fn write_layer<R: Read + Send>(
        &self,
        reader: R,
        layer: &Descriptor,
        keep: bool,
        encoding: &Encoding,
    ) -> Result<Written, ConvertError> {
        let some = |o: LayerOutput<BlobWriter>| LayerOutput {
            out: Some(o.out),
            diff_id: o.diff_id,
            stored_digest: o.stored_digest,
            stored_size: o.stored_size,
        };
        if keep {
            let output = if self.dst.has_blob(&layer.digest) {
                let o = copy_layer(reader, io::sink())?;
                LayerOutput {
                    out: None,
                    diff_id: o.diff_id,
                    stored_digest: o.stored_digest,
                    stored_size: o.stored_size,
                }
            } else {
                some(copy_layer(reader, self.dst.blob_writer()?)?)
            };
            Ok((output, None, Action::Kept))
        } else if let Some(epoch) = self.options.source_date_epoch {
            let o = encode_layer_clamped(reader, self.dst.blob_writer()?, encoding, epoch)?;
            Ok((some(o.layer), Some(o.new_diff_id), Action::Encoded))
        } else {
            let o = encode_layer(reader, self.dst.blob_writer()?, encoding)?;
            Ok((some(o), None, Action::Encoded))
        }
    }
}

/// Detect a blob's compression from its first bytes, then rewind.
fn sniff_file(file: &mut File) -> io::Result<Compression> {
    let mut prefix = [0u8; layerlift_layers::SNIFF_LEN];
    let mut n = 0;
    while n < prefix.len() {
        match file.read(&mut prefix[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.rewind()?;
    Ok(sniff(&prefix[..n]))
}
