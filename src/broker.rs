//! The broker handle from C: create, free, publish, ack/nack, join, close.

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{fail, guard, Failure};
use super::cancel::{brokk_cancel, optional_cancel};
use super::status::brokk_status;
use super::strings::{optional_c_text, optional_text, output, reference};
use brokk_core::Broker;
use brokk_core::Error;
use brokk_core::Reason;
use brokk_core::{
    Backpressure, BrokerConfig, RetentionPolicy, DEFAULT_MAX_PAYLOAD, DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION_LIMIT,
};

// Literals, because cbindgen writes only literals into the header; the asserts below keep them
// equal to the core's values.

/// Longest message id, in bytes.
pub const BROKK_ID_MAX_LEN: usize = 128;
/// Size of a buffer that holds any message id and its terminating NUL.
pub const BROKK_ID_BUFFER_SIZE: usize = 129;
/// Longest topic name, in bytes.
pub const BROKK_TOPIC_MAX_LEN: usize = 255;
/// Most handler invocations one subscription may run at once.
pub const BROKK_MAX_CONCURRENCY: u32 = 1024;
/// Default largest payload, in bytes (1 MiB).
pub const BROKK_DEFAULT_MAX_PAYLOAD: u64 = 1048576;
/// Default number of messages a topic retains while it has no consumer group.
pub const BROKK_DEFAULT_RETENTION_LIMIT: u64 = 100000;
/// Largest listener_queue_capacity (its slots are allocated up front).
pub const BROKK_MAX_LISTENER_QUEUE: u32 = 1048576;
/// Default number of deliveries a consumer group's queue holds before backpressure applies.
pub const BROKK_DEFAULT_QUEUE_CAPACITY: u64 = 100000;
/// A timeout_ms that means "wait without limit".
pub const BROKK_WAIT_FOREVER: u64 = u64::MAX;
/// The largest value of a time option in a backend URL (busy_timeout_ms, lease_ms,
/// timeout_ms): 2^31 - 1 milliseconds, about 24.8 days.
pub const BROKK_MAX_OPTION_MS: u64 = 2147483647;

const _: () = {
    assert!(BROKK_ID_MAX_LEN == brokk_core::MAX_ID_LEN);
    assert!(BROKK_ID_BUFFER_SIZE == BROKK_ID_MAX_LEN + 1);
    assert!(BROKK_TOPIC_MAX_LEN == brokk_core::MAX_TOPIC_LEN);
    assert!(BROKK_MAX_CONCURRENCY as usize == brokk_core::MAX_CONCURRENCY);
    assert!(BROKK_DEFAULT_MAX_PAYLOAD as usize == DEFAULT_MAX_PAYLOAD);
    assert!(BROKK_DEFAULT_RETENTION_LIMIT as usize == DEFAULT_RETENTION_LIMIT);
    assert!(BROKK_DEFAULT_QUEUE_CAPACITY as usize == DEFAULT_QUEUE_CAPACITY);
    assert!(BROKK_MAX_LISTENER_QUEUE as usize == brokk_core::MAX_LISTENER_QUEUE);
    assert!(BROKK_MAX_OPTION_MS == brokk_core::MAX_OPTION_MILLIS);
};

/// A message broker. Create with brokk_broker_new, release with brokk_broker_free.
/// Threads: every function taking `const brokk_broker *` may be called from any thread,
/// concurrently, until brokk_broker_free.
/// Stores: on a SQLite or Redis store, every call that reads or writes the store (publish,
/// subscribe, unsubscribe, fetch, take, ack, nack, count, purge, stats, join) may also fail
/// with UNAVAILABLE (a file locked by another process past busy_timeout_ms; a server that could
/// not be reached: the request never left) or STORAGE_FAILED (an I/O error, a full disk, a
/// script error); such a failure changes nothing, and the call may be retried. On Redis a call
/// that changes the store may also fail with OUTCOME_UNKNOWN: the request reached the server
/// but its answer did not come back, so it may or may not have taken effect (docs/redis.md).
pub struct brokk_broker {
    pub(crate) inner: Broker,
}

/// Options of brokk_broker_new. Zero-initialise, then set what you need: zero means default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct brokk_broker_options {
    /// Worker threads that run handlers; 0 means one per CPU, at least 2; at most 1024.
    pub worker_threads: u32,
    /// Largest payload accepted by publish, in bytes; 0 means BROKK_DEFAULT_MAX_PAYLOAD;
    /// at most 4 GiB - 1.
    pub max_payload_bytes: u64,
    /// Listener events that may wait for the listener thread before further events are dropped
    /// (and counted in listener_events_dropped); 0 means 65536; at most BROKK_MAX_LISTENER_QUEUE.
    pub listener_queue_capacity: u32,
    /// Messages a topic keeps while it has no consumer group, for the first named group (or
    /// fetch) to arrive; 0 means BROKK_DEFAULT_RETENTION_LIMIT.
    pub retention_limit: u64,
    /// What happens past the limit: one of the BROKK_RETENTION_* values; 0 (REJECT) by default.
    pub retention_policy: brokk_retention_policy,
    /// Deliveries one consumer group's queue may hold before backpressure applies; 0 means
    /// BROKK_DEFAULT_QUEUE_CAPACITY. A soft bound: publishers admitted at the same moment may
    /// each add their messages.
    pub queue_capacity: u64,
    /// What publish does when a group's queue is full: one of the BROKK_BACKPRESSURE_* values;
    /// 0 (BLOCK) by default.
    pub backpressure: brokk_backpressure,
    /// Longest wait of a publish under BROKK_BACKPRESSURE_BLOCK, in milliseconds; 0 means 5000.
    pub publish_timeout_ms: u64,
}

/// What publish does when a consumer group's queue holds queue_capacity deliveries. A plain
/// integer, checked: unknown values get BROKK_STATUS_INVALID_ARGUMENT.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct brokk_backpressure(pub u32);

/// Wait for room up to publish_timeout_ms, then fail with BROKK_STATUS_FULL. Publishing from a
/// handler into its own full group waits out the timeout: its worker cannot drain meanwhile.
pub const BROKK_BACKPRESSURE_BLOCK: brokk_backpressure = brokk_backpressure(0);
/// Fail at once with BROKK_STATUS_FULL; nothing is published.
pub const BROKK_BACKPRESSURE_FAIL: brokk_backpressure = brokk_backpressure(1);
/// Publish anyway; the full group does not get the message (counted full_dropped).
pub const BROKK_BACKPRESSURE_DROP: brokk_backpressure = brokk_backpressure(2);

impl brokk_backpressure {
    fn to_core(self) -> Result<Backpressure, Failure> {
        Ok(match self {
            BROKK_BACKPRESSURE_BLOCK => Backpressure::Block,
            BROKK_BACKPRESSURE_FAIL => Backpressure::Fail,
            BROKK_BACKPRESSURE_DROP => Backpressure::Drop,
            brokk_backpressure(n) => {
                return Err(fail(brokk_status::InvalidArgument, format!("unknown backpressure {n}")))
            }
        })
    }
}

/// What a topic with no consumer group does with a message once it retains retention_limit of
/// them. A plain integer, checked: unknown values get BROKK_STATUS_INVALID_ARGUMENT.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct brokk_retention_policy(pub u32);

/// Publish fails with BROKK_STATUS_FULL and nothing is kept: no message is lost silently.
pub const BROKK_RETENTION_REJECT: brokk_retention_policy = brokk_retention_policy(0);
/// The oldest retained message is discarded (counted retained_dropped).
pub const BROKK_RETENTION_DROP_OLDEST: brokk_retention_policy = brokk_retention_policy(1);
/// The new message is discarded (counted retained_dropped).
pub const BROKK_RETENTION_DROP_NEWEST: brokk_retention_policy = brokk_retention_policy(2);
/// Nothing is retained: a message published while its topic has no group is counted unrouted
/// and goes nowhere (plain publish/subscribe).
pub const BROKK_RETENTION_OFF: brokk_retention_policy = brokk_retention_policy(3);

impl brokk_retention_policy {
    fn to_core(self) -> Result<RetentionPolicy, Failure> {
        Ok(match self {
            BROKK_RETENTION_REJECT => RetentionPolicy::Reject,
            BROKK_RETENTION_DROP_OLDEST => RetentionPolicy::DropOldest,
            BROKK_RETENTION_DROP_NEWEST => RetentionPolicy::DropNewest,
            BROKK_RETENTION_OFF => RetentionPolicy::Off,
            brokk_retention_policy(n) => {
                return Err(fail(brokk_status::InvalidArgument, format!("unknown retention_policy {n}")))
            }
        })
    }
}

pub(crate) fn timeout(ms: u64) -> Option<Duration> {
    (ms != BROKK_WAIT_FOREVER).then(|| Duration::from_millis(ms))
}

/// Creates a broker on the backend `url` names. Worker threads and the listener thread start
/// now.
/// - "memory://" (the default) keeps queues in this process.
/// - "sqlite:///absolute/path.db" (or "sqlite://relative/path.db") keeps them in a SQLite
///   file, created if missing, that several processes may share: members of one named group
///   compete across processes, and every group gets each message any process publishes.
///   Options: `synchronous=normal|full` (full: every commit survives a power loss),
///   `busy_timeout_ms=N` (how long to wait for another process's lock, 5000 by default, 0 to
///   2147483647), `lease_ms=N` (how long a delivery stays this broker's if it stops renewing
///   it, say because it crashed; 30000 by default, 3 to 2147483647). A file that is not a
///   usable store is refused and left untouched.
/// - "redis://[user:password@]host:port/db" (one server), "redis+cluster://h:p,h:p" or
///   "redis+sentinel://h:p,h:p/MASTER" (the master Redis Sentinel names, followed across a
///   failover) keeps them on a Redis server that processes on many hosts may share, with the
///   same semantics; "rediss://" and "rediss+sentinel://" over TLS (options `ca=`, `cert=`,
///   `key=`, `server_name=`, `insecure=true`).
///   Options: `prefix=NAME` (key prefix, "brokk" by default), `lease_ms=N` (as for SQLite),
///   `timeout_ms=N` (connect and answer timeout of every call, 5000 by default, 1 to
///   2147483647), `replicas=N` (each change waits for N replicas). Opening reaches the server
///   once; see docs/redis.md.
///
/// Options go in the URL's query (`?a=1&b=2`); an unknown option or a value out of its range
/// is INVALID_URL, naming the range.
/// Copies: url and options; no pointer is kept. `url` is NUL-terminated; NULL means
/// "memory://". `options` may be NULL for defaults.
/// Out: on BROKK_STATUS_OK, `*broker_out` holds a new broker that the caller owns and must
/// release with brokk_broker_free; untouched otherwise.
/// Threads: any.
/// Fork: the first call registers pthread_atfork handlers for the process. In a child, every
/// call on a broker the parent made returns FORKED and does nothing (freeing it there is safe
/// and releases nothing); the child makes its own. A fork waits (at most one second) until no
/// brokk thread is inside SQLite or holds a SQLite write transaction open, so that a child can
/// open a SQLite store its parent is busy in.
/// Errors: NULL_ARGUMENT (broker_out), INVALID_UTF8, INVALID_URL, UNSUPPORTED_BACKEND
/// (rediss+cluster://, or a backend this build of the library leaves out), INVALID_ARGUMENT (options out of range, or threads could not be started),
/// INCOMPATIBLE_STORE (not a brokk store, a newer schema, damaged), CANNOT_OPEN_STORE (a
/// directory, a missing folder, no permission; no server at a Redis address, wrong
/// credentials), UNAVAILABLE (locked by another process past busy_timeout_ms; a Redis server
/// that did not answer in time: no broker was made, retrying later may succeed),
/// STORAGE_FAILED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_new(
    url: *const c_char,
    options: *const brokk_broker_options,
    broker_out: *mut *mut brokk_broker,
) -> brokk_status {
    guard(|| {
        super::fork::watch_forks();
        // SAFETY: `broker_out` is NULL or a writable slot for this call.
        let out = unsafe { output(broker_out, "broker_out") }?;
        // SAFETY: `url` is NULL or a NUL-terminated string for this call.
        let url = unsafe { optional_c_text(url, "url") }?.unwrap_or("memory://");
        // SAFETY: `options` is NULL or a readable struct for this call (copied here).
        let opts = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let config = BrokerConfig {
            worker_threads: opts.worker_threads as usize,
            max_payload_bytes: opts.max_payload_bytes.try_into().unwrap_or(usize::MAX),
            listener_queue_capacity: opts.listener_queue_capacity as usize,
            retention_limit: opts.retention_limit.try_into().unwrap_or(usize::MAX),
            retention_policy: opts.retention_policy.to_core()?,
            queue_capacity: opts.queue_capacity.try_into().unwrap_or(usize::MAX),
            backpressure: opts.backpressure.to_core()?,
            publish_timeout: (opts.publish_timeout_ms > 0).then(|| Duration::from_millis(opts.publish_timeout_ms)),
            ..BrokerConfig::from_url(url)?
        };
        let broker = Broker::with_config(&config)?;
        *out = Box::into_raw(Box::new(brokk_broker { inner: broker }));
        Ok(())
    })
}

/// Releases a broker. If it is not closed yet it is closed with force (waiting deliveries are
/// dropped). Then it waits for handler and listener invocations running at that moment to
/// return, and runs every remaining finaliser (free_user_data) on this thread. After it
/// returns, no handler, listener or finaliser of this broker runs again, whatever the order in
/// which the host releases things. A handler or listener that never returns blocks this call
/// even after a close that timed out: make callbacks return (a close with a timeout bounds how
/// long the broker waits for deliveries, not for a callback that is stuck).
/// Called from inside one of this broker's handlers or listeners, it returns at once and the
/// same teardown completes on a brokk thread when that callback returns.
/// Takes: `broker`, which must not be used afterwards by any thread. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_free(broker: *mut brokk_broker) {
    super::boundary::guard_value(|| {
        if !broker.is_null() {
            // SAFETY: non-NULL, so it came from brokk_broker_new's Box, and the caller hands it
            // over: no thread uses it afterwards.
            drop(unsafe { Box::from_raw(broker) });
        }
    })
}

/// Releases a broker without waiting for its callbacks. Like brokk_broker_free, it closes the
/// broker with force if it is not closed yet; but handler and listener invocations running at
/// that moment are not waited for: they finish on their own, and the teardown (the finalisers,
/// free_user_data, included) completes on a brokk thread once the last of them returns. Use it
/// after a forced close that must return promptly whatever a handler is doing; use
/// brokk_broker_free when the host needs every callback finished before it goes on.
/// Takes: `broker`, which must not be used afterwards by any thread. NULL is a no-op.
/// Threads: any thread, including from inside a handler or listener of this broker.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_release(broker: *mut brokk_broker) {
    super::boundary::guard_value(|| {
        if !broker.is_null() {
            // SAFETY: non-NULL, so it came from brokk_broker_new's Box, and the caller hands it
            // over: no thread uses it afterwards.
            unsafe { Box::from_raw(broker) }.inner.release();
        }
    })
}

/// Acks a delivery awaiting a manual ack (its handler returned BROKK_VERDICT_LATER, or is still
/// running): counted processed.
/// Threads: any thread, including from inside the handler that received the delivery.
/// Errors: NULL_ARGUMENT, UNKNOWN_DELIVERY (never issued), ALREADY_SETTLED (acked or nacked
/// before, or auto-acked), CLOSED, UNAVAILABLE and STORAGE_FAILED (a store's failure: the
/// delivery still awaits its ack), OUTCOME_UNKNOWN (Redis: the ack may or may not have been
/// applied).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_ack(broker: *const brokk_broker, delivery_id: u64) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        unsafe { reference(broker, "broker") }?.inner.ack(delivery_id)?;
        Ok(())
    })
}

/// Acks the `count` deliveries in `ids` (as brokk_broker_ack each, in order): one call for a
/// batch taken with brokk_broker_fetch_batch. A failing id does not stop the others.
/// Copies: nothing is kept after return.
/// Out: if `acked_out` is not NULL, it holds how many were acked, whatever the status (0 when
/// the call fails before acking any).
/// Returns: BROKK_STATUS_OK if every id was acked; otherwise the status of the first failure,
/// and brokk_last_error() names its index and id. CLOSED stops the batch where it occurred.
/// Threads: any thread.
/// Errors: NULL_ARGUMENT (`ids` NULL with `count` > 0), UNKNOWN_DELIVERY, ALREADY_SETTLED,
/// CLOSED, UNAVAILABLE and STORAGE_FAILED (those ids still await their ack), OUTCOME_UNKNOWN
/// (Redis: those acks may or may not have been applied).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_ack_batch(
    broker: *const brokk_broker,
    ids: *const u64,
    count: usize,
    acked_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `acked_out` is NULL or a writable usize for this call (the caller's contract).
        let mut acked_out = unsafe { acked_out.as_mut() };
        if let Some(out) = acked_out.as_deref_mut() {
            *out = 0;
        }
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        let ids: &[u64] = match (ids.is_null(), count) {
            (_, 0) => &[],
            (true, _) => return Err(fail(brokk_status::NullArgument, "ids is NULL")),
            // SAFETY: non-NULL, and the caller guarantees `count` readable ids for this call.
            (false, n) => unsafe { std::slice::from_raw_parts(ids, n) },
        };
        let (acked, failure) = broker.inner.ack_batch(ids);
        if let Some(out) = acked_out {
            *out = acked;
        }
        match failure {
            None => Ok(()),
            Some((_, e)) if ids.is_empty() => Err(e.into()),
            Some((i, e)) => Err(Error::new(e.kind(), format!("ids[{i}] ({}): {}", ids[i], e.message())).into()),
        }
    })
}

/// Nacks a delivery awaiting an ack. With `requeue` it is queued again with attempt + 1, no
/// earlier than `requeue_delay_ms` from now (0: at once), unless its attempt limit is reached
/// (then it is given up) or its group is gone (then dropped). Without, it is given up: counted
/// failed, and published to its dead-letter topic if one is set. `reason` (`reason_len` bytes
/// of UTF-8, may be NULL) is passed to listeners' on_failed.
/// Copies: reason.
/// Threads: any thread, including from inside the handler that received the delivery.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, UNKNOWN_DELIVERY, ALREADY_SETTLED, CLOSED,
/// UNAVAILABLE and STORAGE_FAILED (a store's failure: the delivery still awaits its nack),
/// OUTCOME_UNKNOWN (Redis: the nack may or may not have been applied).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_nack(
    broker: *const brokk_broker,
    delivery_id: u64,
    requeue: bool,
    requeue_delay_ms: u64,
    reason: *const c_char,
    reason_len: usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `reason` is NULL or `reason_len` readable bytes for this call.
        let reason = unsafe { optional_text(reason, reason_len, "reason") }?.map(|r| Reason::Owned(r.to_owned()));
        let delay = (requeue_delay_ms > 0).then(|| Duration::from_millis(requeue_delay_ms));
        broker.inner.nack(delivery_id, requeue, delay, reason)?;
        Ok(())
    })
}

/// Waits until no delivery is queued, running or awaiting an ack, and every listener event has
/// been delivered, or until `timeout_ms` passes (BROKK_WAIT_FOREVER: no limit). On a SQLite
/// store this is this broker's work: what it holds, and what waits in the file for the groups
/// it uses (whoever takes it); not what other processes hold.
/// Out: if `remaining_out` is not NULL, on BROKK_STATUS_OK it holds 0 and on
/// BROKK_STATUS_TIMEOUT the deliveries still outstanding; untouched otherwise.
/// Threads: any thread except this broker's own handlers and listeners.
/// Errors: NULL_ARGUMENT, TIMEOUT, WOULD_DEADLOCK (from a handler or listener), CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_join(
    broker: *const brokk_broker,
    timeout_ms: u64,
    remaining_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        let result = broker.inner.join(timeout(timeout_ms));
        // SAFETY: `remaining_out` is NULL or a writable u64 for this call (the caller's contract).
        unsafe { report_remaining(&result, remaining_out) };
        result.map_err(Into::into)
    })
}

/// brokk_broker_join that `cancel` can interrupt: brokk_cancel_trigger on it, from any thread,
/// makes this call return BROKK_STATUS_CANCELLED at once (a token already cancelled too). With
/// `cancel` NULL it is brokk_broker_join. Everything brokk_broker_join says holds.
/// Out: as brokk_broker_join; `*remaining_out` is untouched on CANCELLED.
/// Copies: `cancel` is used during the call only.
/// Threads: as brokk_broker_join.
/// Errors: as brokk_broker_join, and CANCELLED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_join_until(
    broker: *const brokk_broker,
    timeout_ms: u64,
    cancel: *const brokk_cancel,
    remaining_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `cancel` is NULL or a token not yet freed, for this call.
        let cancel = unsafe { optional_cancel(cancel) };
        let result = broker.inner.join_until(timeout(timeout_ms), cancel);
        // SAFETY: `remaining_out` is NULL or a writable u64 for this call (the caller's contract).
        unsafe { report_remaining(&result, remaining_out) };
        result.map_err(Into::into)
    })
}

/// Writes what a join left to `remaining_out` (if not NULL), for OK and TIMEOUT only, as
/// documented.
///
/// # Safety
/// `remaining_out` is NULL or a writable u64 for this call.
unsafe fn report_remaining(result: &brokk_core::Result<()>, remaining_out: *mut u64) {
    let remaining = match result {
        Ok(()) => Some(0),
        Err(e) if e.kind() == brokk_core::ErrorKind::Timeout => Some(e.remaining()),
        Err(_) => None,
    };
    // SAFETY: this function's contract.
    if let (Some(n), Some(out)) = (remaining, unsafe { remaining_out.as_mut() }) {
        *out = n;
    }
}

/// What brokk_broker_close did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct brokk_close_report {
    /// Deliveries still unfinished when `timeout_ms` ran out (0 when everything finished in
    /// time, and for a forced close): dropped, or handlers that finish on their own. (A SQLite
    /// store keeps those of named groups in the file.)
    pub remaining: u64,
    /// Deliveries a forced close dropped: queued ones and those awaiting an ack. Handlers
    /// running at that moment finish on their own and are not counted. (A SQLite store drops
    /// only what this broker's ungrouped subscriptions had waiting; what it held goes back to
    /// the file, attempt + 1.)
    pub dropped: u64,
    /// Messages retained by topics without a consumer group, discarded by the close (0 on a
    /// SQLite store, which keeps them).
    pub retained_discarded: u64,
}

/// Closes the broker. Publish and subscribe fail with CLOSED at once; deliveries already
/// published are still delivered, fetched and acked for up to `timeout_ms`
/// (BROKK_WAIT_FOREVER: no limit); then whatever is left is dropped, retained messages
/// included, the workers stop, and every later call on this broker fails with CLOSED (a second
/// close included) until brokk_broker_free. Handlers still running when time runs out finish
/// on their own. With `force`, nothing is waited for: everything outstanding is dropped at once.
/// On a SQLite store nothing durable is dropped: named groups' deliveries and retained
/// messages stay in the file, and deliveries this broker holds go back to it (attempt + 1) for
/// other processes; its ungrouped subscriptions' groups are removed.
/// Out: if `report_out` is not NULL, on BROKK_STATUS_OK and BROKK_STATUS_TIMEOUT it holds what
/// the close did; untouched on other statuses.
/// Threads: any thread. From inside this broker's own handler or listener only a forced close
/// is allowed; otherwise WOULD_DEADLOCK and nothing changes.
/// Errors: NULL_ARGUMENT, TIMEOUT (time ran out; the broker is closed all the same),
/// WOULD_DEADLOCK, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_close(
    broker: *const brokk_broker,
    timeout_ms: u64,
    force: bool,
    report_out: *mut brokk_close_report,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        let report = broker.inner.close(timeout(timeout_ms), force)?;
        // SAFETY: `report_out` is NULL or a writable report for this call (the caller's contract).
        if let Some(out) = unsafe { report_out.as_mut() } {
            *out = brokk_close_report {
                remaining: report.remaining,
                dropped: report.dropped,
                retained_discarded: report.retained_discarded,
            };
        }
        if report.remaining > 0 {
            return Err(fail(
                brokk_status::Timeout,
                format!("timed out waiting for close: {} deliveries left; the broker is closed", report.remaining),
            ));
        }
        Ok(())
    })
}
