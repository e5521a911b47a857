//! The operations layer: every operator action as a typed function. The CLI, the JSON API
//! and the web console are faces over it: they parse a request, call a function here and
//! render what it returns. Nothing here prints, draws a progress bar or decides an exit
//! code; long operations report through [`progress::Progress`], failures are
//! [`error::Error`], results are plain data a face can show as text or JSON.
//!
//! [`Ops::open`] is the one place that chooses and opens the store's backend; operations that
//! need no open store (doctor, restore, verifying a backup, the planner without a store) are
//! free functions taking the data directory and the config.

pub mod alerts;
pub mod archive;
pub mod backup;
pub mod check;
pub mod config;
pub mod directory;
pub mod doctor;
pub mod error;
pub mod files;
pub mod logs;
pub mod mail_view;
pub mod mailbox_io;
pub mod maint;
pub mod newsletter;
pub mod newsletter_views;
pub mod overview;
pub mod plan;
pub mod progress;
pub mod queue;
pub mod quota;
pub mod schedule;
pub mod stats;
pub mod text_index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use store::{Directory as _, SqliteStore, Store};

pub use config::Config;
pub use error::{Error, Result};
pub use progress::{Progress, Reporter};

/// An open installation: its data directory, its config, its store and its clock.
pub struct Ops {
    data: PathBuf,
    config: Config,
    store: Arc<SqliteStore>,
    clock: gate::Clock,
}

impl Ops {
    /// Opens the store in `data` (recovering after a crash and migrating its schema as
    /// every open does) and applies the settings the store takes from the config.
    pub fn open(data: &Path, config: Config) -> Result<Ops> {
        let clock = clock()?;
        let store = SqliteStore::open(data).map_err(|source| Error::Open {
            data: data.to_path_buf(),
            source,
        })?;
        store.archives().set_prefix(&config.archive.imap_prefix);
        store.set_postmaster(config.server.postmaster.clone());
        Ok(Ops {
            data: data.to_path_buf(),
            config,
            store: Arc::new(store),
            clock,
        })
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn clock(&self) -> &gate::Clock {
        &self.clock
    }

    /// The store through its roles, for callers that run sessions or services on it.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The SQLite backend itself, for the operations not yet behind a role trait
    /// (archives, backup snapshots, the newsletter engine). Only this crate and `serve`
    /// reach it, and only through here.
    pub fn sqlite(&self) -> &Arc<SqliteStore> {
        &self.store
    }
}

/// The system clock in the server's time zone (`TZ`, else /etc/localtime).
pub fn clock() -> Result<gate::Clock> {
    gate::Clock::system().map_err(|e| Error::Clock(e.to_string()))
}
