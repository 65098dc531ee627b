//! WASI preview 1 error numbers (`errno` in `typenames.witx`).
//!
//! The values are those of the spec; wasi-libc's `errno.h` uses the same
//! numbers, so a guest's `errno` is exactly what the host returned.

/// A WASI preview 1 errno. Only the values canon returns are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
#[allow(missing_docs)]
pub enum Errno {
    TooBig = 1,
    Acces = 2,
    Badf = 8,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Ilseq = 25,
    Inval = 28,
    Io = 29,
    Isdir = 31,
    Loop = 32,
    Mfile = 33,
    Mlink = 34,
    Nametoolong = 37,
    Noent = 44,
    Nomem = 48,
    Nosys = 52,
    Notdir = 54,
    Notempty = 55,
    Notsock = 57,
    Notsup = 58,
    Overflow = 61,
    Perm = 63,
    Rofs = 69,
    Spipe = 70,
    Xdev = 75,
    Notcapable = 76,
}

impl Errno {
    /// The numeric value returned to the guest.
    pub fn code(self) -> i32 {
        self as u16 as i32
    }
}
