//! A reader that reads (and decompresses) the input on its own thread, a few buffers ahead, so that
//! reading a file or a pipe and decoding its outer compression overlap with hashing and writing the
//! entries on the main thread. Memory: at most `DEPTH + 2` buffers of `CHUNK` bytes.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 3;

/// See the module docs.
pub struct ReadAhead {
    filled: Receiver<io::Result<Vec<u8>>>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    pub fn new(mut inner: Box<dyn Read + Send>) -> Self {
        let (filled_tx, filled) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (spare, spare_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        std::thread::spawn(move || {
            loop {
                let mut buf = spare_rx.try_recv().unwrap_or_default();
                buf.resize(CHUNK, 0);
                // Fill the buffer (pipes hand out 64 KiB at a time) to keep the hand-overs few.
                let mut n = 0;
                let result = loop {
                    match inner.read(&mut buf[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == buf.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(n);
                let last = n == 0 || result.is_err();
                if n > 0 && filled_tx.send(Ok(buf)).is_err() {
                    return; // the reader is gone
                }
                match result {
                    Err(e) => {
                        let _ = filled_tx.send(Err(e));
                        return;
                    }
                    Ok(()) if last => {
                        let _ = filled_tx.send(Ok(Vec::new()));
                        return;
                    }
                    Ok(()) => {}
                }
            }
        });
        ReadAhead {
            filled,
            spare,
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            let used = std::mem::take(&mut self.current);
            let _ = self.spare.try_send(used);
            self.pos = 0;
            match self.filled.recv() {
                Ok(Ok(buf)) if buf.is_empty() => self.done = true,
                Ok(Ok(buf)) => self.current = buf,
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the reading thread stopped"));
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_everything_through_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::new(Box::new(io::Cursor::new(data.clone())));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn reports_errors_after_the_data_before_them() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "boom"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut r = ReadAhead::new(Box::new(Failing(10)));
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(out.len(), 10);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
