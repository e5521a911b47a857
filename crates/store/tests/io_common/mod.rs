//! What the fault-injection and power-loss suites share: a small store made once, the
//! workloads run against a copy of it under a `store::io::Plan`, and the verdict read after
//! reopening the copy with the real backend.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use store::prelude::*;

use store::archive::Document;
use store::backup::{self, CreateOptions, Trigger};
use store::{ArchiveRequest, BlobId, CheckOptions, Flags, SqliteStore};

pub const NOW: i64 = 1_795_442_400;
pub const A: &str = "a@example.com";
pub const B: &str = "b@example.com";

/// Message `i`: unique bytes, sizes from a few hundred bytes to a few KiB.
pub fn message(i: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{i}@io.test>\r\nSubject: message {i}\r\n\r\n").into_bytes();
    while m.len() < 300 + (i * 997) % 4000 {
        m.extend_from_slice(format!("line of message {i}, long enough to fill it\r\n").as_bytes());
    }
    m
}

/// The baseline every run starts from: two accounts, a folder, eight messages delivered
/// and six old ones (internal dates in 1970, which the archive workload takes).
pub fn make_baseline(data: &Path) {
    let store = SqliteStore::open(data).unwrap();
    store.add_domain("example.com").unwrap();
    let a = store.add_account(A, "pw").unwrap();
    let b = store.add_account(B, "pw").unwrap();
    store.create_mailbox(a, "Kept").unwrap();
    for i in 0..8 {
        let to = if i % 3 == 0 {
            vec![a, b]
        } else {
            vec![[a, b][i % 2]]
        };
        store.deliver(&message(i), &to).unwrap();
    }
    let inbox = store.mailbox(a, "INBOX").unwrap().id;
    for i in 100..106 {
        store
            .append(
                inbox,
                &message(i),
                Flags(Flags::SEEN),
                &[],
                Some(1000 + i as i64),
            )
            .unwrap();
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Six messages from three threads at once: the writer commits them in groups.
    Delivery,
    /// IMAP MOVE of three messages to another folder.
    Move,
    /// Three messages expunged, then the optimisation (which removes released files).
    Expunge,
    Backup,
    /// The old messages moved into an archive (which ends with an optimisation).
    Archive,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::Delivery,
        Workload::Move,
        Workload::Expunge,
        Workload::Backup,
        Workload::Archive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Delivery => "delivery",
            Workload::Move => "move",
            Workload::Expunge => "expunge",
            Workload::Backup => "backup",
            Workload::Archive => "archive",
        }
    }

    pub fn from_name(name: &str) -> Workload {
        *Workload::ALL
            .iter()
            .find(|w| w.name() == name)
            .expect("a workload")
    }
}

/// What a workload had acknowledged: the promises the store must keep after any fault.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ack {
    /// A delivery returned Ok: the message is in its account for good.
    Delivered(String, BlobId),
    /// A backup returned Ok: it verifies.
    Backup(PathBuf),
    /// A message this workload may remove; it is no longer owed.
    MayRemove(String, BlobId),
}

impl Ack {
    pub fn to_line(&self) -> String {
        match self {
            Ack::Delivered(a, b) => format!("delivered {a} {b}"),
            Ack::Backup(p) => format!("backup {}", p.display()),
            Ack::MayRemove(a, b) => format!("may-remove {a} {b}"),
        }
    }

    pub fn from_line(line: &str) -> Ack {
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().unwrap();
        let x = parts.next().unwrap();
        match kind {
            "delivered" => {
                Ack::Delivered(x.into(), BlobId::from_hex(parts.next().unwrap()).unwrap())
            }
            "may-remove" => {
                Ack::MayRemove(x.into(), BlobId::from_hex(parts.next().unwrap()).unwrap())
            }
            "backup" => Ack::Backup(PathBuf::from(x)),
            other => panic!("unknown ack {other}"),
        }
    }
}

fn indexer(bytes: &[u8]) -> Document {
    let text = String::from_utf8_lossy(bytes).into_owned();
    Document {
        subject: "archived".into(),
        text,
        ..Document::default()
    }
}

/// An error the store answered with, and whether it is one a client is told to retry
/// (SMTP 451, IMAP `NO [UNAVAILABLE]`); `None` for an operator's command (backup, archive),
/// which has no client.
pub type Answer = (String, Option<bool>);

fn answer(e: store::StoreError) -> Answer {
    (e.to_string(), Some(e.is_transient()))
}

/// Runs a workload; `ack` hears each promise as soon as it is made. Returns the errors
/// the store answered with (a fault may make any operation fail; none may panic).
pub fn run(
    workload: Workload,
    store: &SqliteStore,
    data: &Path,
    backups: &Path,
    ack: &(dyn Fn(Ack) + Sync),
) -> Vec<Answer> {
    let a = store
        .accounts()
        .unwrap()
        .into_iter()
        .find(|x| x.address == A)
        .unwrap()
        .id;
    let b = store
        .accounts()
        .unwrap()
        .into_iter()
        .find(|x| x.address == B)
        .unwrap()
        .id;
    let mut errors = Vec::new();
    match workload {
        Workload::Delivery => {
            let failed = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for t in 0..3 {
                    let failed = &failed;
                    s.spawn(move || {
                        for j in 0..2 {
                            let i = 200 + t * 10 + j;
                            let to = if j == 0 { vec![a, b] } else { vec![a] };
                            match store.deliver(&message(i), &to) {
                                Ok(_) => {
                                    let blob = BlobId::of(&message(i));
                                    ack(Ack::Delivered(A.into(), blob));
                                    if j == 0 {
                                        ack(Ack::Delivered(B.into(), blob));
                                    }
                                }
                                Err(e) => failed.lock().unwrap().push(answer(e)),
                            }
                        }
                    });
                }
            });
            errors = failed.into_inner().unwrap();
        }
        Workload::Move | Workload::Expunge => {
            let inbox = store.mailbox(a, "INBOX").unwrap().id;
            let chosen: Vec<_> = store.messages(inbox).unwrap().into_iter().take(3).collect();
            if workload == Workload::Move {
                let to = store.mailbox(a, "Kept").unwrap().id;
                let uids: Vec<u32> = chosen.iter().map(|m| m.uid).collect();
                if let Err(e) = store.move_messages(inbox, &uids, to) {
                    errors.push(answer(e));
                }
            } else {
                for m in &chosen {
                    ack(Ack::MayRemove(A.into(), m.blob));
                }
                let ids: Vec<_> = chosen.iter().map(|m| m.id).collect();
                if let Err(e) = store.expunge(inbox, &ids) {
                    errors.push(answer(e));
                }
                if let Err(e) = store.optimize() {
                    errors.push((e.to_string(), None));
                }
            }
        }
        Workload::Backup => {
            let options =
                CreateOptions::new(backups.to_path_buf(), "b1".into(), Trigger::Manual, NOW);
            match backup::create(data, &options) {
                Ok(report) => ack(Ack::Backup(report.path)),
                Err(e) => errors.push((e.to_string(), None)),
            }
        }
        Workload::Archive => {
            let request = ArchiveRequest {
                before: 5000,
                account: None,
                label: Some("old".into()),
                batch: 2,
                reserve_bytes: 0,
            };
            if let Err(e) = store.archive_create(&request, &indexer, &|_, _, _| {}) {
                errors.push((e.to_string(), None));
            }
        }
    }
    errors
}

/// Every (account, blob) the store holds, in any folder or archive, each body read back
/// and checked against its hash.
pub fn inventory(store: &SqliteStore) -> BTreeSet<(String, BlobId)> {
    let mut out = BTreeSet::new();
    for account in store.accounts().unwrap() {
        for mailbox in store.mailboxes(account.id).unwrap() {
            for m in store.messages(mailbox.id).unwrap() {
                let bytes = store
                    .read_blob(&m.blob)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", account.address, mailbox.name));
                assert_eq!(BlobId::of(&bytes), m.blob);
                out.insert((account.address.clone(), m.blob));
            }
        }
    }
    out
}

/// Reopens the store with the real backend as the server would (recovery, then finishing
/// an interrupted archive), and checks every promise: `owed` still there, every
/// acknowledged delivery there, every acknowledged backup whole, and `check` clean.
pub fn verify(data: &Path, owed: &BTreeSet<(String, BlobId)>, acks: &[Ack], context: &str) {
    let store = SqliteStore::open(data).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    store
        .archive_resume(&|_, _, _| {})
        .unwrap_or_else(|e| panic!("{context}: archive resume: {e}"));
    let have = inventory(&store);
    let may_remove: BTreeSet<_> = acks
        .iter()
        .filter_map(|a| match a {
            Ack::MayRemove(x, b) => Some((x.clone(), *b)),
            _ => None,
        })
        .collect();
    for item in owed.iter().filter(|i| !may_remove.contains(i)) {
        assert!(have.contains(item), "{context}: {item:?} was lost");
    }
    for a in acks {
        match a {
            Ack::Delivered(x, b) => assert!(
                have.contains(&(x.clone(), *b)),
                "{context}: acknowledged delivery {x} {b} was lost"
            ),
            Ack::Backup(path) => {
                let report = backup::verify(path, None).unwrap();
                assert!(report.is_ok(), "{context}: acknowledged backup: {report:?}");
            }
            Ack::MayRemove(..) => {}
        }
    }
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{context}: check: {report:#?}");
}

/// Which of `1..=total` points to explore: all of them under `TEGAMI_FAULT_FULL=1`, else
/// at most `bound`, spread evenly and always with the first and the last few.
pub fn points(total: u64, bound: u64) -> Vec<u64> {
    if total == 0 {
        return Vec::new();
    }
    if std::env::var("TEGAMI_FAULT_FULL").is_ok_and(|v| v == "1") || total <= bound {
        return (1..=total).collect();
    }
    let mut chosen = BTreeSet::new();
    for k in (1..=3).chain(total.saturating_sub(2)..=total) {
        chosen.insert(k.max(1));
    }
    let step = total as f64 / (bound - chosen.len() as u64) as f64;
    let mut x = 1.0;
    while (x as u64) <= total && (chosen.len() as u64) < bound {
        chosen.insert(x as u64);
        x += step;
    }
    chosen.into_iter().collect()
}
