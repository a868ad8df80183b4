//! Owners: the broker instances that use the file. Each registers itself (with the lease it
//! holds deliveries under), says it is alive at every heartbeat, and unregisters when it closes.
//! An owner silent for `SILENT_LEASES` of its leases has stopped (crashed, or hung that long):
//! its anonymous groups, which only it consumed, are removed with their deliveries, so that
//! publishers stop feeding them. (Its leased deliveries of named groups need nothing: they come
//! back by themselves when their leases run out.) Anonymous groups whose owner never registered
//! (written by a version-1 broker) count as silent.

use rusqlite::params;

use super::errors::TxResult;
use super::tx::Tx;
use super::GroupId;

/// Leases an owner may stay silent before it counts as stopped: its heartbeat comes every
/// third of a lease, so this is nine missed heartbeats.
pub(super) const SILENT_LEASES: i64 = 3;

impl Tx<'_> {
    /// See `SqliteFile::register_owner`.
    pub(crate) fn register_owner(&self, owner: &str, lease_ms: u64, now_ms: u64) -> TxResult<()> {
        self.stmt(
            "INSERT INTO owners (owner, lease_ms, seen_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (owner) DO UPDATE SET lease_ms = ?2, seen_ms = ?3",
        )?
        .execute(params![owner, lease_ms as i64, now_ms as i64])?;
        Ok(())
    }

    /// See `SqliteFile::forget_owner`.
    pub(crate) fn forget_owner(&self, owner: &str) -> TxResult<()> {
        self.stmt("DELETE FROM owners WHERE owner = ?1")?.execute([owner])?;
        Ok(())
    }

    /// See `SqliteFile::collect_silent_owners`.
    pub(crate) fn collect_silent_owners(&self, now_ms: u64) -> TxResult<u64> {
        let now = now_ms as i64;
        let groups: Vec<i64> = self
            .stmt(
                "SELECT g.id FROM consumer_groups AS g LEFT JOIN owners AS o ON o.owner = g.owner \
                 WHERE g.owner IS NOT NULL AND (o.owner IS NULL OR o.seen_ms + ?2 * o.lease_ms < ?1)",
            )?
            .query_map(params![now, SILENT_LEASES], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for g in &groups {
            self.remove_group(GroupId(*g))?;
        }
        self.stmt("DELETE FROM owners WHERE seen_ms + ?2 * lease_ms < ?1")?.execute(params![now, SILENT_LEASES])?;
        Ok(groups.len() as u64)
    }
}
