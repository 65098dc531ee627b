//! Bounds-checked access to guest linear memory.
//!
//! Every pointer a guest passes is checked against the memory's size; a bad
//! pointer is `EFAULT`, never a host panic. All integers are little-endian,
//! as in WebAssembly.
//!
//! The host never adds to a guest pointer itself: a structure the host
//! fills or reads (a `filestat`, an `iovec` array, a `subscription`) is
//! checked whole with [`Mem::record_mut`] / [`Mem::slice`] and then
//! addressed by offsets *inside* that checked slice, so pointer arithmetic
//! cannot overflow or wrap, and a debug and a release build of canon give
//! the same answer for every pointer.

use super::errno::Errno;

/// A guest's linear memory, borrowed for one host call.
pub struct Mem<'a>(pub &'a mut [u8]);

/// Most iovecs one read or write may pass: Linux's `IOV_MAX`.
pub const MAX_IOVS: u32 = 1024;

/// One `iovec`/`ciovec`: a guest buffer.
#[derive(Clone, Copy, Debug)]
pub struct IoVec {
    /// Guest address.
    pub ptr: u32,
    /// Length in bytes.
    pub len: u32,
}

impl IoVec {
    /// The bytes all of `iovs` name together (they may overlap, so this can
    /// exceed the memory's size).
    pub fn total(iovs: &[IoVec]) -> u64 {
        iovs.iter().map(|v| u64::from(v.len)).sum()
    }

    /// The first `max` bytes `iovs` name: later buffers dropped, the last
    /// one kept shortened (a short read or write, as Linux does past its
    /// per-call limit).
    pub fn clamp(mut iovs: Vec<IoVec>, max: u64) -> Vec<IoVec> {
        let mut left = max;
        iovs.retain_mut(|v| {
            let keep = u64::from(v.len).min(left);
            left -= keep;
            v.len = keep as u32;
            keep > 0
        });
        iovs
    }
}

impl Mem<'_> {
    fn range(&self, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        if end > self.0.len() {
            return Err(Errno::Fault);
        }
        Ok(start..end)
    }

    /// `len` bytes at `ptr`.
    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&self.0[r])
    }

    /// `len` bytes at `ptr`, writable.
    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.0[r])
    }

    /// Copies `bytes` to `ptr`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        let len = u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?;
        self.slice_mut(ptr, len)?.copy_from_slice(bytes);
        Ok(())
    }

    /// A UTF-8 string at `ptr` (WASI paths are UTF-8; anything else is `EILSEQ`).
    pub fn str(&self, ptr: u32, len: u32) -> Result<String, Errno> {
        let bytes = self.slice(ptr, len)?;
        std::str::from_utf8(bytes).map(str::to_string).map_err(|_| Errno::Ilseq)
    }

    /// Reads a `u8`.
    pub fn u8(&self, ptr: u32) -> Result<u8, Errno> {
        Ok(self.slice(ptr, 1)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&self, ptr: u32) -> Result<u16, Errno> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.slice(ptr, 2)?);
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&self, ptr: u32) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.slice(ptr, 4)?);
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&self, ptr: u32) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.slice(ptr, 8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a `u8`.
    pub fn put_u8(&mut self, ptr: u32, v: u8) -> Result<(), Errno> {
        self.write(ptr, &[v])
    }

    /// Writes a little-endian `u16`.
    pub fn put_u16(&mut self, ptr: u32, v: u16) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// Writes a little-endian `u32`.
    pub fn put_u32(&mut self, ptr: u32, v: u32) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    pub fn put_u64(&mut self, ptr: u32, v: u64) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// `len` bytes at `ptr`, checked whole, to fill in at fixed offsets.
    pub fn record_mut(&mut self, ptr: u32, len: u32) -> Result<Record<'_>, Errno> {
        self.slice_mut(ptr, len).map(Record)
    }

    /// Reads an array of `count` iovecs at `ptr`, checking each buffer.
    /// More than [`MAX_IOVS`] is `EINVAL`, as on Linux.
    pub fn iovecs(&self, ptr: u32, count: u32) -> Result<Vec<IoVec>, Errno> {
        if count > MAX_IOVS {
            return Err(Errno::Inval);
        }
        let bytes = count * 8;
        let array = self.slice(ptr, bytes)?;
        let mut out = Vec::with_capacity(count as usize);
        for raw in array.chunks_exact(8) {
            let v = IoVec { ptr: le_u32(&raw[..4]), len: le_u32(&raw[4..]) };
            self.slice(v.ptr, v.len)?;
            out.push(v);
        }
        Ok(out)
    }

    /// Spreads `data` over `iovs` (for reads); returns bytes written.
    pub fn scatter(&mut self, iovs: &[IoVec], data: &[u8]) -> Result<usize, Errno> {
        let mut done = 0;
        for v in iovs {
            if done == data.len() {
                break;
            }
            let n = (v.len as usize).min(data.len() - done);
            self.slice_mut(v.ptr, n as u32)?.copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(done)
    }
}

/// A little-endian `u32` from exactly four bytes.
fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// A structure in guest memory whose whole extent was checked: the host
/// writes its fields at offsets within it. The offsets are the host's own
/// constants (the layouts of `typenames.witx`), never guest values.
pub struct Record<'a>(&'a mut [u8]);

impl Record<'_> {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        // The layouts' offsets lie inside the records they describe; a
        // wrong constant is a host bug the WASI tests catch, not a guest
        // input, and it writes nothing rather than panicking.
        if let Some(dst) = self.0.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Writes a `u8` at `at`.
    pub fn u8(&mut self, at: usize, v: u8) {
        self.put(at, &[v]);
    }

    /// Writes a little-endian `u16` at `at`.
    pub fn u16(&mut self, at: usize, v: u16) {
        self.put(at, &v.to_le_bytes());
    }

    /// Writes a little-endian `u32` at `at`.
    pub fn u32(&mut self, at: usize, v: u32) {
        self.put(at, &v.to_le_bytes());
    }

    /// Writes a little-endian `u64` at `at`.
    pub fn u64(&mut self, at: usize, v: u64) {
        self.put(at, &v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_is_efault() {
        let mut buf = [0u8; 8];
        let mut m = Mem(&mut buf);
        assert_eq!(m.u64(1), Err(Errno::Fault));
        assert_eq!(m.put_u32(u32::MAX, 1), Err(Errno::Fault));
        assert_eq!(m.slice(8, 0).map(<[u8]>::len), Ok(0));
        m.put_u32(4, 0xdead_beef).expect("in bounds");
        assert_eq!(m.u32(4), Ok(0xdead_beef));
        // A record that would end past the memory, or past 2^32, is refused
        // whole before any field is written.
        assert!(m.record_mut(u32::MAX, 24).is_err());
        assert!(m.record_mut(4, 8).is_err());
        assert_eq!(m.iovecs(u32::MAX - 3, 1).map(|v| v.len()), Err(Errno::Fault));
    }
}
