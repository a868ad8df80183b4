//! The store view: what the store holds, topic by topic, read from the store itself rather than
//! from this broker's topics and counters (see `crate::view`). Like peek it reaches the store
//! directly: it sees topics and groups that other processes (or earlier brokers) use, and
//! creates nothing.

use super::Shared;
use crate::error::Result;
use crate::view::StoreView;

impl Shared {
    /// See `Broker::store_view`.
    pub(crate) fn store_view(&self) -> Result<StoreView> {
        self.ensure_not_closed()?;
        Ok(StoreView { backend: self.store.name().to_owned(), topics: self.store.view()? })
    }
}
