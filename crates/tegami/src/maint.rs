//! `tegami maint`: the face of `ops::maint`, which sets, lifts and shows maintenance mode by
//! writing the `maint` file. It needs no running server, and the server notices the file
//! within two seconds.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use gate::{Status, Window};
use ops::maint::{MaintOn, MaintState};

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
    let clock = ops::clock()?;
    match command {
        MaintCommand::On { message, windows } => {
            let operator = operator();
            let request = MaintOn {
                message,
                windows,
                set_by: format!("{operator} with `tegami maint on`"),
                operator,
            };
            print_status(&ops::maint::on(data, &clock, request)?);
        }
        MaintCommand::Off => {
            if ops::maint::off(data, &clock, &operator())? {
                println!("maintenance lifted");
            } else {
                println!("maintenance was not on");
            }
        }
        MaintCommand::Status => print_status(&ops::maint::status(data, &clock)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(state: &MaintState) {
    let Some(maintenance) = &state.maintenance else {
        println!("maintenance: off");
        return;
    };
    let fmt = |t: &jiff::Zoned| t.strftime("%Y-%m-%d %H:%M").to_string();
    match state.status() {
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
