//! `tegami serve`: takes the data directory's lock, opens the store, binds the listeners,
//! and runs until SIGTERM or SIGINT, then lets sessions finish what they were doing.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use net::{ListenerConfig, ShutdownTrigger};
use store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::{logging, override_addr};

/// How long sessions get to finish (an in-flight DATA commit, say) after a stop signal.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Args, Default)]
pub struct Listeners {
    /// SMTP address (default 127.0.0.1:2525; port 0 picks a free port).
    #[arg(long)]
    smtp: Option<SocketAddr>,
    /// Submission address, AUTH required (default 127.0.0.1:2587).
    #[arg(long)]
    submission: Option<SocketAddr>,
    /// POP3 address (default 127.0.0.1:2110).
    #[arg(long)]
    pop3: Option<SocketAddr>,
    /// IMAP address (default 127.0.0.1:2143).
    #[arg(long)]
    imap: Option<SocketAddr>,
    /// HTTP address for /metrics and /health (default 127.0.0.1:8025).
    #[arg(long)]
    http: Option<SocketAddr>,
}

pub fn run(
    data: &Path,
    config_path: Option<&Path>,
    listeners: Listeners,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    override_addr(listeners.smtp, &mut config.smtp.listen);
    override_addr(listeners.submission, &mut config.submission.listen);
    override_addr(listeners.pop3, &mut config.pop3.listen);
    override_addr(listeners.imap, &mut config.imap.listen);
    override_addr(listeners.http, &mut config.http);

    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let _lock = lock_data_dir(data)?;
    logging::init_server(&data.join("log"), &config.log)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tegami")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(data, config))?;
    Ok(ExitCode::SUCCESS)
}

/// Takes the kernel lock on `tegami.lock`. The kernel drops it when the process dies, however
/// it dies, so no stale lock can ever keep the next start from working.
fn lock_data_dir(data: &Path) -> anyhow::Result<File> {
    let path = data.join("tegami.lock");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if let Err(e) = file.try_lock() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        match e {
            std::fs::TryLockError::WouldBlock => bail!(
                "another tegami server{} is running on {} (it holds the lock on {}); stop it first",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                data.display(),
                path.display()
            ),
            std::fs::TryLockError::Error(e) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
    // The pid is written for people reading the file; the lock, not the pid, is the truth.
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

async fn serve(data: &Path, config: Config) -> anyhow::Result<()> {
    let sqlite: Arc<SqliteStore> = {
        let dir = data.to_path_buf();
        Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
                .await?
                .with_context(|| format!("cannot open the store in {}", data.display()))?,
        )
    };
    sqlite.archives().set_prefix(&config.archive.imap_prefix);
    let store: Arc<dyn Store> = sqlite.clone();
    let tls = match &config.tls {
        Some((cert, key)) => Some(net::load_tls(cert, key)?),
        None => None,
    };

    let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
    let gate = gate::Gate::start(gate::GateConfig {
        data_dir: data.to_path_buf(),
        thresholds: config.disk,
        clock: clock.clone(),
        poll: Duration::from_secs(1),
    });
    if let Some(maintenance) = gate.maintenance() {
        warn!(message = %maintenance.message, until = ?maintenance.until, "starting in maintenance mode: clients are turned away until it is lifted");
    }

    let smtp_listener = bind("smtp", config.smtp.listen).await?;
    let submission_listener = bind("submission", config.submission.listen).await?;
    let pop3_listener = bind("pop3", config.pop3.listen).await?;
    let imap_listener = bind("imap", config.imap.listen).await?;
    let http_listener = bind("http", config.http).await?;

    let trigger = ShutdownTrigger::new();
    let throttle = Arc::new(net::LoginThrottle::default());

    // One resolver for MX lookups and the inbound checks, so both share its cache.
    let dns = outbound::resolver(&config.dns_servers).context("cannot set up DNS resolution")?;
    let dkim = {
        let dir = data.join("dkim");
        let keys = outbound::DkimKeys::load(&dir)
            .with_context(|| format!("cannot load the DKIM keys in {}", dir.display()))?;
        for (domain, selector) in keys.domains() {
            info!(
                domain,
                selector, "DKIM key loaded: mail from this domain is signed"
            );
        }
        Arc::new(keys)
    };
    let queue = outbound::Queue::new(
        store.clone(),
        crate::send::queue_config(&config),
        crate::send::routes(&config),
        dns.clone(),
        dkim,
        clock.clone(),
    );
    let queue_waker = queue.waker();
    let queue_task = tokio::spawn(queue.run(trigger.subscribe()));

    let smtp = smtp_server::SmtpConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.smtp.max_message_size,
        max_recipients: config.smtp.max_recipients,
        max_line_length: config.smtp.max_line_length,
        command_timeout: config.smtp.command_timeout,
        data_timeout: config.smtp.data_timeout,
        max_errors: config.smtp.max_errors,
        tls: tls.clone(),
        queue: Some(queue_waker.clone()),
        ..smtp_server::SmtpConfig::new(config.hostname.clone())
    };
    // Submission: the same limits, AUTH against the accounts, no inbound checks (the
    // client is one of ours, and its mail is checked by whoever receives it).
    let submission = Arc::new(smtp_server::SmtpConfig {
        submission: Some(smtp_server::SubmissionPolicy {
            require_tls: config.submission.require_tls,
        }),
        throttle: Some(throttle.clone()),
        ..smtp.clone()
    });
    // Newsletters and step mail: they send through the queue, take their bounces from the
    // SMTP listener and their clicks and unsubscribes from the HTTP listener.
    let newsletters = {
        let mut nl = config.newsletter.clone();
        if nl.bounce_domain.is_empty() {
            nl.bounce_domain = domains_now(&store)
                .await?
                .into_iter()
                .next()
                .unwrap_or_else(|| config.hostname.clone());
        }
        newsletter::Engine::new(sqlite.clone(), nl, queue_waker.clone(), clock.clone())
            .context("cannot start the newsletter engine")?
    };
    let newsletter_task = tokio::spawn(newsletters.clone().run(trigger.subscribe()));
    let smtp = Arc::new(smtp_server::SmtpConfig {
        bounces: Some(newsletters.bounce_sink()),
        inbound: config.inbound.checks.then(|| smtp_server::InboundChecks {
            dns: dns.clone(),
            policy: if config.inbound.enforce {
                smtp_server::DmarcPolicy::Enforce
            } else {
                smtp_server::DmarcPolicy::Record
            },
            check_loopback: config.inbound.check_loopback,
        }),
        ..smtp
    });
    let smtp_store = store.clone();
    let smtp_gate = gate.clone();
    let smtp_task = tokio::spawn(net::serve(
        smtp_listener,
        ListenerConfig {
            protocol: "smtp",
            max_connections: config.smtp.max_connections,
            busy_reply: smtp_server::BUSY_REPLY,
        },
        trigger.subscribe(),
        move |conn| smtp_server::run(conn, smtp.clone(), smtp_store.clone(), smtp_gate.clone()),
    ));
    let submission_store = store.clone();
    let submission_gate = gate.clone();
    let submission_task = tokio::spawn(net::serve(
        submission_listener,
        ListenerConfig {
            protocol: "submission",
            max_connections: config.submission.max_connections,
            busy_reply: smtp_server::BUSY_REPLY,
        },
        trigger.subscribe(),
        move |conn| {
            smtp_server::run(
                conn,
                submission.clone(),
                submission_store.clone(),
                submission_gate.clone(),
            )
        },
    ));

    let pop3 = Arc::new(pop3_server::Pop3Server::new(
        pop3_server::Pop3Config {
            hostname: config.hostname.clone(),
            command_timeout: config.pop3.command_timeout,
            tls: tls.clone(),
            ..pop3_server::Pop3Config::default()
        },
        store.clone(),
        gate.clone(),
        throttle.clone(),
    ));
    let pop3_task = tokio::spawn(net::serve(
        pop3_listener,
        ListenerConfig {
            protocol: "pop3",
            max_connections: config.pop3.max_connections,
            busy_reply: pop3_server::BUSY_REPLY,
        },
        trigger.subscribe(),
        move |conn| pop3_server::run(conn, pop3.clone()),
    ));

    // Every committed change reaches open IMAP sessions at once, IDLE above all.
    let changes = Arc::new(imap_server::Changes::default());
    store.set_change_listener(changes.clone());
    let imap = Arc::new(imap_server::ImapServer::new(
        imap_server::ImapConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.smtp.max_message_size as usize,
            command_timeout: config.imap.command_timeout,
            max_connections_per_account: config.imap.max_connections_per_account,
            tls: tls.clone(),
            allow_plaintext_auth: config.imap.allow_plaintext_auth,
            ..imap_server::ImapConfig::default()
        },
        store.clone(),
        gate.clone(),
        changes,
        throttle.clone(),
    ));
    let imap_task = tokio::spawn(net::serve(
        imap_listener,
        ListenerConfig {
            protocol: "imap",
            max_connections: config.imap.max_connections,
            busy_reply: imap_server::BUSY_REPLY,
        },
        trigger.subscribe(),
        move |conn| imap_server::run(conn, imap.clone()),
    ));

    let schedule_task = tokio::spawn(crate::schedule::run(
        config.schedule.clone(),
        data.to_path_buf(),
        store.clone(),
        gate.clone(),
        clock.clone(),
    ));

    let monitor = Arc::new(crate::stats::Monitor::default());
    let wal_task = tokio::spawn(crate::stats::bound_wal(
        store.clone(),
        config.wal.clone(),
        monitor.clone(),
    ));

    let flush_task = tokio::spawn(crate::stats::flush_usage(
        store.clone(),
        config.stats.clone(),
        clock.clone(),
    ));

    // DDNS and the witness: tasks of their own; the witness endpoint joins the HTTP
    // listener's routes; both report to the alerts.
    let (ddns_status, ddns_task) = crate::ddns::start(&config, data);
    let witness_book = crate::witness::book(data, &config)?;
    let heartbeat_task = crate::witness::start_heartbeats(&config);

    let alerts = Arc::new(crate::alerts::Context {
        data: data.to_path_buf(),
        config: config.clone(),
        store: store.clone(),
        gate: gate.clone(),
        clock: clock.clone(),
        monitor: monitor.clone(),
        alerts: Arc::default(),
        ddns: ddns_status,
        witness: witness_book.clone(),
        started: ::ddns::unix_now(),
    });
    let alerts_task = tokio::spawn(crate::alerts::run(alerts.clone()));
    let housekeeping_task = tokio::spawn(crate::archive::housekeeping(
        sqlite,
        data.to_path_buf(),
        config.clone(),
        clock.clone(),
    ));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(tegami_http::serve(
        http_listener,
        Arc::new(crate::stats::ServerSource(alerts)),
        match &witness_book {
            Some(book) => newsletters.router().merge(book.router()),
            None => newsletters.router(),
        },
        async move {
            let _ = http_stopped.await;
        },
    ));

    println!("tegami ready");
    std::io::stdout().flush()?;
    info!(data = %data.display(), hostname = %config.hostname, "tegami is ready");
    let domains = domains_now(&store).await?;
    if domains.is_empty() {
        info!(
            "no domains yet: add one with `tegami domain add example.com`, then an account with \
             `tegami account add alice@example.com --password-stdin`"
        );
    }

    wait_for_signal().await?;
    info!("stopping: letting sessions finish");
    if tokio::time::timeout(GRACE, trigger.shutdown())
        .await
        .is_err()
    {
        warn!(
            seconds = GRACE.as_secs(),
            "some sessions did not finish in time; stopping anyway"
        );
    }
    schedule_task.abort();
    wal_task.abort();
    flush_task.abort();
    alerts_task.abort();
    housekeeping_task.abort();
    for task in ddns_task.iter().chain(&heartbeat_task) {
        task.abort();
    }
    let _ = http_stop.send(());
    if tokio::time::timeout(Duration::from_secs(5), http_task)
        .await
        .is_err()
    {
        warn!("the HTTP listener did not stop in time");
    }
    // What the sessions counted since the last flush is written before the store closes.
    crate::stats::flush_now(&store, config.stats.keep_days, &clock).await;
    smtp_task.abort();
    submission_task.abort();
    queue_task.abort();
    newsletter_task.abort();
    pop3_task.abort();
    imap_task.abort();
    info!("stopped");
    Ok(())
}

async fn domains_now(store: &Arc<dyn Store>) -> anyhow::Result<Vec<String>> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || store.domains()).await??)
}

async fn bind(protocol: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {protocol} on {addr} (is another server using it? choose another with --{protocol})")
    })?;
    let bound = listener.local_addr()?;
    println!("tegami listening {protocol} {bound}");
    info!(protocol, addr = %bound, "listening");
    Ok(listener)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("received SIGTERM"),
        _ = int.recv() => info!("received SIGINT"),
    }
    Ok(())
}
