//! Arguments, environment, the random stream and the process: `args_*`,
//! `environ_*`, `random_get`, `proc_exit`, `proc_raise`, `sched_yield`.

use super::*;

impl WasiHost {
    // ---- args, environ, random, proc ------------------------------------

    /// `args_sizes_get`
    pub fn args_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        strings_sizes(&self.argv, &mut self.fuel_remaining, mem, count, size)
    }

    /// `args_get`
    pub fn args_get(&mut self, mem: &mut Mem, argv: u32, buf: u32) -> R {
        strings_get(&self.argv, &mut self.fuel_remaining, mem, argv, buf)
    }

    /// `environ_sizes_get`
    pub fn environ_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        strings_sizes(&self.env, &mut self.fuel_remaining, mem, count, size)
    }

    /// `environ_get`
    pub fn environ_get(&mut self, mem: &mut Mem, environ: u32, buf: u32) -> R {
        strings_get(&self.env, &mut self.fuel_remaining, mem, environ, buf)
    }

    /// `random_get`: the job's ChaCha20 stream, never host entropy.
    pub fn random_get(&mut self, mem: &mut Mem, buf: u32, len: u32) -> R {
        mem.slice(buf, len)?;
        self.charge(cost::random(u64::from(len)))?;
        let dst = mem.slice_mut(buf, len)?;
        self.rng.fill_bytes(dst);
        Ok(())
    }

    /// `proc_exit`
    pub fn proc_exit(&mut self, code: u32) -> R {
        Err(Fault::Stop(Stop::Exit(code)))
    }

    /// `proc_raise`: signals are not part of the sandbox.
    pub fn proc_raise(&mut self, _sig: u32) -> R {
        Err(Errno::Nosys.into())
    }

    /// `sched_yield`: there is one thread; yielding is a no-op.
    pub fn sched_yield(&mut self) -> R {
        Ok(())
    }
}

/// Writes how many `strings` there are and the bytes they take with a NUL
/// after each; summing the lengths is a walk, a step a string.
fn strings_sizes(strings: &[String], fuel: &mut u64, mem: &mut Mem, count_ptr: u32, size_ptr: u32) -> R {
    pay(fuel, cost::steps(strings.len() as u64))?;
    let size: usize = strings.iter().map(|s| s.len() + 1).sum();
    mem.put_u32(count_ptr, u32::try_from(strings.len()).map_err(|_| Errno::Overflow)?)?;
    mem.put_u32(size_ptr, u32::try_from(size).map_err(|_| Errno::Overflow)?)?;
    Ok(())
}

/// Writes the pointer array at `ptrs` and the NUL-terminated `strings` at
/// `buf`, each checked whole before anything is written.
fn strings_get(strings: &[String], fuel: &mut u64, mem: &mut Mem, ptrs: u32, buf: u32) -> R {
    let count = u32::try_from(strings.len()).map_err(|_| Errno::Overflow)?;
    let size = u32::try_from(strings.iter().map(|s| s.len() + 1).sum::<usize>()).map_err(|_| Errno::Overflow)?;
    pay(fuel, cost::bytes(u64::from(size) + 4 * u64::from(count)))?;
    mem.slice(ptrs, count.checked_mul(4).ok_or(Errno::Fault)?)?;
    let area = mem.slice_mut(buf, size)?;
    let mut offsets = Vec::with_capacity(strings.len());
    let mut at = 0usize;
    for s in strings {
        offsets.push(at);
        area[at..at + s.len()].copy_from_slice(s.as_bytes());
        area[at + s.len()] = 0;
        at += s.len() + 1;
    }
    // `buf + offset` stays below `buf + size`, which the check above
    // proved lies inside the memory, so it is a valid u32.
    let mut array = mem.record_mut(ptrs, count * 4)?;
    for (i, off) in offsets.into_iter().enumerate() {
        array.u32(4 * i, (u64::from(buf) + off as u64) as u32);
    }
    Ok(())
}
