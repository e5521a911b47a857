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
use ops::Ops;
use store::Store;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::service::{Notifier, Privileges};
use crate::services::Services;
use crate::{logging, override_addr};
use ops::config::Config;

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
    /// IMAP over implicit TLS (default 127.0.0.1:2993 when a certificate is configured).
    #[arg(long)]
    imaps: Option<SocketAddr>,
    /// POP3 over implicit TLS (default 127.0.0.1:2995 when a certificate is configured).
    #[arg(long)]
    pop3s: Option<SocketAddr>,
    /// Submission over implicit TLS (default 127.0.0.1:2465 when a certificate is configured).
    #[arg(long)]
    submissions: Option<SocketAddr>,
    /// HTTPS: the web console and everything on the HTTP listener, over TLS (default
    /// 127.0.0.1:8443 when a certificate is configured).
    #[arg(long)]
    https: Option<SocketAddr>,
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
    for (flag, field) in [
        (listeners.imaps, &mut config.imap.tls_listen),
        (listeners.pop3s, &mut config.pop3.tls_listen),
        (listeners.submissions, &mut config.submission.tls_listen),
        (listeners.https, &mut config.https),
    ] {
        if flag.is_some() {
            *field = flag;
        }
    }

    // Started as root with a [server] user, files are that user's from here on.
    let privileges = Privileges::resolve(&config.server, data)?;
    privileges.assume()?;
    let notifier = Notifier::from_env()?;
    let _lock = lock_data_dir(data)?;
    logging::init_server(&data.join("log"), &config.log)?;
    privileges.report();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tegami")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(data, config, &privileges, &notifier))?;
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

async fn serve(
    data: &Path,
    mut config: Config,
    privileges: &Privileges,
    notifier: &Arc<Notifier>,
) -> anyhow::Result<()> {
    // Ops::open chooses and opens the backend, recovering after a crash first.
    let ops = {
        let (dir, config) = (data.to_path_buf(), config.clone());
        Arc::new(tokio::task::spawn_blocking(move || Ops::open(&dir, config)).await??)
    };
    if let Some(problem) = ops.postmaster_problem() {
        warn!("{problem}");
    }
    let sqlite = ops.sqlite().clone();
    let store: Arc<dyn Store> = sqlite.clone();
    let certs = load_certificates(data, &mut config).await?;
    let tls = certs.as_ref().map(|c| c.server_config());
    let hup = Arc::new(tokio::sync::Notify::new());
    // Background jobs; they stop after the sessions, each finishing the step it is in.
    let mut services = Services::new();
    if let Some(certs) = certs {
        let hup = hup.clone();
        services.start("certificate reload", |stop| {
            certs.watch(CERT_POLL, hup, stop)
        });
    }

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

    privileges.before_bind()?;
    let smtp_listener = bind("smtp", config.smtp.listen).await?;
    let submission_listener = bind("submission", config.submission.listen).await?;
    let pop3_listener = bind("pop3", config.pop3.listen).await?;
    let imap_listener = bind("imap", config.imap.listen).await?;
    let http_listener = bind("http", config.http).await?;
    let imaps_listener = bind_tls("imaps", config.imap.tls_listen).await?;
    let pop3s_listener = bind_tls("pop3s", config.pop3.tls_listen).await?;
    let submissions_listener = bind_tls("submissions", config.submission.tls_listen).await?;
    let https_listener = bind_tls("https", config.https).await?;
    privileges.after_bind()?;

    let trigger = ShutdownTrigger::new();
    let mut listeners = Vec::new();
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

    let smtp = smtp_server::SmtpConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.smtp.max_message_size,
        max_recipients: config.smtp.max_recipients,
        max_line_length: config.smtp.max_line_length,
        command_timeout: config.smtp.command_timeout,
        login_timeout: config.limits.login_timeout,
        data_timeout: config.smtp.data_timeout,
        trust_loopback: config.limits.trust_loopback,
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
        newsletter::Engine::new(sqlite.clone(), data, nl, queue_waker.clone(), clock.clone())
            .context("cannot start the newsletter engine")?
    };
    // The queue starts only now: on its first step it settles campaign mail a crash left
    // unfinished, and only the newsletter engine's bounce router (installed by
    // Engine::new) lets the store count such mail on its campaign.
    services.start("outbound queue", |stop| queue.run(stop));
    {
        let engine = newsletters.clone();
        services.start("newsletters", |stop| engine.run(stop));
    }
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
    listeners.push((
        "smtp",
        tokio::spawn(net::serve(
            smtp_listener,
            ListenerConfig {
                protocol: "smtp",
                max_connections: config.smtp.max_connections,
                busy_reply: smtp_server::BUSY_REPLY,
                implicit_tls: None,
                max_per_address: config.limits.max_connections_per_address,
                exempt_loopback: config.limits.trust_loopback,
            },
            trigger.subscribe(),
            move |conn| smtp_server::run(conn, smtp.clone(), smtp_store.clone(), smtp_gate.clone()),
        )),
    ));
    let submission_session = {
        let (store, gate) = (store.clone(), gate.clone());
        move |conn| smtp_server::run(conn, submission.clone(), store.clone(), gate.clone())
    };
    listeners.push((
        "submission",
        tokio::spawn(net::serve(
            submission_listener,
            ListenerConfig {
                protocol: "submission",
                max_connections: config.submission.max_connections,
                busy_reply: smtp_server::BUSY_REPLY,
                implicit_tls: None,
                max_per_address: config.limits.max_connections_per_address,
                exempt_loopback: config.limits.trust_loopback,
            },
            trigger.subscribe(),
            submission_session.clone(),
        )),
    ));
    listeners.extend(
        serve_tls(
            submissions_listener,
            implicit(
                "submissions",
                config.submission.max_connections,
                &config.limits,
                &tls,
            ),
            &trigger,
            submission_session,
        )
        .map(|task| ("submissions", task)),
    );

    let pop3 = Arc::new(pop3_server::Pop3Server::new(
        pop3_server::Pop3Config {
            hostname: config.hostname.clone(),
            command_timeout: config.pop3.command_timeout,
            login_timeout: config.limits.login_timeout,
            tls: tls.clone(),
            allow_plaintext_auth: config.pop3.allow_plaintext_auth,
            trust_loopback: config.limits.trust_loopback,
            ..pop3_server::Pop3Config::default()
        },
        store.clone(),
        gate.clone(),
        throttle.clone(),
    ));
    let pop3_session = move |conn| pop3_server::run(conn, pop3.clone());
    listeners.push((
        "pop3",
        tokio::spawn(net::serve(
            pop3_listener,
            ListenerConfig {
                protocol: "pop3",
                max_connections: config.pop3.max_connections,
                busy_reply: pop3_server::BUSY_REPLY,
                implicit_tls: None,
                max_per_address: config.limits.max_connections_per_address,
                exempt_loopback: config.limits.trust_loopback,
            },
            trigger.subscribe(),
            pop3_session.clone(),
        )),
    ));
    listeners.extend(
        serve_tls(
            pop3s_listener,
            implicit("pop3s", config.pop3.max_connections, &config.limits, &tls),
            &trigger,
            pop3_session,
        )
        .map(|task| ("pop3s", task)),
    );

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
            login_timeout: config.limits.login_timeout,
            trust_loopback: config.limits.trust_loopback,
            ..imap_server::ImapConfig::default()
        },
        store.clone(),
        gate.clone(),
        changes,
        throttle.clone(),
    ));
    let imap_session = move |conn| imap_server::run(conn, imap.clone());
    listeners.push((
        "imap",
        tokio::spawn(net::serve(
            imap_listener,
            ListenerConfig {
                protocol: "imap",
                max_connections: config.imap.max_connections,
                busy_reply: imap_server::BUSY_REPLY,
                implicit_tls: None,
                max_per_address: config.limits.max_connections_per_address,
                exempt_loopback: config.limits.trust_loopback,
            },
            trigger.subscribe(),
            imap_session.clone(),
        )),
    ));
    listeners.extend(
        serve_tls(
            imaps_listener,
            implicit("imaps", config.imap.max_connections, &config.limits, &tls),
            &trigger,
            imap_session,
        )
        .map(|task| ("imaps", task)),
    );

    services.start("schedule", |stop| {
        crate::schedule::run(
            config.schedule.clone(),
            data.to_path_buf(),
            store.clone(),
            gate.clone(),
            clock.clone(),
            stop,
        )
    });

    let monitor = Arc::new(crate::stats::Monitor::default());
    services.start("wal bound", |stop| {
        crate::stats::bound_wal(store.clone(), config.wal.clone(), monitor.clone(), stop)
    });
    services.start("usage flush", |stop| {
        crate::stats::flush_usage(store.clone(), config.stats.clone(), clock.clone(), stop)
    });

    // DDNS and the witness: tasks of their own; the witness endpoint joins the HTTP
    // listener's routes; both report to the alerts.
    let ddns_status = crate::ddns::start(&config, data, &mut services);
    let witness_book = crate::witness::book(data, &config)?;
    let witness_routes = witness_book
        .as_ref()
        .map(|book| book.router())
        .unwrap_or_default();
    crate::witness::start_heartbeats(&config, &mut services);

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
    {
        let alerts = alerts.clone();
        services.start("alerts", |stop| crate::alerts::run(alerts, stop));
    }
    services.start("quota warnings", |stop| {
        ::ops::quota::watch(ops.clone(), stop)
    });
    if config.imap.full_text_index {
        services.start("full-text index", |stop| {
            ::ops::text_index::run(ops.clone(), stop)
        });
    }
    services.start("housekeeping", |stop| {
        ::ops::archive::housekeeping(ops.clone(), stop)
    });
    // ACME: HTTP-01 answered on the HTTP listener; the service starts once that serves.
    let acme = config
        .acme
        .clone()
        .map(|c| acme::Service::new(data.to_path_buf(), c));
    let acme_routes = acme.as_ref().map(|s| s.router()).unwrap_or_default();
    // The web console, with the one login throttle every protocol shares.
    let console = tegami_web::Console::new(
        ops.clone(),
        throttle.clone(),
        tegami_web::Settings {
            allow_plain_sign_in: config.console.allow_plain_http,
            idle: config.console.session_idle,
            lifetime: config.console.session_lifetime,
            secure_cookies: config.console.secure_cookies,
        },
    );
    // Every face the HTTP listener serves besides its own (/metrics, /health): newsletter
    // links and the admin API, ACME challenges, client autoconfiguration, the witness, the
    // web console.
    let routes = newsletters
        .router()
        .merge(acme_routes)
        .merge(tegami_http::autoconfig::router(client_settings(&config)))
        .merge(witness_routes)
        .merge(tegami_web::router(console));
    let app = tegami_http::router(Arc::new(crate::stats::ServerSource(alerts)), routes);
    // HTTPS serves the same routes; the console marks its cookies Secure there.
    if let Some(listener) = https_listener {
        let app = tegami_web::over_https(app.clone());
        let session = move |conn: net::Connection| {
            let app = app.clone();
            async move {
                let mut shutdown = conn.shutdown;
                let stopped = async move { shutdown.requested().await };
                tegami_http::serve_connection(conn.stream, conn.peer, app, stopped).await;
            }
        };
        listeners.extend(
            serve_tls(
                Some(listener),
                implicit("https", HTTPS_MAX_CONNECTIONS, &config.limits, &tls),
                &trigger,
                session,
            )
            .map(|task| ("https", task)),
        );
    }
    services.start("http", |mut stop| async move {
        let stopped = async move { stop.requested().await };
        if let Err(e) = tegami_http::serve(http_listener, app, stopped).await {
            error!(error = %e, "the HTTP listener failed");
        }
    });
    if let Some(acme) = acme {
        services.start("acme", |stop| acme.run(stop));
    }
    notifier.start_watchdog(&mut services);

    // The handlers go in before anyone is told we are ready: a SIGTERM sent the moment
    // "ready" is read must stop the server cleanly, not kill it by the default action.
    let signals = Signals::install()?;
    println!("tegami ready");
    std::io::stdout().flush()?;
    notifier.notify("READY=1\nSTATUS=accepting mail");
    info!(
        data = %data.display(),
        hostname = %config.hostname,
        services = %services.names().join(", "),
        "tegami is ready"
    );
    let domains = domains_now(&store).await?;
    if domains.is_empty() {
        info!(
            "no domains yet: add one with `tegami domain add example.com`, then an account with \
             `tegami account add alice@example.com --password-stdin`"
        );
    }

    signals.wait(&hup).await;
    notifier.notify("STOPPING=1\nSTATUS=stopping: letting sessions finish");
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
    notifier.notify("STATUS=stopping: letting background services finish their step");
    info!(services = %services.names().join(", "), "stopping the background services");
    let late = services.stop(GRACE).await;
    if !late.is_empty() {
        warn!(services = %late.join(", "), "stopped with services still busy");
    }
    for (name, task) in listeners {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            warn!(listener = name, "the listener did not close in time");
        }
    }
    info!("stopped");
    Ok(())
}

/// What mail clients are told by autoconfiguration, and the MTA-STS policy.
fn client_settings(config: &Config) -> tegami_http::autoconfig::ClientSettings {
    tegami_http::autoconfig::ClientSettings {
        host: config.clients.host.clone(),
        imaps: config.clients.ports.imaps,
        imap: config.clients.ports.imap,
        pop3s: config.clients.ports.pop3s,
        pop3: config.clients.ports.pop3,
        submissions: config.clients.ports.submissions,
        submission: config.clients.ports.submission,
        mta_sts_policy: Some(dns_records::mta_sts_policy(
            &config.hostname,
            config.server.mta_sts_mode,
        )),
    }
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

/// The signals `serve` answers: SIGTERM and SIGINT stop it, SIGHUP reloads certificates.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT; each SIGHUP meanwhile asks for the certificates to be
    /// read again (`hup`).
    async fn wait(mut self, hup: &tokio::sync::Notify) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { info!("received SIGTERM"); break }
                _ = self.int.recv() => { info!("received SIGINT"); break }
                _ = self.hangup.recv() => {
                    info!("received SIGHUP: reading the certificates again");
                    hup.notify_one();
                }
            }
        }
    }
}

/// Connections the HTTPS listener holds at once (browsers open about six each).
const HTTPS_MAX_CONNECTIONS: usize = 512;

/// How often the certificate files are looked at for changes.
const CERT_POLL: Duration = Duration::from_secs(2);

/// Loads the configured certificates and those the ACME client keeps in the data directory.
/// TLS is on when there is at least one, or when ACME is configured (on a first start its
/// certificate arrives seconds later, picked up by the watcher; handshakes fail until then);
/// then the implicit-TLS listeners get their default addresses. Without either, asking for
/// an implicit-TLS listener is an error.
async fn load_certificates(
    data: &Path,
    config: &mut Config,
) -> anyhow::Result<Option<Arc<net::Certificates>>> {
    let sources = config.tls_sources(data);
    let certs = tokio::task::spawn_blocking(move || net::Certificates::load(sources))
        .await?
        .context("cannot load the [tls] certificates (check cert and key in the config file)")?;
    if certs.is_empty() && config.acme.is_none() {
        if let Some((name, addr)) = config.implicit_tls_listeners().first() {
            bail!(
                "--{name} {addr} needs a certificate: set [tls] cert and key in the config file \
                 (or let ACME obtain one), or leave out --{name} and [{}] tls_listen",
                match *name {
                    "imaps" => "imap",
                    "pop3s" => "pop3",
                    "https" => "http",
                    _ => "submission",
                }
            );
        }
        return Ok(None);
    }
    config.default_implicit_tls();
    Ok(Some(Arc::new(certs)))
}

/// The listener settings of an implicit-TLS listener.
fn implicit(
    protocol: &'static str,
    max_connections: usize,
    limits: &ops::config::Limits,
    tls: &Option<Arc<rustls::ServerConfig>>,
) -> ListenerConfig {
    ListenerConfig {
        protocol,
        max_connections,
        // A client turned away expects a TLS handshake, not a plaintext reply: just close.
        busy_reply: b"",
        implicit_tls: tls.clone(),
        max_per_address: limits.max_connections_per_address,
        exempt_loopback: limits.trust_loopback,
    }
}

/// Runs an implicit-TLS listener if it is bound.
fn serve_tls<F, Fut>(
    listener: Option<TcpListener>,
    config: ListenerConfig,
    trigger: &ShutdownTrigger,
    session: F,
) -> Option<tokio::task::JoinHandle<()>>
where
    F: Fn(net::Connection) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = listener?;
    Some(tokio::spawn(net::serve(
        listener,
        config,
        trigger.subscribe(),
        session,
    )))
}

async fn bind_tls(protocol: &str, addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(protocol, addr).await?)),
        None => Ok(None),
    }
}
