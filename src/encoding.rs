//! The canonical byte encoding behind every digest canon computes.
//!
//! Every hashed encoding starts with a version tag such as `canon/job/v3`
//! followed by a newline, then a fixed sequence of fields, each written as:
//!
//! | field kind | bytes |
//! | --- | --- |
//! | `u8`, `u32`, `u64` | little-endian, fixed width |
//! | bytes / string | `u64` length, then the bytes (strings are UTF-8) |
//! | digest | the 32 raw bytes of a SHA-256 |
//! | optional | `u8` 0 (absent) or 1 followed by the value |
//! | list | `u64` count, then each element |
//!
//! No field is ever omitted or reordered within a version; a change of layout
//! is a new version tag. The layouts are listed in `docs/ENCODINGS.md` and
//! pinned by the vectors in `fixtures/vectors/`.

use crate::digest::Digest;

/// Builds one canonical encoding.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts an encoding with its version tag, e.g. `canon/job/v3`.
    pub fn new(tag: &str) -> Encoder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b'\n');
        Encoder { buf }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Appends the 32 raw bytes of a digest.
    pub fn digest(&mut self, v: &Digest) -> &mut Self {
        self.buf.extend_from_slice(v.as_bytes());
        self
    }

    /// Appends a list count.
    pub fn count(&mut self, n: usize) -> &mut Self {
        self.u64(n as u64)
    }

    /// Appends an optional value: 0, or 1 followed by what `f` writes.
    pub fn option<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => {
                self.u8(0);
            }
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
        self
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The SHA-256 of the encoded bytes.
    pub fn digest_of(&self) -> Digest {
        Digest::of(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let mut e = Encoder::new("canon/test/v1");
        e.u8(7).u32(1).u64(2).str("ab").option(None::<u8>, |e, v| {
            e.u8(v);
        });
        e.option(Some(9u8), |e, v| {
            e.u8(v);
        });
        let mut want = b"canon/test/v1\n".to_vec();
        want.push(7);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        want.extend_from_slice(&[0, 1, 9]);
        assert_eq!(e.into_bytes(), want);
    }
}
