//! Mailboxes beyond INBOX and the message operations IMAP needs.
//! PLACEHOLDER: the store helper replaces every todo!() below.

use std::sync::Arc;

use super::SqliteStore;
use crate::{
    AccountId, ChangeListener, Copied, Delivered, FlagOp, FlagState, Flags, MailboxCounts,
    MailboxId, MailboxInfo, Result,
};

pub(super) fn list(_s: &SqliteStore, _account: AccountId) -> Result<Vec<MailboxInfo>> { todo!() }
pub(super) fn by_id(_s: &SqliteStore, _mailbox: MailboxId) -> Result<MailboxInfo> { todo!() }
pub(super) fn counts(_s: &SqliteStore, _mailbox: MailboxId) -> Result<MailboxCounts> { todo!() }
pub(super) fn create(_s: &SqliteStore, _account: AccountId, _name: &str) -> Result<MailboxInfo> { todo!() }
pub(super) fn delete(_s: &SqliteStore, _account: AccountId, _name: &str) -> Result<()> { todo!() }
pub(super) fn rename(_s: &SqliteStore, _account: AccountId, _from: &str, _to: &str) -> Result<()> { todo!() }
pub(super) fn set_subscribed(_s: &SqliteStore, _account: AccountId, _name: &str, _on: bool) -> Result<()> { todo!() }
pub(super) fn subscriptions(_s: &SqliteStore, _account: AccountId) -> Result<Vec<String>> { todo!() }
pub(super) fn append(_s: &SqliteStore, _mailbox: MailboxId, _message: &[u8], _flags: Flags, _keywords: &[String], _date: Option<i64>) -> Result<Delivered> { todo!() }
pub(super) fn update_flags(_s: &SqliteStore, _mailbox: MailboxId, _uids: &[u32], _op: FlagOp, _flags: Flags, _keywords: &[String]) -> Result<Vec<FlagState>> { todo!() }
pub(super) fn expunge_deleted(_s: &SqliteStore, _mailbox: MailboxId, _uids: Option<&[u32]>) -> Result<Vec<u32>> { todo!() }
pub(super) fn copy(_s: &SqliteStore, _from: MailboxId, _uids: &[u32], _to: MailboxId, _remove: bool) -> Result<Copied> { todo!() }
pub(super) fn claim_recent(_s: &SqliteStore, _mailbox: MailboxId) -> Result<u32> { todo!() }
pub(super) fn set_change_listener(_s: &SqliteStore, _listener: Arc<dyn ChangeListener>) { todo!() }
