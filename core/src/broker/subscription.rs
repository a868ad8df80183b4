//! A subscription: a push member of a group, with its handler and the scheduling state that
//! keeps at most `concurrency` workers on it at once.
//!
//! Scheduling protocol (lock-free, no lost wake-up): whoever makes the group's queue non-empty
//! looks for a member whose `try_claim` takes a slot (while fewer than `concurrency`, and fewer
//! than the queue length, are taken), and sends that member to the worker pool. A worker that
//! finishes a batch releases its slot, then looks at the queue again and claims a member if it
//! is not empty: a push that raced with the release is either seen by that look or claims a
//! slot itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::group::Group;
use super::policy::DeliveryPolicy;
use crate::handler::{Handler, Verdict};
use crate::message::Delivery;

/// Deliveries a worker's buffers hold without growing (stores choose the batch size).
pub(crate) const MAX_BATCH: usize = 16;

/// Most handler invocations one subscription may run at once.
pub const MAX_CONCURRENCY: usize = 1024;

pub(crate) struct Subscription {
    pub id: u64,
    pub group: Arc<Group>,
    pub manual_ack: bool,
    pub concurrency: usize,
    pub policy: Arc<DeliveryPolicy>,
    handler: Box<dyn Handler>,
    scheduled: AtomicUsize,
    active: AtomicBool,
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        group: Arc<Group>,
        handler: Box<dyn Handler>,
        manual_ack: bool,
        concurrency: usize,
        policy: DeliveryPolicy,
    ) -> Self {
        Subscription {
            id,
            group,
            manual_ack,
            concurrency,
            policy: Arc::new(policy),
            handler,
            scheduled: AtomicUsize::new(0),
            active: AtomicBool::new(true),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Stops delivery.
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::SeqCst);
    }

    /// Takes a worker slot if fewer than `concurrency` are taken. (Callers claim at most one
    /// slot per waiting delivery; a slot whose worker finds the queue empty is released.)
    pub(crate) fn try_claim(&self) -> bool {
        let mut cur = self.scheduled.load(Ordering::SeqCst);
        while cur < self.concurrency {
            match self.scheduled.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    pub(crate) fn release(&self) {
        self.scheduled.fetch_sub(1, Ordering::SeqCst);
    }

    /// Runs the handler; a panic becomes a nack with the panic message as reason.
    pub(crate) fn handle(&self, delivery: &Delivery) -> Verdict {
        catch_unwind(AssertUnwindSafe(|| self.handler.handle(delivery)))
            .unwrap_or_else(|panic| Verdict::Nack(Some(format!("handler panicked: {}", panic_text(&*panic)).into())))
    }
}

/// The message a panic carried (its `&str` or `String` payload), or a placeholder.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
