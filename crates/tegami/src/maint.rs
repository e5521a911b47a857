//! `tegami maint`: sets, lifts and shows maintenance mode by writing the `maint` file. It
//! needs no running server, and the server notices the file within two seconds.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use gate::{Clock, Maintenance, Status, Window, oplog};

#[derive(Subcommand)]
pub enum MaintCommand {
    /// Start maintenance now (until lifted), or daily inside each --window until lifted.
    On {
        /// Shown to clients with the end time.
        #[arg(long)]
        message: Option<String>,
        /// A daily window HH:MM-HH:MM on ten-minute steps; may cross midnight; repeatable.
        #[arg(long = "window", value_name = "HH:MM-HH:MM")]
        windows: Vec<String>,
    },
    /// Lift maintenance (removes the maint file; deleting it by hand does the same).
    Off,
    /// Show whether maintenance is in force, and when it starts or ends.
    Status,
}

pub fn run(data: &Path, command: MaintCommand) -> anyhow::Result<ExitCode> {
    let path = data.join("maint");
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    let now = clock.now();
    let log_dir = data.join("log");
    match command {
        MaintCommand::On { message, windows } => {
            let windows = windows
                .iter()
                .map(|w| Window::parse(w))
                .collect::<Result<Vec<_>, _>>()?;
            std::fs::create_dir_all(data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            let maintenance = Maintenance {
                message,
                windows,
                set_by: Some(format!("{} with `tegami maint on`", operator())),
                set_at: Some(now.timestamp()),
            };
            maintenance.save(&path)?;
            let _ = oplog::append(
                &log_dir,
                "maintenance.log",
                &now,
                &format!("maintenance configured by {}", operator()),
            );
            print_status(Some(&maintenance), &now);
        }
        MaintCommand::Off => match std::fs::remove_file(&path) {
            Ok(()) => {
                let _ = oplog::append(
                    &log_dir,
                    "maintenance.log",
                    &now,
                    &format!("maintenance lifted by {}", operator()),
                );
                println!("maintenance lifted");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("maintenance was not on")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        },
        MaintCommand::Status => print_status(Maintenance::load(&path)?.as_ref(), &now),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(maintenance: Option<&Maintenance>, now: &jiff::Zoned) {
    let Some(maintenance) = maintenance else {
        println!("maintenance: off");
        return;
    };
    let fmt = |t: &jiff::Zoned| t.strftime("%Y-%m-%d %H:%M").to_string();
    match maintenance.status_at(now) {
        Status::Active {
            message,
            since,
            until,
        } => {
            let since = since.as_ref().map(fmt).unwrap_or_else(|| "now".into());
            let until = until
                .as_ref()
                .map(fmt)
                .unwrap_or_else(|| "lifted (`tegami maint off`)".into());
            println!("maintenance: ACTIVE since {since} until {until}");
            println!("message: {message}");
        }
        Status::Waiting {
            next_start,
            next_end,
        } => {
            println!(
                "maintenance: scheduled, next from {} to {}",
                fmt(&next_start),
                fmt(&next_end)
            );
            println!("message: {}", maintenance.message());
        }
        Status::Off => println!("maintenance: off"),
    }
    if !maintenance.windows.is_empty() {
        let windows: Vec<String> = maintenance.windows.iter().map(Window::to_string).collect();
        println!("daily windows: {}", windows.join(", "));
    }
    if let Some(by) = &maintenance.set_by {
        println!("set by: {by}");
    }
}

/// Who is at the keyboard, for the log: the user behind sudo if there is one.
fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}
