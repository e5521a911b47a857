//! Storage quotas (RFC 9208's STORAGE resource): the limits, the usage the schema's
//! triggers keep in `accounts.used`, and the check every write that adds mail runs inside
//! its transaction, so that nothing over a quota is ever committed, whichever path the
//! mail took (SMTP, the queue's local delivery, APPEND, COPY, a copy out of an archive).

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WriteCtx;
use super::{SqliteStore, domain_id, normalize_address, normalize_domain};
use crate::{AccountId, AccountQuota, Quota, QuotaUse, Result, StoreError};

/// An account's usage and the limit that applies to it: its own, else its domain's.
const USAGE: &str = "SELECT a.address, a.used, coalesce(a.quota, d.default_quota)
                     FROM accounts a JOIN domains d ON d.id = a.domain_id";

fn usage_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Quota)> {
    let used: i64 = r.get(1)?;
    let limit: Option<i64> = r.get(2)?;
    Ok((
        r.get(0)?,
        Quota {
            used: used.max(0) as u64,
            limit: limit.map(|l| l.max(0) as u64),
        },
    ))
}

pub(super) fn quota(conn: &Connection, account: AccountId) -> Result<Quota> {
    conn.prepare_cached(&format!("{USAGE} WHERE a.id = ?1"))?
        .query_row([account.0], usage_row)
        .optional()?
        .map(|(_, quota)| quota)
        .ok_or_else(|| StoreError::NotFound {
            what: format!("account {}", account.0),
        })
}

/// Fails the write (and so rolls back its savepoint) when it left any of `accounts` above
/// its limit. Called after the rows went in: the triggers have counted them by then.
pub(super) fn enforce(
    ctx: &WriteCtx<'_>,
    accounts: impl IntoIterator<Item = AccountId>,
) -> Result<()> {
    let mut stmt = ctx
        .conn
        .prepare_cached(&format!("{USAGE} WHERE a.id = ?1"))?;
    for account in accounts {
        let Some((address, quota)) = stmt.query_row([account.0], usage_row).optional()? else {
            continue;
        };
        if let Some(limit) = quota.limit
            && quota.used > limit
        {
            return Err(StoreError::OverQuota {
                address,
                used: quota.used,
                limit,
            });
        }
    }
    Ok(())
}

/// Every account under a limit, with its usage and whether its owner was warned.
pub(super) fn usage(conn: &Connection) -> Result<Vec<QuotaUse>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.address, a.used, coalesce(a.quota, d.default_quota), a.id, a.quota_warned
         FROM accounts a JOIN domains d ON d.id = a.domain_id
         WHERE coalesce(a.quota, d.default_quota) IS NOT NULL
         ORDER BY a.address",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let (address, quota) = usage_row(r)?;
            Ok(QuotaUse {
                account: AccountId(r.get(3)?),
                address,
                quota,
                warned: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn bytes(limit: Option<u64>) -> Result<Option<i64>> {
    limit
        .map(|l| {
            i64::try_from(l)
                .map_err(|_| StoreError::Invalid(format!("a quota of {l} bytes is too large")))
        })
        .transpose()
}

impl SqliteStore {
    pub(super) fn set_quota_impl(&self, address: &str, limit: Option<u64>) -> Result<()> {
        let limit = bytes(limit)?;
        self.update_account(
            address,
            "quota",
            limit.map_or(rusqlite::types::Value::Null, Into::into),
        )
    }

    pub(super) fn set_domain_quota_impl(&self, domain: &str, limit: Option<u64>) -> Result<()> {
        let name = normalize_domain(domain)?;
        let limit = bytes(limit)?;
        self.write(move |ctx| {
            let id = domain_id(ctx.conn, &name)?;
            ctx.conn.execute(
                "UPDATE domains SET default_quota = ?1 WHERE id = ?2",
                params![limit, id],
            )?;
            Ok(())
        })
    }

    pub(super) fn domain_quota_impl(&self, domain: &str) -> Result<Option<u64>> {
        let name = normalize_domain(domain)?;
        self.read(|conn| {
            let id = domain_id(conn, &name)?;
            let limit: Option<i64> = conn.query_row(
                "SELECT default_quota FROM domains WHERE id = ?1",
                [id],
                |r| r.get(0),
            )?;
            Ok(limit.map(|l| l.max(0) as u64))
        })
    }

    pub(super) fn account_quota_impl(&self, address: &str) -> Result<AccountQuota> {
        let (address, _) = normalize_address(address)?;
        self.read(|conn| {
            let (id, own): (i64, Option<i64>) = conn
                .query_row(
                    "SELECT id, quota FROM accounts WHERE address = ?1",
                    [&address],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("account '{address}'"),
                })?;
            let account = AccountId(id);
            Ok(AccountQuota {
                account,
                quota: quota(conn, account)?,
                own: own.map(|l| l.max(0) as u64),
            })
        })
    }

    pub(super) fn set_quota_warned_impl(&self, account: AccountId, warned: bool) -> Result<()> {
        self.write(move |ctx| {
            ctx.conn.execute(
                "UPDATE accounts SET quota_warned = ?1 WHERE id = ?2",
                params![warned, account.0],
            )?;
            Ok(())
        })
    }
}
