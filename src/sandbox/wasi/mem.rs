//! Bounds-checked access to guest linear memory.
//!
//! Every pointer a guest passes is checked against the memory's size; a bad
//! pointer is `EFAULT`, never a host panic. All integers are little-endian,
//! as in WebAssembly.

use super::errno::Errno;

/// A guest's linear memory, borrowed for one host call.
pub struct Mem<'a>(pub &'a mut [u8]);

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

    /// Reads an array of `count` iovecs at `ptr`, checking each buffer.
    pub fn iovecs(&self, ptr: u32, count: u32) -> Result<Vec<IoVec>, Errno> {
        let bytes = count.checked_mul(8).ok_or(Errno::Fault)?;
        self.slice(ptr, bytes)?;
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = ptr + i * 8;
            let v = IoVec { ptr: self.u32(at)?, len: self.u32(at + 4)? };
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
    }
}
