//! Threaded programs for canon's deterministic scheduler, built for
//! `wasm32-wasip1-threads`: `threads MODE [N]`. Each mode prints what it
//! found; under canon the same job (and scheduler seed) prints the same
//! bytes every time, however many cores the host has.
//!
//! - `racy [N]`: 4 threads each add 1 to a shared counter N times (default
//!   2 000) with a separate load and store, a data race on purpose: updates
//!   are lost where the scheduler switches between the two.
//! - `mutex [N]`: the same under a `Mutex`: always exactly 4 × N.
//! - `pipeline [N]`: a producer, a squaring stage and a summing main
//!   thread joined by two channels (default N = 2 000).
//! - `deadlock`: two threads take two mutexes in opposite orders.
//! - `condvar`: a `Condvar::wait_timeout` nobody notifies (it times out),
//!   then one another thread notifies.
//! - `bomb`: spawns threads until a spawn fails.
//! - `spin`: one thread spins forever while the main thread waits for it.
//! - `pingpong [N]`: two threads each call `yield_now` N times (default
//!   100 000): under round-robin every yield is a switch, so this times
//!   the scheduler's context switch.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("help");
    let n = |default: u32| args.get(2).and_then(|a| a.parse().ok()).unwrap_or(default);
    match mode {
        "racy" => racy(n(2000)),
        "mutex" => mutex(n(2000)),
        "pipeline" => pipeline(n(2000)),
        "deadlock" => deadlock(),
        "condvar" => condvar(),
        "bomb" => bomb(),
        "spin" => spin(),
        "pingpong" => pingpong(n(100_000)),
        _ => {
            println!("threads MODE [N]: racy, mutex, pipeline, deadlock, condvar, bomb, spin, pingpong");
            std::process::exit(2);
        }
    }
}

fn racy(n: u32) {
    let counter = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let c = counter.clone();
            thread::spawn(move || {
                for i in 0..n {
                    let v = c.load(Ordering::Relaxed);
                    // Some work between the load and the store widens the window.
                    let mut x = black_box(v ^ i);
                    for _ in 0..8 {
                        x = black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    black_box(x);
                    c.store(v + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("join");
    }
    println!("racy counter {} of {}", counter.load(Ordering::Relaxed), 4 * n);
}

fn mutex(n: u32) {
    let counter = Arc::new(Mutex::new(0u64));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let c = counter.clone();
            thread::spawn(move || {
                for i in 0..n {
                    let mut g = c.lock().expect("lock");
                    let v = *g;
                    let mut x = black_box(v as u32 ^ i);
                    for _ in 0..8 {
                        x = black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    black_box(x);
                    *g = v + 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("join");
    }
    println!("mutex counter {} of {}", *counter.lock().expect("lock"), 4 * u64::from(n));
}

fn pipeline(n: u32) {
    let (tx1, rx1) = mpsc::channel::<u64>();
    let (tx2, rx2) = mpsc::sync_channel::<u64>(16);
    let producer = thread::spawn(move || {
        for i in 0..u64::from(n) {
            tx1.send(i).expect("send");
        }
    });
    let squarer = thread::spawn(move || {
        for x in rx1 {
            tx2.send(x * x + 1).expect("send");
        }
    });
    let (mut count, mut sum) = (0u64, 0u64);
    for y in rx2 {
        count += 1;
        sum = sum.wrapping_add(y);
    }
    producer.join().expect("join");
    squarer.join().expect("join");
    println!("pipeline {count} items, sum {sum}");
}

fn deadlock() {
    let a = Arc::new(Mutex::new(()));
    let b = Arc::new(Mutex::new(()));
    let barrier = Arc::new(Barrier::new(2));
    let (a2, b2, barrier2) = (a.clone(), b.clone(), barrier.clone());
    let t = thread::spawn(move || {
        let _held = b2.lock().expect("lock b");
        barrier2.wait();
        let _both = a2.lock().expect("lock a");
    });
    let _held = a.lock().expect("lock a");
    barrier.wait();
    println!("both threads hold one lock; each now takes the other's");
    let _both = b.lock().expect("lock b");
    t.join().expect("join");
    println!("unreachable: the deadlock resolved");
}

fn condvar() {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let start = Instant::now();
    {
        let (lock, cv) = &*pair;
        let guard = lock.lock().expect("lock");
        let (_guard, result) = cv.wait_timeout(guard, Duration::from_millis(250)).expect("wait");
        println!("wait_timeout with nobody to notify: timed out {}", result.timed_out());
    }
    println!("logical time passed at least 250 ms: {}", start.elapsed() >= Duration::from_millis(250));
    let pair2 = pair.clone();
    let notifier = thread::spawn(move || {
        let (lock, cv) = &*pair2;
        *lock.lock().expect("lock") = true;
        cv.notify_one();
    });
    let (lock, cv) = &*pair;
    let guard = lock.lock().expect("lock");
    let (guard, result) = cv.wait_timeout_while(guard, Duration::from_secs(3600), |ready| !*ready).expect("wait");
    println!("wait_timeout with a notifier: ready {}, timed out {}", *guard, result.timed_out());
    drop(guard);
    notifier.join().expect("join");
}

fn bomb() {
    let mut spawned = 0u32;
    loop {
        let spawn = thread::Builder::new().stack_size(64 << 10).spawn(|| {
            loop {
                thread::park();
            }
        });
        match spawn {
            Ok(_) => spawned += 1,
            Err(e) => {
                println!("spawned {spawned} threads, then: {e}");
                std::process::exit(3);
            }
        }
    }
}

fn spin() {
    let t = thread::spawn(|| {
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    });
    t.join().expect("join");
}

fn pingpong(n: u32) {
    let t = thread::spawn(move || {
        for _ in 0..n {
            thread::yield_now();
        }
    });
    for _ in 0..n {
        thread::yield_now();
    }
    t.join().expect("join");
    println!("pingpong {n} yields in each of 2 threads");
}
