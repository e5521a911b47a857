//! Domains, accounts and aliases: who this server receives mail for. Also each domain's DKIM
//! key and the DNS records a domain needs, compared with what DNS answers on request. They
//! change only the store (and `dkim/`), so they work whether or not the server runs.

use std::path::PathBuf;

use serde::Serialize;
use store::{AccountInfo, AliasInfo};

use crate::{Config, Error, Ops, Result};

impl Ops {
    /// Adds a domain; returns its name as stored (lower case).
    pub fn domain_add(&self, name: &str) -> Result<String> {
        self.store().add_domain(name)?;
        Ok(name.to_lowercase())
    }

    pub fn domains(&self) -> Result<Vec<String>> {
        Ok(self.store().domains()?)
    }

    pub fn domain_remove(&self, name: &str) -> Result<()> {
        Ok(self.store().remove_domain(name)?)
    }

    /// Refuses a name that is not one of this server's domains (a trailing dot and the case
    /// do not matter): what is done for a domain (its key, its records) is done only for
    /// one it receives mail for. `shown` is how the refusal names it.
    pub fn require_domain(&self, name: &str, shown: &str) -> Result<()> {
        let ours = self
            .store()
            .domains()?
            .iter()
            .any(|d| d.eq_ignore_ascii_case(name.trim_end_matches('.')));
        if ours {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "{shown} is not one of this server's domains; add it first with `tegami domain add {shown}`"
            )))
        }
    }

    /// Adds an account (its domain must exist) with an INBOX, an administrator of the server
    /// when `admin`; returns its address as stored.
    pub fn account_add(&self, address: &str, password: &str, admin: bool) -> Result<String> {
        self.store().add_account(address, password)?;
        if admin {
            self.store().set_admin(address, true)?;
        }
        Ok(address.to_lowercase())
    }

    /// Makes an account an administrator (the web console's operator screens) or not.
    pub fn account_admin(&self, address: &str, admin: bool) -> Result<()> {
        Ok(self.store().set_admin(address, admin)?)
    }

    /// Turns an account's second factor (TOTP, RFC 6238) on with `secret` (base32), or off.
    pub fn account_totp(&self, address: &str, secret: Option<&str>) -> Result<()> {
        Ok(self.store().set_totp_secret(address, secret)?)
    }

    /// Every account with its message count and size.
    pub fn accounts(&self) -> Result<Vec<AccountInfo>> {
        Ok(self.store().accounts()?)
    }

    /// Removes an account and all of its mail.
    pub fn account_remove(&self, address: &str) -> Result<()> {
        Ok(self.store().remove_account(address)?)
    }

    pub fn account_password(&self, address: &str, password: &str) -> Result<()> {
        Ok(self.store().set_password(address, password)?)
    }

    /// Adds an alias delivering to each target; returns its address as stored.
    pub fn alias_add(&self, address: &str, targets: &[String]) -> Result<String> {
        self.store().add_alias(address, targets)?;
        Ok(address.to_lowercase())
    }

    pub fn aliases(&self) -> Result<Vec<AliasInfo>> {
        Ok(self.store().aliases()?)
    }

    /// What is wrong with the postmaster setting, worded for the server's log: RFC 5321
    /// wants postmaster@ every domain to reach someone, so no target, or a target that is
    /// nobody here, means such mail is refused.
    pub fn postmaster_problem(&self) -> Option<String> {
        match &self.config().server.postmaster {
            None => Some(
                "mail to postmaster@ a domain without such an account or alias is refused: set [server] postmaster (or [alerts] admin) to the account that should read it".into(),
            ),
            Some(target) => match self.store().resolve(target) {
                Ok(store::Resolution::UnknownUser) => Some(format!(
                    "the postmaster target {target} is neither an account nor an alias here, so postmaster@ mail is refused: add it with `tegami account add`"
                )),
                _ => None,
            },
        }
    }

    pub fn alias_remove(&self, address: &str) -> Result<()> {
        Ok(self.store().remove_alias(address)?)
    }

    /// The domain's DKIM record to publish, making its signing key first when it has none,
    /// or when a rotation (`new`) or a selector is asked for.
    pub fn domain_dkim(&self, request: &DkimRequest) -> Result<DkimKey> {
        self.require_domain(&request.domain, &request.domain)?;
        let domain = request.domain.trim_end_matches('.').to_ascii_lowercase();
        let dir = self.data().join("dkim");
        let existing = outbound::dkim_record(&dir, &domain).map_err(|e| {
            Error::failed(format!(
                "cannot read the DKIM keys in {}: {e}",
                dir.display()
            ))
        })?;
        let (record, made) = match existing {
            Some(record) if !request.new && request.selector.is_none() => (record, None),
            _ => {
                // Selectors that sort by date, so the newest key is the one that signs.
                let selector = request
                    .selector
                    .clone()
                    .unwrap_or_else(|| self.clock().now().strftime("tg%Y%m%d%H%M").to_string());
                let record =
                    outbound::generate_dkim(&dir, &domain, &selector).map_err(|e| match e {
                        // The selector is the caller's: a bad or taken one is their mistake.
                        outbound::DkimError::Name(_) => {
                            Error::invalid(format!("cannot make a DKIM key for {domain}: {e}"))
                        }
                        outbound::DkimError::Exists(_) => {
                            Error::conflict(format!("cannot make a DKIM key for {domain}: {e}"))
                        }
                        _ => Error::failed(format!("cannot make a DKIM key for {domain}: {e}")),
                    })?;
                (record, Some(dir.join(&domain)))
            }
        };
        Ok(DkimKey {
            domain,
            name: record.name,
            value: record.value,
            made,
        })
    }

    /// The records `domain` needs, from the config and the domain's DKIM key. The domain must
    /// be one of this server's.
    pub fn domain_records(&self, name: &str) -> Result<DomainRecords> {
        let domain = name.trim_end_matches('.').to_ascii_lowercase();
        self.require_domain(&domain, &domain)?;
        let setup = records_setup(self, &domain)?;
        let records = dns_records::records(&setup);
        let policy = dns_records::mta_sts_policy(&setup.mx_host, setup.mta_sts_mode);
        Ok(DomainRecords {
            setup,
            records,
            policy,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DkimRequest {
    pub domain: String,
    /// The selector of a new key (default: "tg" and the date and time).
    pub selector: Option<String>,
    /// Make a new key even though one exists (a rotation).
    pub new: bool,
}

#[derive(Debug, Clone)]
pub struct DkimKey {
    pub domain: String,
    /// The TXT record's owner name and value.
    pub name: String,
    pub value: String,
    /// Where the new key was made, when this call made one.
    pub made: Option<PathBuf>,
}

/// What a domain needs in DNS.
#[derive(Debug, Clone)]
pub struct DomainRecords {
    pub setup: dns_records::Setup,
    pub records: Vec<dns_records::Record>,
    /// The MTA-STS policy the HTTP listener serves.
    pub policy: String,
}

impl DomainRecords {
    /// The records as a zone-file fragment to paste into the domain's zone: grouped, each
    /// under a one-line comment, then where the MTA-STS policy is served and the policy.
    /// `domain records` prints it and the console shows it.
    pub fn zone(&self) -> String {
        let setup = &self.setup;
        let domain = &setup.domain;
        let mut out = format!(
            "; DNS records for {domain}: paste them into its zone.\n\
             ; Mail host {}; mail clients connect to {}.\n\
             ; Once published, `tegami domain records {domain} --check` compares them with DNS.\n",
            setup.mx_host, setup.client_host
        );
        if !setup.mx_host.contains('.') {
            out.push_str(&format!(
                "; WARNING: the host name {:?} is not a public name: set `hostname` in the config.\n",
                setup.mx_host
            ));
        }
        let mut group = None;
        for record in &self.records {
            if group != Some(record.group) {
                group = Some(record.group);
                out.push_str(&format!("\n; == {} ==\n", record.group.title()));
            }
            out.push_str(&format!("; {}\n{}\n", record.why, record.zone_line()));
        }
        out.push_str(&format!(
            "\n; The MTA-STS policy is served by tegami's HTTP listener at /.well-known/mta-sts.txt.\n\
             ; Senders fetch it from https://mta-sts.{domain}/.well-known/mta-sts.txt, so in\n\
             ; production that name needs HTTPS on port 443 with a valid certificate (a reverse\n\
             ; proxy in front of the HTTP listener). The policy:\n"
        ));
        for line in self.policy.lines() {
            out.push_str(&format!(";   {line}\n"));
        }
        out
    }

    /// The DKIM record of the domain's signing key, when it has one.
    pub fn dkim_record(&self) -> Option<&dns_records::Record> {
        let (name, _) = self.setup.dkim.as_ref()?;
        self.records
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name) && r.expected.is_some())
    }

    /// The report of `domain records --json`.
    pub fn listing(&self) -> RecordsListing<'_> {
        RecordsListing {
            domain: &self.setup.domain,
            mta_sts_policy: &self.policy,
            records: self
                .records
                .iter()
                .map(|record| RecordLine {
                    zone: record.zone_line(),
                    record,
                })
                .collect(),
        }
    }

    /// Asks DNS for every record at once (with a DNS server that does not answer, this
    /// takes one resolver timeout, not one per record) and compares each answer.
    pub fn check(&self, config: &Config) -> Result<RecordsCheck<'_>> {
        let resolver = outbound::resolver(&config.dns_servers)
            .map_err(|e| Error::failed(format!("cannot set up DNS resolution: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                context: "cannot start the DNS lookups".into(),
                source,
            })?;
        let answers: Vec<dns_records::Answer> = runtime.block_on(async {
            let tasks: Vec<_> = self
                .records
                .iter()
                .map(|record| {
                    let resolver = resolver.clone();
                    let name = record.name.clone();
                    let rtype = record.rtype;
                    tokio::spawn(async move {
                        // A record whose name is not known (no DKIM key yet) is not asked for.
                        if name.contains('<') {
                            dns_records::Answer::NoRecords
                        } else {
                            dns_records::lookup(&resolver.0, &name, rtype).await
                        }
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(
                    task.await
                        .unwrap_or_else(|e| dns_records::Answer::Failed(e.to_string())),
                );
            }
            answers
        });
        let records: Vec<CheckedRecord> = self
            .records
            .iter()
            .zip(&answers)
            .map(|(record, answer)| {
                let verdict = dns_records::compare(record, answer);
                CheckedRecord {
                    zone: record.zone_line(),
                    record,
                    verdict,
                }
            })
            .collect();
        let ok = !records.iter().any(|r| r.verdict.status.is_problem());
        Ok(RecordsCheck {
            domain: &self.setup.domain,
            ok,
            records,
        })
    }
}

/// `domain records --json`: the domain, its MTA-STS policy, and each record with its zone line.
#[derive(Debug, Serialize)]
pub struct RecordsListing<'a> {
    pub domain: &'a str,
    pub mta_sts_policy: &'a str,
    pub records: Vec<RecordLine<'a>>,
}

#[derive(Debug, Serialize)]
pub struct RecordLine<'a> {
    #[serde(flatten)]
    pub record: &'a dns_records::Record,
    pub zone: String,
}

/// `domain records --check --json`: whether every record is right, and each with its verdict.
#[derive(Debug, Serialize)]
pub struct RecordsCheck<'a> {
    pub domain: &'a str,
    pub ok: bool,
    pub records: Vec<CheckedRecord<'a>>,
}

#[derive(Debug, Serialize)]
pub struct CheckedRecord<'a> {
    #[serde(flatten)]
    pub record: &'a dns_records::Record,
    pub zone: String,
    #[serde(flatten)]
    pub verdict: dns_records::Verdict,
}

/// The inputs of a domain's records, from the config and the domain's DKIM key.
fn records_setup(ops: &Ops, domain: &str) -> Result<dns_records::Setup> {
    let config = ops.config();
    let dir = ops.data().join("dkim");
    let dkim = outbound::dkim_record(&dir, domain)
        .map_err(|e| {
            Error::failed(format!(
                "cannot read the DKIM keys in {}: {e}",
                dir.display()
            ))
        })?
        .map(|r| (r.name, r.value));
    Ok(dns_records::Setup {
        domain: domain.to_string(),
        mx_host: config.hostname.clone(),
        client_host: config.clients.host.clone(),
        ipv4: config.server.public_ipv4,
        ipv6: config.server.public_ipv6,
        dkim,
        report_address: config
            .server
            .report_address
            .clone()
            .unwrap_or_else(|| format!("postmaster@{domain}")),
        mta_sts_mode: config.server.mta_sts_mode,
        ports: config.clients.ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_in_lower_case_and_only_our_domains_are_ours() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), Config::load(None).unwrap()).unwrap();
        assert_eq!(ops.domain_add("Example.COM").unwrap(), "example.com");
        assert!(ops.require_domain("EXAMPLE.com.", "x").is_ok());
        let e = ops.require_domain("other.org", "other.org").unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert_eq!(
            ops.account_add("Ann@Example.com", "secret", false).unwrap(),
            "ann@example.com"
        );
        assert_eq!(
            ops.alias_add("Info@example.com", &["ann@example.com".into()])
                .unwrap(),
            "info@example.com"
        );
        assert_eq!(ops.accounts().unwrap()[0].address, "ann@example.com");
        assert_eq!(ops.aliases().unwrap()[0].targets, ["ann@example.com"]);
        let e = ops.domain_records("other.org").map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        let bad = DkimRequest {
            domain: "example.com".into(),
            selector: Some("../x".into()),
            new: true,
        };
        let e = ops.domain_dkim(&bad).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }

    #[test]
    fn the_dkim_record_and_the_zone_name_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), Config::load(None).unwrap()).unwrap();
        ops.domain_add("example.com").unwrap();
        assert!(
            ops.domain_records("example.com")
                .unwrap()
                .dkim_record()
                .is_none()
        );
        let key = ops
            .domain_dkim(&DkimRequest {
                domain: "example.com".into(),
                selector: Some("s1".into()),
                new: false,
            })
            .unwrap();
        assert!(key.made.is_some());
        let needed = ops.domain_records("example.com").unwrap();
        let record = needed.dkim_record().unwrap();
        assert_eq!(record.name, "s1._domainkey.example.com");
        assert!(needed.zone().contains(&record.zone_line()));
        let again = DkimRequest {
            domain: "example.com".into(),
            selector: Some("s1".into()),
            new: true,
        };
        let e = ops.domain_dkim(&again).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
    }
}
