//! Keeps forks out of calls into libraries whose process-wide locks a fork would split.
//!
//! A fork copies the parent's memory but only the forking thread. If another thread is inside
//! SQLite at that moment, SQLite's process-wide mutexes (its allocator's, its VFS's) are copied
//! held, by a thread the child does not have, and the child's first SQLite call (opening its own
//! connection) waits for them forever. And if a transaction is open, SQLite's per-process record
//! of the file's locks is copied saying "locked by a connection of this process": the child's
//! own connections then find the file busy for ever. So a store wraps each call into such a
//! library in a [`ForkHold`] (a transaction that spans calls, and threads, in a
//! [`SharedForkHold`]), and the C library's `pthread_atfork` handlers (the root crate's src/fork.rs) call
//! [`before_fork`] and [`after_fork_in_parent`] / [`after_fork_in_child`]: a fork waits until no
//! thread is inside, and no thread goes in until the fork is done.
//!
//! The wait is bounded ([`FORK_WAIT`]): a call can sit in SQLite's busy handler while another
//! process holds the file's write lock, and a fork must never hang its host. A thread waiting in
//! the busy handler holds none of SQLite's process-wide mutexes, so a fork that stops waiting
//! then is very unlikely to split one.
//!
//! Atomics only, no mutex or condition variable: the child resets the gate by storing to it,
//! with no lock a vanished thread could have left held and no parked thread to wake.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a fork waits for the threads inside to come out.
pub(crate) const FORK_WAIT: Duration = Duration::from_secs(1);

/// The process's gate.
static GATE: Gate = Gate::new();

/// Threads inside held calls, and forks under way.
struct Gate {
    /// Threads inside a held call (each counted once, however deeply it nests).
    inside: AtomicUsize,
    /// Forks under way (more than one when threads fork at once).
    forking: AtomicUsize,
}

thread_local! {
    /// How deeply this thread nests holds: only the outermost one counts in `inside`, so that a
    /// nested hold never waits for a fork that waits for its own thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// While it lives, no fork of this process completes (for up to [`FORK_WAIT`]). Held by one
/// thread, which may nest holds.
#[must_use = "a fork is held off only while the hold lives"]
pub(crate) struct ForkHold {
    gate: &'static Gate,
    /// Not Send: the nesting count is the thread's.
    _thread: std::marker::PhantomData<*const ()>,
}

impl ForkHold {
    pub(crate) fn enter() -> ForkHold {
        GATE.enter()
    }
}

/// A hold that any thread may end: for a transaction that several threads' calls share. A
/// thread that holds a [`ForkHold`] must not take one (it could wait for a fork that waits for
/// it), and the calls it covers take no [`ForkHold`] of their own.
#[must_use = "a fork is held off only while the hold lives"]
pub(crate) struct SharedForkHold(&'static Gate);

impl SharedForkHold {
    pub(crate) fn enter() -> SharedForkHold {
        GATE.enter_shared()
    }
}

impl Drop for SharedForkHold {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ForkHold {
    fn drop(&mut self) {
        DEPTH.with(|depth| {
            depth.set(depth.get() - 1);
            if depth.get() == 0 {
                self.gate.inside.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

impl Gate {
    const fn new() -> Self {
        Gate { inside: AtomicUsize::new(0), forking: AtomicUsize::new(0) }
    }

    fn enter(&'static self) -> ForkHold {
        DEPTH.with(|depth| {
            if depth.get() == 0 {
                self.wait_and_count_in();
            }
            depth.set(depth.get() + 1);
        });
        ForkHold { gate: self, _thread: std::marker::PhantomData }
    }

    fn enter_shared(&'static self) -> SharedForkHold {
        self.wait_and_count_in();
        SharedForkHold(self)
    }

    /// Waits while a fork is under way, then counts one more inside.
    fn wait_and_count_in(&self) {
        loop {
            while self.forking.load(Ordering::SeqCst) != 0 {
                pause();
            }
            self.inside.fetch_add(1, Ordering::SeqCst);
            // Seen after counting itself in: a fork that began meanwhile waits for this one, or
            // this one sees it and steps back out (SeqCst on both sides).
            if self.forking.load(Ordering::SeqCst) == 0 {
                return;
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The threads other than this one that a fork from here would split.
    fn others_inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst).saturating_sub(own_holds())
    }

    fn before_fork(&self) {
        self.forking.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + FORK_WAIT;
        while self.others_inside() > 0 && Instant::now() < deadline {
            pause();
        }
    }

    fn after_fork_in_parent(&self) {
        self.forking.fetch_sub(1, Ordering::SeqCst);
    }

    fn after_fork_in_child(&self) {
        self.inside.store(own_holds(), Ordering::SeqCst);
        self.forking.store(0, Ordering::SeqCst);
    }
}

/// 1 if this thread holds the gate (at any depth), else 0.
fn own_holds() -> usize {
    usize::from(DEPTH.with(Cell::get) > 0)
}

/// Before a fork, on the forking thread: closes the gate and waits (up to [`FORK_WAIT`]) until
/// no other thread is inside.
pub(crate) fn before_fork() {
    GATE.before_fork()
}

/// After a fork, in the parent: opens the gate this fork closed.
pub(crate) fn after_fork_in_parent() {
    GATE.after_fork_in_parent()
}

/// After a fork, in the child: only the forking thread exists, so the gate holds exactly what
/// that thread holds. Plain stores, as a fork child handler must be async-signal-safe.
pub(crate) fn after_fork_in_child() {
    GATE.after_fork_in_child()
}

/// Calls into such libraries take microseconds to milliseconds: yield first, then sleep briefly.
fn pause() {
    thread_local! { static SPINS: Cell<u32> = const { Cell::new(0) }; }
    let spins = SPINS.with(|s| {
        s.set(s.get().wrapping_add(1));
        s.get()
    });
    if !spins.is_multiple_of(16) {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A value whose drop is a held call (closing a SQLite connection frees through SQLite's
/// allocator): the store keeps its connections in one.
pub(crate) struct DropHeld<T>(Option<T>);

impl<T> DropHeld<T> {
    pub(crate) fn new(value: T) -> Self {
        DropHeld(Some(value))
    }
}

impl<T> std::ops::Deref for DropHeld<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("a DropHeld is only empty while it drops")
    }
}

impl<T> std::ops::DerefMut for DropHeld<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("a DropHeld is only empty while it drops")
    }
}

impl<T> Drop for DropHeld<T> {
    fn drop(&mut self) {
        let _hold = ForkHold::enter();
        drop(self.0.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A gate of the test's own: the process's is in use by the store tests running alongside.
    fn gate() -> &'static Gate {
        Box::leak(Box::new(Gate::new()))
    }

    #[test]
    fn nested_holds_count_once_and_a_fork_from_a_holder_does_not_wait_for_itself() {
        let gate = gate();
        let outer = gate.enter();
        let inner = gate.enter();
        assert_eq!(gate.inside.load(Ordering::SeqCst), 1);
        let started = Instant::now();
        gate.before_fork();
        assert!(started.elapsed() < FORK_WAIT);
        gate.after_fork_in_parent();
        drop(inner);
        assert_eq!(gate.inside.load(Ordering::SeqCst), 1);
        drop(outer);
        assert_eq!(gate.inside.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_fork_waits_for_a_holder_and_nobody_enters_until_it_is_done() {
        let gate = gate();
        let (tx, rx) = std::sync::mpsc::channel();
        let released = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&released);
        let holder = std::thread::spawn(move || {
            let hold = gate.enter();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
            drop(hold);
        });
        rx.recv().unwrap();
        gate.before_fork();
        assert!(released.load(Ordering::SeqCst), "the fork went ahead while a thread was inside");

        let entered = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&entered);
        let late = std::thread::spawn(move || {
            let _hold = gate.enter();
            flag.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!entered.load(Ordering::SeqCst), "a thread entered during a fork");
        gate.after_fork_in_parent();
        late.join().unwrap();
        holder.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
    }

    #[test]
    fn a_shared_hold_ended_on_another_thread_lets_the_fork_go() {
        let gate = gate();
        let hold = gate.enter_shared();
        let (tx, rx) = std::sync::mpsc::channel();
        let ender = std::thread::spawn(move || {
            rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(hold);
        });
        tx.send(()).unwrap();
        let started = Instant::now();
        gate.before_fork();
        let waited = started.elapsed();
        gate.after_fork_in_parent();
        ender.join().unwrap();
        assert!(waited >= Duration::from_millis(50) && waited < FORK_WAIT, "waited {waited:?}");
        assert_eq!(gate.inside.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_fork_stops_waiting_for_a_holder_that_stays() {
        let gate = gate();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _hold = gate.enter();
            tx.send(()).unwrap();
            let _ = stop_rx.recv();
        });
        rx.recv().unwrap();
        let started = Instant::now();
        gate.before_fork();
        let waited = started.elapsed();
        gate.after_fork_in_parent();
        stop_tx.send(()).unwrap();
        holder.join().unwrap();
        assert!(waited >= FORK_WAIT, "waited {waited:?}");
    }

    #[test]
    fn the_child_keeps_only_what_the_forking_thread_holds() {
        let gate = gate();
        gate.inside.fetch_add(3, Ordering::SeqCst);
        gate.forking.fetch_add(2, Ordering::SeqCst);
        gate.after_fork_in_child();
        assert_eq!((gate.inside.load(Ordering::SeqCst), gate.forking.load(Ordering::SeqCst)), (0, 0));

        let gate = self::gate();
        let hold = gate.enter();
        gate.inside.fetch_add(3, Ordering::SeqCst);
        gate.after_fork_in_child();
        assert_eq!(gate.inside.load(Ordering::SeqCst), 1);
        drop(hold);
        assert_eq!(gate.inside.load(Ordering::SeqCst), 0);
    }
}
