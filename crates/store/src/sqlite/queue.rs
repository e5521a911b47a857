//! The outbound queue: messages waiting for remote recipients, durable in the database.
//!
//! SKELETON (issue 9 contract): the bodies below are filled in by the store work.

use super::SqliteStore;
use crate::{
    Accepted, AccountId, Notice, Outbound, QueueId, QueueStats, QueuedMessage, Result, Settlement,
    StoreError,
};

fn not_built() -> StoreError {
    StoreError::Invalid("the outbound queue is not built yet".into())
}

impl SqliteStore {
    pub(super) fn queue_accept(
        &self,
        _message: &[u8],
        _local: &[AccountId],
        _outbound: Option<&Outbound>,
    ) -> Result<Accepted> {
        Err(not_built())
    }
    pub(super) fn queue_due_impl(&self, _now: i64, _limit: usize) -> Result<Vec<QueuedMessage>> {
        Err(not_built())
    }
    pub(super) fn queue_body_impl(&self, _id: QueueId) -> Result<Vec<u8>> {
        Err(not_built())
    }
    pub(super) fn queue_settle_impl(
        &self,
        _id: QueueId,
        _settled: &[Settlement],
        _notices: &[Notice],
    ) -> Result<()> {
        Err(not_built())
    }
    pub(super) fn queue_list_impl(&self) -> Result<Vec<QueuedMessage>> {
        Err(not_built())
    }
    pub(super) fn queue_get_impl(&self, _id: QueueId) -> Result<QueuedMessage> {
        Err(not_built())
    }
    pub(super) fn queue_retry_impl(&self, _id: Option<QueueId>, _now: i64) -> Result<u64> {
        Err(not_built())
    }
    pub(super) fn queue_remove_impl(&self, _id: QueueId) -> Result<()> {
        Err(not_built())
    }
    pub(super) fn queue_stats_impl(&self) -> Result<QueueStats> {
        Err(not_built())
    }
    pub(super) fn sender_addresses_impl(&self, _account: AccountId) -> Result<Vec<String>> {
        Err(not_built())
    }
}
