//! How an archive being read hands its layers over ([`crate::Options::handover`]): as values on a
//! channel, not through callbacks. The reader sends each layer as soon as it has one — published
//! into the layout ([`Layer::Ready`]), or, a large layer being compressed, when its compression
//! starts ([`Layer::Streaming`], a [`GrowingBlob`] whose digest is known at the end) — to every
//! receiver of the channel ([`handover`] makes one per destination; a streaming layer reaches
//! each as a reader of its own). Reading stops ([`ArchiveError::Stopped`](crate::ArchiveError::Stopped))
//! once every receiver is dropped or closed: that is how a caller that failed meanwhile says
//! "stop".

use crate::growing::GrowingBlob;
use layerlift_manifest::Digest;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// A layer published into the layout while the archive was still being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedBlob {
    /// The layer was handed over before, while it was compressed ([`Layer::Streaming`]).
    pub streamed: bool,
    /// The sha256 its bytes were hashed to while being written: its name in the layout.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// `blobs/sha256/<hex>` in the layout.
    pub path: PathBuf,
    /// The archive entry it was read from (its name in the archive; empty when not from one).
    pub entry: String,
}

/// One layer handed over while the archive is read.
#[derive(Debug)]
pub enum Layer {
    /// In the layout under its digest: ready to be read as a file. Sent once per digest.
    Ready(PublishedBlob),
    /// Being compressed into the layout: readable while it grows, its digest known at the end.
    /// The same layer comes again as [`Layer::Ready`] (with `streamed` set) once it is finished.
    Streaming(GrowingBlob),
}

/// Make a channel with `receivers` receivers (one per consumer: push makes one per
/// destination). Every layer sent reaches every receiver that is still open.
pub fn handover(receivers: usize) -> (LayerSender, Vec<LayerReceiver>) {
    let (outs, ins): (Vec<Out>, Vec<LayerReceiver>) = (0..receivers)
        .map(|_| {
            let (tx, rx) = mpsc::channel();
            let open = Arc::new(AtomicBool::new(true));
            let out = Out {
                tx,
                open: Arc::clone(&open),
            };
            (out, LayerReceiver { rx, open })
        })
        .unzip();
    let sender = LayerSender {
        outs: outs.into(),
        stream_min: None,
        stage_streams: false,
    };
    (sender, ins)
}

/// The reader's end of a [`handover`] channel, given to it in [`crate::Options::handover`].
/// Receivers see the channel end when every clone of it is dropped (the read is over).
#[derive(Debug, Clone)]
pub struct LayerSender {
    outs: Arc<[Out]>,
    /// Hand over uncompressed layers of at least this many bytes while they are compressed.
    stream_min: Option<u64>,
    /// Stage streamed layers of a seekable input in the layout too ([`LayerSender::staging`]).
    stage_streams: bool,
}

#[derive(Debug)]
struct Out {
    tx: mpsc::Sender<Layer>,
    open: Arc<AtomicBool>,
}

impl LayerSender {
    /// Also hand over every uncompressed layer of at least `min_bytes` that is compressed on the
    /// way ([`Options::encoding`](crate::Options::encoding)) the moment its compression starts,
    /// as [`Layer::Streaming`].
    pub fn streaming(mut self, min_bytes: u64) -> Self {
        self.stream_min = Some(min_bytes);
        self
    }

    /// Also write the streamed layers of a seekable input (an archive file, a directory) into
    /// the layout. Without it such a layer goes to its readers through memory only (a
    /// [`crate::GrowingBlob`] in memory) and the layout lacks it; a layer of a pipe or a
    /// compressed archive is staged either way (there is nothing to read again).
    pub fn staging(mut self) -> Self {
        self.stage_streams = true;
        self
    }

    /// Whether streamed layers of a seekable input are staged too ([`LayerSender::staging`]).
    pub(crate) fn stages_streams(&self) -> bool {
        self.stage_streams
    }

    /// Whether a layer of `size` uncompressed bytes is to be handed over while it is compressed.
    pub(crate) fn streams(&self, size: u64) -> bool {
        self.stream_min.is_some_and(|min| size >= min)
    }

    /// Whether every receiver is gone: reading should stop. One atomic load per receiver, asked
    /// after every buffer.
    pub fn stopped(&self) -> bool {
        self.outs.iter().all(|o| !o.open.load(Ordering::Relaxed))
    }

    /// Send `layer` to every open receiver (a streaming layer as a reader of its own each). A
    /// receiver that is gone is skipped from then on. The archive reader sends; so may any
    /// other source of layers (and tests).
    pub fn send(&self, layer: Layer) {
        let open: Vec<&Out> = self
            .outs
            .iter()
            .filter(|o| o.open.load(Ordering::Relaxed))
            .collect();
        let Some((last, others)) = open.split_last() else {
            return;
        };
        for out in others {
            let copy = match &layer {
                Layer::Ready(b) => Layer::Ready(b.clone()),
                // Without a file handle of its own this receiver does not get the layer: the
                // consumer finds it missing when it waits for it (push's pool: `Lost`).
                Layer::Streaming(g) => match g.try_clone() {
                    Ok(g) => Layer::Streaming(g),
                    Err(_) => continue,
                },
            };
            out.deliver(copy);
        }
        last.deliver(layer);
    }
}

impl Out {
    fn deliver(&self, layer: Layer) {
        if self.tx.send(layer).is_err() {
            self.open.store(false, Ordering::Relaxed);
        }
    }
}

/// A consumer's end of a [`handover`] channel.
#[derive(Debug)]
pub struct LayerReceiver {
    rx: mpsc::Receiver<Layer>,
    open: Arc<AtomicBool>,
}

impl LayerReceiver {
    /// The next layer, waiting for it; `None` once the read is over (every sender dropped) and
    /// every layer sent was received.
    pub fn recv(&self) -> Option<Layer> {
        self.rx.recv().ok()
    }

    /// A handle that closes this receiver from another thread (while this one waits in
    /// [`LayerReceiver::recv`]): nothing more is sent to it, and once every receiver is closed
    /// or dropped the reader stops.
    pub fn closer(&self) -> Closer {
        Closer(Arc::clone(&self.open))
    }
}

impl Drop for LayerReceiver {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

/// Closes one [`LayerReceiver`] ([`LayerReceiver::closer`]).
#[derive(Debug, Clone)]
pub struct Closer(Arc<AtomicBool>);

impl Closer {
    /// Send nothing more to the receiver.
    pub fn close(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether the receiver is closed (or dropped).
    pub fn is_closed(&self) -> bool {
        !self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::growing::Feed;

    fn ready(n: u8) -> Layer {
        Layer::Ready(PublishedBlob {
            streamed: false,
            digest: Digest::of(&[n]),
            size: 1,
            path: PathBuf::from(format!("blob-{n}")),
            entry: format!("{n}/layer.tar"),
        })
    }

    fn digest_of(layer: Option<Layer>) -> Option<Digest> {
        match layer {
            Some(Layer::Ready(b)) => Some(b.digest),
            _ => None,
        }
    }

    #[test]
    fn every_receiver_gets_every_layer_and_the_end() {
        let (tx, rxs) = handover(2);
        tx.send(ready(1));
        tx.send(ready(2));
        drop(tx);
        for rx in &rxs {
            assert_eq!(digest_of(rx.recv()), Some(Digest::of(&[1])));
            assert_eq!(digest_of(rx.recv()), Some(Digest::of(&[2])));
            assert!(rx.recv().is_none(), "the end, once the sender is dropped");
        }
    }

    #[test]
    fn reading_stops_only_when_every_receiver_is_gone() {
        let (tx, mut rxs) = handover(2);
        assert!(!tx.stopped());
        let second = rxs.pop().unwrap();
        drop(rxs);
        assert!(!tx.stopped(), "one receiver is still open");
        tx.send(ready(1));
        assert_eq!(digest_of(second.recv()), Some(Digest::of(&[1])));
        second.closer().close();
        assert!(tx.stopped(), "closed while still held");
        tx.send(ready(2));
        drop(tx);
        assert!(
            second.recv().is_none(),
            "nothing is sent to a closed receiver"
        );
    }

    #[test]
    fn a_dropped_receiver_is_seen_at_the_next_send_too() {
        let (tx, rxs) = handover(1);
        let closer = rxs[0].closer();
        drop(rxs);
        assert!(closer.is_closed());
        assert!(tx.stopped());
        tx.send(ready(1));
    }

    #[test]
    fn a_streaming_layer_reaches_each_receiver_as_a_reader_of_its_own() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        let mut file = std::fs::File::create(&path).unwrap();
        let (feed, growing) = Feed::new(&path, "layer.tar", 6).unwrap();
        let (tx, rxs) = handover(3);
        tx.send(Layer::Streaming(growing));
        file.write_all(b"abcdef").unwrap();
        feed.finish(Digest::of(b"abcdef"), 6);
        for rx in rxs {
            let Some(Layer::Streaming(mut g)) = rx.recv() else {
                panic!("not a streaming layer");
            };
            let mut bytes = Vec::new();
            g.read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes, b"abcdef", "each from the start");
        }
    }
}
