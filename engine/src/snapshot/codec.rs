//! The byte helpers: [`Output`] and [`Input`] stream format 3 through a buffer;
//! [`Writer`] and [`Reader`] encode and decode a ring's bytes in memory.

use std::io::{Read, Write};

use super::{SnapshotError, BUFFER, MAX_PREALLOC};

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("fewer than 2^32 entries");
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    pub(super) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// A writer through a buffer of [`BUFFER`] bytes.
pub(super) struct Output<'a> {
    pub(super) inner: &'a mut dyn Write,
    pub(super) buf: Vec<u8>,
}

impl Output<'_> {
    #[inline]
    pub(super) fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + b.len() > BUFFER {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
            if b.len() > BUFFER {
                return self.inner.write_all(b);
            }
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }
    pub(super) fn u8(&mut self, v: u8) -> std::io::Result<()> {
        self.bytes(&[v])
    }
    pub(super) fn u16(&mut self, v: u16) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    #[inline]
    pub(super) fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    #[inline]
    pub(super) fn i64(&mut self, v: i64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    pub(super) fn len(&mut self, n: usize) -> std::io::Result<()> {
        let n = u32::try_from(n).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "2^32 entries or more")
        })?;
        self.bytes(&n.to_le_bytes())
    }
    #[inline]
    pub(super) fn str(&mut self, s: &str) -> std::io::Result<()> {
        self.len(s.len())?;
        self.bytes(s.as_bytes())
    }
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.inner.flush()
    }
}

/// A reader through a buffer: fields are taken from the buffer, refilled as needed.
pub(super) struct Input<'a> {
    inner: &'a mut dyn Read,
    buf: Box<[u8]>,
    at: usize,
    end: usize,
}

impl<'a> Input<'a> {
    pub(super) fn new(inner: &'a mut dyn Read) -> Self {
        Input {
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            at: 0,
            end: 0,
        }
    }

    /// Reads more into the buffer (keeping what is unread); `false` at the end.
    pub(super) fn fill(&mut self) -> Result<bool, SnapshotError> {
        if self.at > 0 {
            self.buf.copy_within(self.at..self.end, 0);
            self.end -= self.at;
            self.at = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SnapshotError::Io(e.to_string())),
            }
        }
    }

    /// The next `n` bytes (`n` ≤ [`BUFFER`]).
    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        debug_assert!(n <= BUFFER);
        while self.end - self.at < n {
            if !self.fill()? {
                return Err(SnapshotError::Truncated);
            }
        }
        let start = self.at;
        self.at += n;
        Ok(&self.buf[start..start + n])
    }

    /// The next `n` bytes, any length, into `out` (cleared first); `out` grows with what
    /// actually arrives, not with `n`.
    pub(super) fn read_into(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), SnapshotError> {
        out.clear();
        out.reserve(n.min(MAX_PREALLOC));
        while n > 0 {
            if self.at == self.end && !self.fill()? {
                return Err(SnapshotError::Truncated);
            }
            let step = n.min(self.end - self.at);
            out.extend_from_slice(&self.buf[self.at..self.at + step]);
            self.at += step;
            n -= step;
        }
        Ok(())
    }

    #[inline]
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    #[inline]
    pub(super) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    #[inline]
    pub(super) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    #[inline]
    pub(super) fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A string, in `scratch` when longer than the buffer holds at once.
    #[inline]
    pub(super) fn string<'s>(
        &'s mut self,
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s str, SnapshotError> {
        let len = self.u32()? as usize;
        let bytes: &[u8] = if len <= BUFFER {
            self.take(len)?
        } else {
            self.read_into(len, scratch)?;
            scratch
        };
        std::str::from_utf8(bytes).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))
    }

    /// A string and the `tail` bytes after it, taken together (one bounds check for a
    /// whole item); in `scratch` when longer than the buffer holds at once.
    #[inline]
    pub(super) fn record<'s>(
        &'s mut self,
        tail: usize,
        scratch: &'s mut Vec<u8>,
    ) -> Result<(&'s str, &'s [u8]), SnapshotError> {
        let len = self.u32()? as usize;
        let bytes: &[u8] = if len + tail <= BUFFER {
            self.take(len + tail)?
        } else {
            self.read_into(len + tail, scratch)?;
            scratch
        };
        let (key, rest) = bytes.split_at(len);
        let key =
            std::str::from_utf8(key).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))?;
        Ok((key, rest))
    }

    /// Everything left, in memory (format 2 only).
    pub(super) fn remaining(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut out = self.buf[self.at..self.end].to_vec();
        self.at = self.end;
        self.inner
            .read_to_end(&mut out)
            .map_err(|e| SnapshotError::Io(e.to_string()))?;
        Ok(out)
    }

    /// How many bytes are left (read to the end).
    pub(super) fn rest(&mut self) -> Result<usize, SnapshotError> {
        let mut n = self.end - self.at;
        self.at = self.end;
        while self.fill()? {
            n += self.end;
            self.at = self.end;
        }
        Ok(n)
    }
}

/// A reader over a backup's bytes, in memory.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(super) fn string(&mut self) -> Result<String, SnapshotError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SnapshotError::Corrupt("string is not UTF-8"))
    }
}
