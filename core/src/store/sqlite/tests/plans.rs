//! The hot statements walk their indexes: no full scan of the backlog, no sort.

use super::super::groups::{DELETE_READY, GROUP_BY_NAME};
use super::super::leases::{
    ANY_DUE, DELETE_LEASED, DELETE_LEASED_BODY, EXTEND_LEASES, MARK_LEASED, PROMOTE_DELAYED, PROMOTE_EXPIRED, RELEASE_OWNER,
    SELECT_READY, UNREF_LEASED,
};
use super::super::publish::INSERT_DELIVERY;
use super::super::reads::{MAY_CLAIM, NEXT_DUE, PEEK_DUE, WAITING};
use super::super::view::{PEEK_RETAINED, VIEW_GROUPS, VIEW_TOPICS};
use super::*;

/// The query plan of `sql`, one line per step.
fn plan(f: &SqliteFile, sql: &str) -> String {
    f.readers
        .with(|c| {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let mut rows = stmt.raw_query();
            let mut lines = Vec::new();
            while let Some(r) = rows.next()? {
                lines.push(r.get::<_, String>(3)?);
            }
            Ok(lines.join("\n"))
        })
        .unwrap()
}

#[test]
fn claims_and_settlements_use_their_indexes() {
    let dir = TempDir::new("plans");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    f.claim(g, 1, "me", LEASE).unwrap();

    let p = plan(&f, SELECT_READY);
    assert!(p.contains("SEARCH d USING INDEX deliveries_ready (group_id=?)"), "{p}");
    assert!(p.contains("SEARCH m USING INTEGER PRIMARY KEY"), "{p}");
    assert!(!p.contains("TEMP B-TREE") && !p.contains("SCAN"), "{p}");

    let p = plan(&f, ANY_DUE);
    assert!(p.contains("deliveries_delayed (group_id=? AND due<?)"), "{p}");
    assert!(p.contains("deliveries_leased (group_id=? AND due<?)"), "{p}");
    assert!(!p.contains("SCAN deliveries"), "{p}");
    let p = plan(&f, PROMOTE_DELAYED);
    assert!(p.contains("USING INDEX deliveries_delayed (group_id=? AND due<?)"), "{p}");
    let p = plan(&f, PROMOTE_EXPIRED);
    assert!(p.contains("USING INDEX deliveries_leased (group_id=? AND due<?)"), "{p}");
    for sql in [DELETE_LEASED, DELETE_LEASED_BODY, UNREF_LEASED, MARK_LEASED] {
        let p = plan(&f, sql);
        assert!(p.contains("USING INTEGER PRIMARY KEY") && !p.contains("SCAN"), "{sql}: {p}");
    }
    // Owner-wide updates scan only the leases (a partial index), never the backlog.
    for sql in [EXTEND_LEASES, RELEASE_OWNER] {
        let p = plan(&f, sql);
        assert!(p.contains("SCAN deliveries USING INDEX deliveries_leased"), "{sql}: {p}");
    }
    let p = plan(&f, INSERT_DELIVERY);
    assert!(!p.contains("SCAN"), "{p}");
}

#[test]
fn pollers_probe_indexes_only() {
    let dir = TempDir::new("plans-reads");
    let f = open(&dir.file("s.db"));
    publish_ids(&f, "t", &["a"]);
    let p = plan(&f, MAY_CLAIM);
    assert!(p.contains("SEARCH g USING INTEGER PRIMARY KEY"), "{p}");
    assert!(p.contains("deliveries_delayed (group_id=? AND due<?)"), "{p}");
    assert!(p.contains("deliveries_leased (group_id=? AND due<?)"), "{p}");
    let p = plan(&f, WAITING);
    assert!(
        p.contains("deliveries_delayed (group_id=?)") && p.contains("deliveries_leased (group_id=? AND due<?)"),
        "{p}"
    );
    assert!(!p.contains("SCAN deliveries"), "{p}");
    // Peek reads the ready rows with the claim's own query (above), and the due delays by
    // their index.
    let p = plan(&f, PEEK_DUE);
    assert!(p.contains("deliveries_delayed (group_id=? AND due<?)"), "{p}");
    assert!(!p.contains("SCAN deliveries"), "{p}");
    let p = plan(&f, NEXT_DUE);
    assert!(p.contains("deliveries_delayed (group_id=?)") && p.contains("deliveries_leased (group_id=?)"), "{p}");
    assert!(!p.contains("TEMP B-TREE") && !p.contains("SCAN deliveries"), "{p}");
}

#[test]
fn the_store_view_and_peek_of_retained_messages_never_walk_the_backlog() {
    let dir = TempDir::new("plans-view");
    let f = open(&dir.file("s.db"));
    publish_ids(&f, "t", &["a"]);
    // Topics in name order by their unique index (no sort); groups are few and read whole.
    let p = plan(&f, VIEW_TOPICS);
    assert!(p.contains("SCAN topics USING INDEX sqlite_autoindex_topics_1") && !p.contains("TEMP B-TREE"), "{p}");
    // Per group, the delayed and leased rows are counted on their partial indexes; the ready
    // rows are not walked at all (the group's counter).
    let p = plan(&f, VIEW_GROUPS);
    assert!(p.contains("COVERING INDEX deliveries_delayed (group_id=?)"), "{p}");
    assert!(p.contains("COVERING INDEX deliveries_leased (group_id=?)"), "{p}");
    assert!(!p.contains("SCAN deliveries"), "{p}");
    // One topic's retained entries by the primary key; the priority order is a sort of those
    // only (bounded by the retention limit), never of the backlog.
    let p = plan(&f, PEEK_RETAINED);
    assert!(p.contains("SEARCH r USING PRIMARY KEY (topic_id=?)"), "{p}");
    assert!(p.contains("SEARCH m USING INTEGER PRIMARY KEY"), "{p}");
    assert!(!p.contains("SCAN"), "{p}");
}

#[test]
fn count_and_purge_of_a_group_use_their_indexes() {
    let dir = TempDir::new("plans-purge-group");
    let f = open(&dir.file("s.db"));
    f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b"]);
    // Found by the unique names, then counted by its counter (the same lookup).
    let p = plan(&f, GROUP_BY_NAME);
    assert!(p.contains("SEARCH t USING") && p.contains("SEARCH g USING"), "{p}");
    assert!(!p.contains("SCAN"), "{p}");
    // The ready rows of one group only, by their partial index.
    let p = plan(&f, DELETE_READY);
    assert!(p.contains("INDEX deliveries_ready (group_id=?)"), "{p}");
    assert!(!p.contains("SCAN"), "{p}");
    assert_eq!(f.count_group("t", "w").unwrap(), 2);
    assert_eq!(f.purge_group("t", "w").unwrap(), 2);
    assert_eq!((f.count_group("t", "w").unwrap(), f.count_group("t", "nope").unwrap()), (0, 0));
    assert_eq!(f.purge_group("t", "nope").unwrap(), 0);
}
