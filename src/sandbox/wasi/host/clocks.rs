//! Clocks and `poll_oneoff`: logical time, a function of the fuel consumed
//! and of virtual sleeps, never the host's clock.

use super::*;

impl WasiHost {
    // ---- clocks ----------------------------------------------------------

    /// Logical nanoseconds since the start of the run.
    pub(super) fn logical_ns(&self) -> u64 {
        let used = self.fuel_budget.saturating_sub(self.fuel_remaining);
        used.saturating_mul(NS_PER_FUEL).saturating_add(self.sleep_ns)
    }

    /// The monotonic clock when the job has `fuel_remaining` fuel left: the
    /// scheduler's clock for wait deadlines.
    pub fn monotonic_at(&mut self, fuel_remaining: u64) -> u64 {
        self.fuel_remaining = fuel_remaining;
        self.logical_ns()
    }

    /// Advances logical time by `ns` at once, as a sleep does: the
    /// scheduler's way to reach a waiting thread's deadline when no thread
    /// can run.
    pub fn sleep(&mut self, ns: u64) {
        self.sleep_ns = self.sleep_ns.saturating_add(ns);
    }

    pub(super) fn now(&self, clock: u32) -> Result<u64, Errno> {
        match clock {
            0 => Ok(self.epoch_ns.saturating_add(self.logical_ns())),
            1..=3 => Ok(self.logical_ns()),
            _ => Err(Errno::Inval),
        }
    }

    /// Wall-clock time now, for timestamps on files.
    pub(super) fn wall(&self) -> u64 {
        self.epoch_ns.saturating_add(self.logical_ns())
    }

    /// `clock_res_get`
    pub fn clock_res_get(&mut self, mem: &mut Mem, id: u32, out: u32) -> R {
        self.now(id)?;
        mem.put_u64(out, CLOCK_RESOLUTION_NS)?;
        Ok(())
    }

    /// `clock_time_get`
    pub fn clock_time_get(&mut self, mem: &mut Mem, id: u32, _precision: u64, out: u32) -> R {
        let t = self.now(id)?;
        mem.put_u64(out, t)?;
        Ok(())
    }

    // ---- poll -----------------------------------------------------------

    /// `poll_oneoff`: descriptors are always ready; with only clock
    /// subscriptions, logical time jumps to the earliest deadline at once.
    pub fn poll_oneoff(&mut self, mem: &mut Mem, subs: u32, events: u32, nsubs: u32, nevents_out: u32) -> R {
        if nsubs == 0 || nsubs > MAX_POLL_SUBSCRIPTIONS {
            return Err(Errno::Inval.into());
        }
        // Both arrays are checked whole; fields are then read and written
        // at offsets inside them (`nsubs` is at most 4096, so the sizes fit).
        mem.slice(subs, nsubs * 48)?;
        mem.slice_mut(events, nsubs * 32)?;
        self.charge(cost::steps(u64::from(nsubs)) + cost::bytes(80 * u64::from(nsubs)))?;
        let raw = mem.slice(subs, nsubs * 48)?.to_vec();
        struct Sub {
            userdata: u64,
            tag: u8,
            clock: u32,
            deadline: Option<u64>,
            fd: u32,
        }
        let field = |rec: &[u8], at: usize, n: usize| rec[at..at + n].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let mut list = Vec::with_capacity(nsubs as usize);
        for rec in raw.chunks_exact(48) {
            let userdata = field(rec, 0, 8);
            let tag = rec[8];
            let mut sub = Sub { userdata, tag, clock: 0, deadline: None, fd: 0 };
            match tag {
                0 => {
                    sub.clock = field(rec, 16, 4) as u32;
                    let timeout = field(rec, 24, 8);
                    let abstime = field(rec, 40, 2) & 1 != 0;
                    sub.deadline = self.now(sub.clock).ok().map(|now| if abstime { timeout } else { now.saturating_add(timeout) });
                }
                1 | 2 => sub.fd = field(rec, 16, 4) as u32,
                _ => return Err(Errno::Inval.into()),
            }
            list.push(sub);
        }
        let mut out: Vec<(u64, u16, u8, u64)> = Vec::new();
        // Descriptor subscriptions and invalid clocks complete at once.
        for s in &list {
            match s.tag {
                0 if s.deadline.is_none() => out.push((s.userdata, Errno::Inval as u16, 0, 0)),
                0 => {}
                _ => {
                    let (err, nbytes) = match self.fds.get(&s.fd) {
                        None => (Errno::Badf as u16, 0),
                        Some(Fd::Stdin) if s.tag == 1 => (0, (self.stdin.len() - self.stdin_pos.min(self.stdin.len())) as u64),
                        Some(Fd::File { ino, offset, .. }) if s.tag == 1 => (0, self.vfs.get(*ino).map(|n| n.size()).unwrap_or(0).saturating_sub(*offset)),
                        Some(_) => (0, 0),
                    };
                    out.push((s.userdata, err, s.tag, nbytes));
                }
            }
        }
        if out.is_empty() {
            // Only valid clock subscriptions: sleep until the earliest one,
            // measured on its own clock, then fire every one that is due.
            let wait = list.iter().filter_map(|s| s.deadline.map(|d| d.saturating_sub(self.now(s.clock).unwrap_or(0)))).min().unwrap_or(0);
            self.sleep_ns = self.sleep_ns.saturating_add(wait);
            for s in &list {
                if let Some(d) = s.deadline
                    && self.now(s.clock).unwrap_or(0) >= d
                {
                    out.push((s.userdata, 0, 0, 0));
                }
            }
        }
        let n = out.len() as u32;
        let mut rec = mem.record_mut(events, n * 32)?;
        for (i, (userdata, err, tag, nbytes)) in out.into_iter().enumerate() {
            let at = i * 32;
            rec.u64(at, userdata);
            rec.u16(at + 8, err);
            rec.u8(at + 10, tag);
            for pad in [11, 12, 13, 14, 15] {
                rec.u8(at + pad, 0);
            }
            rec.u64(at + 16, nbytes);
            rec.u64(at + 24, 0);
        }
        mem.put_u32(nevents_out, n)?;
        Ok(())
    }
}
