//! `tegami acme status`: each configured ACME certificate, read from its file and from the
//! status the server's renewal service last wrote. Works while the server is down.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use ops::config::Config;

#[derive(Subcommand)]
pub enum AcmeCommand {
    /// Each certificate: its names, expiry, serial, last success and last error.
    Status,
}

pub fn run(data: &Path, config: &Config, command: AcmeCommand) -> anyhow::Result<ExitCode> {
    let AcmeCommand::Status = command;
    let Some(acme) = &config.acme else {
        anyhow::bail!(
            "no [acme] section in the config; see tegami.example.toml for directory, contact and names"
        );
    };
    let status = acme::Status::load(data).unwrap_or_default();
    let when = |t: Option<i64>| {
        t.and_then(|t| jiff::Timestamp::from_second(t).ok())
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into())
    };
    let mut failing = false;
    println!("directory {}", acme.directory);
    for names in &acme.certificates {
        let path = acme::cert_path(data, &names[0]);
        let file = match acme::read_cert(&path) {
            Ok(Some(c)) => format!(
                "expires {}, serial {}, issuer {}",
                when(Some(c.not_after)),
                c.serial,
                c.issuer
            ),
            Ok(None) => "no certificate yet".into(),
            Err(e) => format!("unusable: {e}"),
        };
        println!("{}  [{}]", path.display(), names.join(", "));
        println!("  {file}");
        if let Some(s) = status.certificates.get(&names[0]) {
            println!(
                "  last success {}, last attempt {}",
                when(s.last_success),
                when(s.last_attempt)
            );
            if let Some(e) = &s.last_error {
                failing = true;
                println!(
                    "  FAILING ({} attempts in a row, next {}): {e}",
                    s.failures,
                    when(s.next_attempt)
                );
            }
        }
    }
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
