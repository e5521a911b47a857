//! `tegami doctor`: the diagnosis of `ops::doctor` shown as text or JSON; the exit code is 1
//! when anything FAILs.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use ops::config::Config;
use ops::doctor::{Doctor, Report, Severity};

pub fn run(data: &Path, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let doctor = Doctor::new(data);
    let report = doctor.run(config);
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render(&report)
    };
    // A reader that stops early (`doctor | head`) is not an error.
    match io::Write::write_all(&mut io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(report: &Report) -> String {
    let findings = &report.findings;
    let width = findings
        .iter()
        .map(|f| f.item.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("tegami doctor: {}\n", report.data.display());
    // Failures first: whoever reads only the top (or a cron mail's first lines) must not
    // miss that the store is damaged.
    let failures: Vec<String> = findings
        .iter()
        .filter(|f| f.status == Severity::Fail)
        .map(|f| format!("{}: {}: {}", f.group, f.item, f.value))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "FAIL: {}", failures.join("; "));
    }
    let mut group = "";
    for f in findings {
        if f.group != group {
            group = f.group;
            let _ = write!(out, "\n{group}\n");
        }
        let _ = writeln!(
            out,
            "  {:<4}  {:<width$}  {}",
            f.status.label(),
            f.item,
            f.value
        );
        if let Some(hint) = &f.hint {
            let _ = writeln!(out, "  {:<4}  {:<width$}  hint: {hint}", "", "");
        }
    }
    let (warns, fails) = (report.count(Severity::Warn), report.count(Severity::Fail));
    if warns + fails == 0 {
        out.push_str("\nall OK\n");
    } else {
        let _ = writeln!(out, "\n{fails} FAIL, {warns} WARN");
    }
    out
}

#[cfg(test)]
mod tests {
    use ops::doctor::Finding;

    use super::*;

    fn finding(group: &'static str, item: &str, status: Severity, hint: Option<&str>) -> Finding {
        Finding {
            group,
            item: item.into(),
            status,
            value: format!("{item} value"),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn failures_come_first_then_groups_in_columns() {
        let report = Report {
            data: "/srv/mail".into(),
            findings: vec![
                finding("System", "version", Severity::Ok, None),
                finding("Store", "database", Severity::Warn, Some("look")),
                finding("Store", "schema version", Severity::Fail, Some("restore")),
            ],
        };
        let expected = [
            "tegami doctor: /srv/mail",
            "FAIL: Store: schema version: schema version value",
            "",
            "System",
            "  OK    version         version value",
            "",
            "Store",
            "  WARN  database        database value",
            "                        hint: look",
            "  FAIL  schema version  schema version value",
            "                        hint: restore",
            "",
            "1 FAIL, 1 WARN",
            "",
        ];
        assert_eq!(render(&report), expected.join("\n"));
        let healthy = Report {
            data: "/srv/mail".into(),
            findings: vec![finding("System", "version", Severity::Ok, None)],
        };
        assert!(render(&healthy).ends_with("\n\nall OK\n"));
    }
}
