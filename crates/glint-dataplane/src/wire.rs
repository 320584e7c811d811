//! Frames on the data plane's unix socket, with file descriptors beside them.
//!
//! A frame is a 4-byte big-endian length and that many bytes of JSON. A
//! frame may carry descriptors (`SCM_RIGHTS`): they are attached to the
//! `sendmsg` call that writes the frame's first byte, and the reader uses
//! `recvmsg` for every read, so that no descriptor is ever dropped by a
//! plain `read` — the kernel delivers them with the bytes they were sent
//! with, at the latest with the frame's first byte, and the reader queues
//! them until the frame that says how many it carries is complete.
//!
//! This framing is frozen (every version must read every other's frames).

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The largest frame accepted (a state with thousands of backends fits).
pub(crate) const MAX_FRAME: usize = 16 << 20;
/// The most descriptors one frame may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// The reading half: frames and the descriptors that came with them.
pub(crate) struct Reader {
    stream: Arc<UnixStream>,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

/// The writing half (one writer at a time: callers serialise).
pub(crate) struct Writer {
    stream: Arc<UnixStream>,
}

/// Splits a connected stream into its halves.
pub(crate) fn split(stream: UnixStream) -> (Reader, Writer) {
    let stream = Arc::new(stream);
    (
        Reader {
            stream: Arc::clone(&stream),
            buf: Vec::new(),
            fds: VecDeque::new(),
        },
        Writer { stream },
    )
}

impl Reader {
    /// The next frame's bytes; `None` at a clean end of stream.
    pub(crate) async fn frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > MAX_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("frame of {len} bytes is larger than {MAX_FRAME}"),
                    ));
                }
                if self.buf.len() >= 4 + len {
                    let frame = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some(frame));
                }
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed in the middle of a frame",
                    ))
                };
            }
        }
    }

    /// Takes `n` descriptors received so far (those of the frame just read).
    pub(crate) fn take_fds(&mut self, n: usize) -> io::Result<Vec<OwnedFd>> {
        if n > self.fds.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame announced {n} descriptors and {} arrived",
                    self.fds.len()
                ),
            ));
        }
        Ok(self.fds.drain(..n).collect())
    }

    /// Reads once; `false` at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = vec![0u8; 64 << 10];
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let (n, fds) = self
            .stream
            .async_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let mut iov = [IoSliceMut::new(&mut chunk)];
                let msg = rustix::net::recvmsg(
                    self.stream.as_fd(),
                    &mut iov,
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let mut fds = Vec::new();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "descriptors were truncated",
                    ));
                }
                Ok((msg.bytes, fds))
            })
            .await?;
        self.fds.extend(fds);
        if n == 0 {
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }
}

impl Writer {
    /// Writes one frame, with `fds` attached to its first byte.
    pub(crate) async fn frame(&self, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        if bytes.len() > MAX_FRAME || fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame too large",
            ));
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let mut data = Vec::with_capacity(4 + bytes.len());
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(bytes);
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let mut sent = 0usize;
        while sent < data.len() {
            let attach = sent == 0 && !borrowed.is_empty();
            let n = self
                .stream
                .async_io(Interest::WRITABLE, || {
                    let mut space = vec![
                        MaybeUninit::<u8>::uninit();
                        rustix::cmsg_space!(ScmRights(borrowed.len()))
                    ];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if attach && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                        return Err(io::Error::other("no room for the descriptors"));
                    }
                    rustix::net::sendmsg(
                        self.stream.as_fd(),
                        &[IoSlice::new(&data[sent..])],
                        &mut control,
                        SendFlags::NOSIGNAL,
                    )
                    .map_err(io::Error::from)
                })
                .await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the connection closed while writing",
                ));
            }
            sent += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[tokio::test]
    async fn frames_and_descriptors_arrive_together_and_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ra, wa) = split(a);
        let (mut rb, _wb) = split(b);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"handed over").unwrap();
        let fd = OwnedFd::from(file);
        let big = vec![b'x'; 300_000];
        // Larger than the socket's buffer: written while it is read.
        let writer = tokio::spawn({
            let big = big.clone();
            async move {
                wa.frame(b"first", &[]).await.unwrap();
                wa.frame(b"second, with a descriptor", &[fd]).await.unwrap();
                wa.frame(&big, &[]).await.unwrap();
                wa
            }
        });
        assert_eq!(rb.frame().await.unwrap().unwrap(), b"first");
        assert_eq!(
            rb.frame().await.unwrap().unwrap(),
            b"second, with a descriptor"
        );
        let mut fds = rb.take_fds(1).unwrap();
        assert!(
            rb.take_fds(1).is_err(),
            "one descriptor was sent, one arrived"
        );
        let mut file = std::fs::File::from(fds.remove(0));
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "handed over", "the same open file, not a copy");
        assert_eq!(rb.frame().await.unwrap().unwrap(), big);
        drop(writer.await.unwrap());
        drop(_ra);
        assert!(rb.frame().await.unwrap().is_none(), "clean end of stream");
    }
}
