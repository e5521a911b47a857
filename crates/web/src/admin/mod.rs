//! The administrator's screens. Each file is one screen (or a few close ones) with its own
//! routes, under `/console/admin`; every handler takes [`crate::Admin`], so anyone else
//! signed in gets 403.

use std::sync::Arc;

use axum::Router;

use crate::Console;

mod archives;
mod backups;
mod dashboard;
mod diagnostics;
mod directory;
mod logs;
mod maintenance;
mod newsletters;
mod planner;
mod queue;
mod security;
mod stats;

/// The navigation of administrators: (path under `/console`, catalogue key).
pub const MENU: &[(&str, &str)] = &[
    ("/admin", "admin.menu_dashboard"),
    ("/admin/maintenance", "admin.menu_maintenance"),
    ("/admin/diagnostics", "admin.menu_diagnostics"),
    ("/admin/backups", "admin.menu_backups"),
    ("/admin/archives", "admin.menu_archives"),
    ("/admin/domains", "admin.menu_directory"),
    ("/admin/queue", "admin.menu_queue"),
    ("/admin/stats", "admin.menu_stats"),
    ("/admin/planner", "admin.menu_planner"),
    ("/admin/newsletters", "admin.menu_newsletters"),
    ("/admin/logs", "admin.menu_logs"),
    ("/admin/security", "admin.menu_security"),
];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .merge(security::routes())
        .merge(dashboard::routes())
        .merge(maintenance::routes())
        .merge(diagnostics::routes())
        .merge(logs::routes())
        .merge(backups::routes())
        .merge(archives::routes())
        .merge(directory::routes())
        .merge(queue::routes())
        .merge(stats::routes())
        .merge(planner::routes())
        .merge(newsletters::routes())
}
