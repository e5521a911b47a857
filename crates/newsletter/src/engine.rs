//! The engine: renders campaigns and step mail into the outbound queue (exactly once, at
//! a throttled rate), takes bounces from the SMTP listener, and prunes old raw events.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{
    BouncePolicy, BounceRouter, Campaign, CampaignAction, CampaignId, CampaignState, HistoryRef,
    List, ListId, Mail, Mailing, Outbound, StepId, StoreError, Subscriber, SubscriberId,
    Transition,
};
use tokio::sync::Notify;

use crate::message::{Letter, build_message};
use crate::template::{Rendered, Tracked, Vars, add_open_pixel, render_parts, track_links};
use crate::token::{Keys, Origin, Token};
use crate::{FeedbackReport, parse_bounce, parse_feedback_report};

/// The `[newsletter]` settings, resolved.
#[derive(Debug, Clone)]
pub struct NewsletterConfig {
    /// The public URL of the HTTP listener, without a trailing slash: links and
    /// unsubscribe URLs start with it.
    pub base_url: String,
    /// One of our domains: VERP envelope senders live there, and Message-IDs and List-Ids
    /// name it.
    pub bounce_domain: String,
    pub verp_prefix: String,
    /// Hard bounces that disable a subscriber (0: never).
    pub hard_bounce_limit: u32,
    /// Different mails that soft-bounced within `soft_bounce_days` and disable a
    /// subscriber as a hard bounce would (0: never).
    pub soft_bounce_limit: u32,
    pub soft_bounce_days: u32,
    /// Days raw events (clicks, bounce texts, the action log) are kept.
    pub keep_days: u32,
    pub track_clicks: bool,
    /// Adds an invisible pixel (`/o/<token>`) to the HTML part of campaign and step mail
    /// and records its fetches as opens. Off by default: mail stays free of it.
    pub track_opens: bool,
    /// Messages per second for a campaign that sets no rate of its own; 0 = no limit.
    pub rate_per_second: u32,
    /// How often campaigns and steps are looked at.
    pub poll: Duration,
    /// The subscribe form sends an address at most one confirmation mail in this long.
    pub confirm_interval: Duration,
    /// Subscribe requests one caller address may make in an hour.
    pub subscribe_per_hour: u32,
    /// Callers of `/subscribe` trusted to have checked the address themselves (a signup
    /// backend): on a list without double opt-in, their subscribers are active at once.
    /// Anyone else's get a confirmation mail first, whatever the list says.
    pub subscribe_trusted: Vec<Network>,
}

/// A block of IP addresses: an address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `192.0.2.0/24`, `2001:db8::/32`, or one address (all its bits count).
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or ADDRESS/BITS"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(format!("'{text}': the prefix must be 0 to {bits}")),
            },
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let keep = |bits: u32, prefix: u8| -> u128 {
            if prefix == 0 {
                0
            } else {
                (u128::MAX << (128 - u32::from(prefix))) >> (128 - bits)
            }
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = keep(32, self.prefix);
                (u128::from(u32::from(net)) & mask) == (u128::from(u32::from(ip)) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = keep(128, self.prefix);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

impl NewsletterConfig {
    /// Whether `/subscribe` may make this caller's subscribers active without a
    /// confirmation (on lists without double opt-in).
    pub fn trusts_subscriber(&self, caller: IpAddr) -> bool {
        self.subscribe_trusted.iter().any(|n| n.contains(caller))
    }

    /// The store's view of the bounce limits.
    pub fn bounce_policy(&self) -> BouncePolicy {
        BouncePolicy {
            hard_limit: self.hard_bounce_limit,
            soft_limit: self.soft_bounce_limit,
            soft_days: self.soft_bounce_days,
        }
    }
}

impl Default for NewsletterConfig {
    fn default() -> Self {
        NewsletterConfig {
            base_url: "http://127.0.0.1:8025".into(),
            bounce_domain: "localhost".into(),
            verp_prefix: "bounces".into(),
            hard_bounce_limit: 1,
            soft_bounce_limit: 5,
            soft_bounce_days: 30,
            keep_days: 90,
            track_clicks: true,
            track_opens: false,
            rate_per_second: 50,
            poll: Duration::from_secs(5),
            confirm_interval: Duration::from_secs(24 * 3600),
            subscribe_per_hour: 20,
            subscribe_trusted: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewsletterError {
    #[error("newsletter key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Mails rendered per batch: one `enqueue_mails` transaction.
pub const BATCH: usize = 200;
/// Raw events deleted per transaction by the pruner.
pub const PRUNE_BATCH: usize = 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// The newsletter engine; cheap to clone (shared inside).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Mailing>,
    pub(crate) config: NewsletterConfig,
    pub(crate) keys: Keys,
    pub(crate) waker: Arc<Notify>,
    pub(crate) clock: gate::Clock,
    /// Throttle state of the campaigns being sent (lives as long as the process: a
    /// restart begins with a full bucket, which is at most one second's worth).
    pacers: Mutex<HashMap<CampaignId, Pacer>>,
    /// The subscribe form's limits on confirmation mail (`http.rs`).
    pub(crate) subscribe_limits: crate::http::SubscribeLimits,
}

impl Engine {
    /// The key for tokens and VERP addresses is `<data>/newsletter.key` in the data
    /// directory, made on first use (it is this node's secret, not the store's).
    pub fn new(
        store: Arc<dyn Mailing>,
        data: &Path,
        config: NewsletterConfig,
        queue_waker: Arc<Notify>,
        clock: gate::Clock,
    ) -> Result<Engine, NewsletterError> {
        let path = data.join("newsletter.key");
        let keys = Keys::load_or_create(&path).map_err(|source| NewsletterError::Key {
            path: path.clone(),
            source,
        })?;
        Ok(Engine::with_keys(store, config, keys, queue_waker, clock))
    }

    pub fn with_keys(
        store: Arc<dyn Mailing>,
        mut config: NewsletterConfig,
        keys: Keys,
        queue_waker: Arc<Notify>,
        clock: gate::Clock,
    ) -> Engine {
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        // The outbound queue's settlements learn refusals at RCPT and give-ups first; the
        // store records them as bounces in the same transaction when it can read the
        // sender, which takes our key.
        store.set_bounce_router(Arc::new(VerpRouter {
            keys: keys.clone(),
            verp_prefix: config.verp_prefix.clone(),
            bounce_domain: config.bounce_domain.clone(),
            policy: config.bounce_policy(),
        }));
        Engine {
            inner: Arc::new(Inner {
                store,
                config,
                keys,
                waker: queue_waker,
                clock,
                pacers: Mutex::new(HashMap::new()),
                subscribe_limits: Default::default(),
            }),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn config(&self) -> &NewsletterConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.unix()
    }

    /// The bounce sink for `SmtpConfig::bounces`.
    pub fn bounce_sink(&self) -> Arc<dyn smtp_server::BounceSink> {
        Arc::new(self.clone())
    }

    /// The HTTP routes (see [`crate::router`]).
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.clone())
    }

    /// The campaign sender, the step scheduler and the pruner, until shutdown. Each stops
    /// at a safe point: after a batch's transaction, never inside one.
    pub async fn run(self, shutdown: net::Shutdown) {
        tokio::join!(
            self.clone().run_campaigns(shutdown.clone()),
            self.clone().run_steps(shutdown.clone()),
            self.run_pruner(shutdown),
        );
    }

    async fn run_campaigns(self, mut shutdown: net::Shutdown) {
        while !shutdown.is_shutting_down() {
            let engine = self.clone();
            let now = self.now();
            let wait = match tokio::task::spawn_blocking(move || engine.campaigns_tick(now)).await {
                Ok(Ok(Some(wait))) => wait,
                Ok(Ok(None)) => {
                    // Idle: a cheap look every LOOK for a campaign that became due (made by
                    // the CLI in another process, or reaching its start), so "send now"
                    // starts within a quarter second instead of at the next poll.
                    self.idle_until_campaign_work(&mut shutdown).await;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "newsletter: campaign sending failed");
                    self.inner.config.poll
                }
                Err(e) => {
                    tracing::error!(error = %e, "newsletter: campaign sender panicked");
                    self.inner.config.poll
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.requested() => {}
            }
        }
    }

    /// Returns when a campaign has work, after `poll` at the latest, or at shutdown.
    async fn idle_until_campaign_work(&self, shutdown: &mut net::Shutdown) {
        const LOOK: Duration = Duration::from_millis(250);
        let until = tokio::time::Instant::now() + self.inner.config.poll;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = tokio::time::sleep(LOOK) => {}
                _ = shutdown.requested() => return,
            }
            let store = self.inner.store.clone();
            let due = tokio::task::spawn_blocking(move || store.campaign_work_at()).await;
            if let Ok(Ok(Some(at))) = due
                && at <= self.now()
            {
                return;
            }
        }
    }

    async fn run_steps(self, mut shutdown: net::Shutdown) {
        while !shutdown.is_shutting_down() {
            let engine = self.clone();
            let now = self.now();
            let budget = self.step_budget();
            match tokio::task::spawn_blocking(move || engine.send_due_steps_at_most(now, budget))
                .await
            {
                Ok(Ok(queued)) if queued == budget => tracing::info!(
                    queued,
                    rate = self.inner.config.rate_per_second,
                    "newsletter: step mail is behind; the overdue mails go out at the configured rate"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "newsletter: step mail failed"),
                Err(e) => tracing::error!(error = %e, "newsletter: step scheduler panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.poll) => {}
                _ = shutdown.requested() => {}
            }
        }
    }

    async fn run_pruner(self, mut shutdown: net::Shutdown) {
        while !shutdown.is_shutting_down() {
            loop {
                let engine = self.clone();
                let now = self.now();
                match tokio::task::spawn_blocking(move || engine.prune_once(now)).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => {
                        tracing::debug!(removed = n, "newsletter: pruned events");
                        if shutdown.is_shutting_down() {
                            return;
                        }
                        // Let writers in between batches.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "newsletter: pruning failed");
                        break;
                    }
                    Err(_) => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
                _ = shutdown.requested() => {}
            }
        }
    }

    /// One pruning batch: raw events older than `keep_days` before `now`.
    pub fn prune_once(&self, now: i64) -> Result<u64, StoreError> {
        let before = now - i64::from(self.inner.config.keep_days) * 86_400;
        self.inner.store.prune_events(before, PRUNE_BATCH)
    }

    /// Every pruning batch due at `now`; returns the rows removed.
    pub fn prune_all(&self, now: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            match self.prune_once(now)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// One pass over the campaigns: starts the scheduled ones that are due, sends one
    /// batch of each campaign being sent (as far as its throttle allows), and marks
    /// finished ones Done. Returns how soon to look again when something is still being
    /// sent, `None` when nothing is.
    pub fn campaigns_tick(&self, now: i64) -> Result<Option<Duration>, StoreError> {
        let store = &self.inner.store;
        let mut busy = false;
        let mut soonest = Duration::from_secs(1);
        for campaign in store.campaigns()? {
            match campaign.state {
                CampaignState::Scheduled if campaign.send_at <= now => {
                    // Paused or cancelled since the list was read? Then it stays so.
                    let started = store.campaign_apply(campaign.id, CampaignAction::Start, now)?;
                    if !matches!(started, Transition::Moved { .. }) {
                        continue;
                    }
                }
                CampaignState::Sending => {}
                _ => continue,
            }
            busy = true;
            match self.campaign_batch(&campaign, now)? {
                BatchOutcome::Done => {
                    // Paused or cancelled meanwhile? Then it stays as the operator said.
                    store.campaign_apply(campaign.id, CampaignAction::Finish, now)?;
                    self.inner
                        .pacers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&campaign.id);
                }
                BatchOutcome::Sent(_) => soonest = Duration::ZERO,
                BatchOutcome::Throttled(wait) => soonest = soonest.min(wait),
            }
        }
        Ok(busy.then_some(soonest))
    }

    /// Renders and queues one batch of a campaign, as many as the throttle allows now.
    pub fn campaign_batch(
        &self,
        campaign: &Campaign,
        now: i64,
    ) -> Result<BatchOutcome, StoreError> {
        let store = &self.inner.store;
        let pending = store.campaign_pending(campaign.id, None, BATCH)?;
        if pending.is_empty() {
            return Ok(BatchOutcome::Done);
        }
        // The campaign's own rate, as `campaign show` reports it: the configured one was
        // filled in when the campaign was made, and 0 is no limit (it silently became the
        // configured rate here once).
        let rate = campaign.rate_per_second;
        let chosen: Vec<Subscriber> = {
            let mut pacers = self.inner.pacers.lock().unwrap_or_else(|p| p.into_inner());
            let pacer = pacers
                .entry(campaign.id)
                .or_insert_with(|| Pacer::new(rate, campaign.rate_per_domain));
            pacer.set_rates(rate, campaign.rate_per_domain);
            let now = Instant::now();
            pending
                .into_iter()
                .filter(|s| pacer.take(domain_of(&s.email), now))
                .collect()
        };
        if chosen.is_empty() {
            let wait = self
                .inner
                .pacers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&campaign.id)
                .map_or(Duration::from_millis(100), Pacer::wait);
            return Ok(BatchOutcome::Throttled(wait));
        }
        let about = HistoryRef::Campaign(campaign.id);
        // Each reader gets the mail as one of the list they are on (its From and List-Id,
        // and an unsubscribe link for that list), also in a campaign to several lists.
        let mut lists: HashMap<ListId, List> = HashMap::new();
        for s in &chosen {
            if let Entry::Vacant(e) = lists.entry(s.list) {
                e.insert(store.list_by_id(s.list)?);
            }
        }
        let prepared = self.prepare(
            about,
            &campaign.subject,
            &campaign.text,
            campaign.html.as_deref(),
        )?;
        let mails: Vec<Mail> = chosen
            .iter()
            .map(|s| self.render_mail(about, &lists[&s.list], &prepared, s, now))
            .collect();
        let queued = store.enqueue_mails(about, &mails, now)?;
        if queued > 0 {
            self.inner.waker.notify_one();
        }
        tracing::debug!(campaign = campaign.id.0, queued, "newsletter: batch queued");
        Ok(BatchOutcome::Sent(queued))
    }

    /// How many step mails one look may queue: `rate_per_second` for every second until the
    /// next look, so that the mails that fell due while the server was down (or while a
    /// list grew faster than the rate) go out spaced at the configured rate, oldest first,
    /// rather than all in one second; unlimited when the rate is 0.
    fn step_budget(&self) -> usize {
        let rate = self.inner.config.rate_per_second;
        if rate == 0 {
            return usize::MAX;
        }
        let per_look = f64::from(rate) * self.inner.config.poll.as_secs_f64();
        (per_look.ceil() as usize).max(1)
    }

    /// Renders and queues every step mail due at `now`; returns how many were queued.
    pub fn send_due_steps(&self, now: i64) -> Result<usize, StoreError> {
        self.send_due_steps_at_most(now, usize::MAX)
    }

    /// [`Engine::send_due_steps`], queuing at most `limit` mails in the store's order
    /// (sequence, then subscriber); the rest wait for the next call.
    pub fn send_due_steps_at_most(&self, now: i64, limit: usize) -> Result<usize, StoreError> {
        let store = &self.inner.store;
        let mut total = 0;
        let mut lists: HashMap<ListId, List> = HashMap::new();
        let mut prepared: HashMap<StepId, Prepared> = HashMap::new();
        let mut last_page: Vec<(StepId, SubscriberId)> = Vec::new();
        loop {
            let room = limit.saturating_sub(total);
            if room == 0 {
                return Ok(total);
            }
            // Branches not taken first: a reader passed over a step may be due for the next.
            while store.steps_skip_due(now, BATCH)? > 0 {}
            let mut due = store.steps_due(now, BATCH)?;
            due.truncate(room);
            // The same page twice means the store keeps offering mails it will not take:
            // stop rather than spin. A page that queued nothing is not enough to tell: its
            // readers may all have been suppressed, which is progress (they are done).
            let page: Vec<(StepId, SubscriberId)> =
                due.iter().map(|(step, s)| (step.id, s.id)).collect();
            if due.is_empty() || page == last_page {
                return Ok(total);
            }
            let mut by_step: HashMap<StepId, Vec<Mail>> = HashMap::new();
            for (step, subscriber) in &due {
                let about = HistoryRef::Step(step.id);
                if let Entry::Vacant(e) = prepared.entry(step.id) {
                    e.insert(self.prepare(
                        about,
                        &step.subject,
                        &step.text,
                        step.html.as_deref(),
                    )?);
                }
                if let Entry::Vacant(e) = lists.entry(subscriber.list) {
                    e.insert(store.list_by_id(subscriber.list)?);
                }
                let mail = self.render_mail(
                    about,
                    &lists[&subscriber.list],
                    &prepared[&step.id],
                    subscriber,
                    now,
                );
                by_step.entry(step.id).or_default().push(mail);
            }
            let mut queued = 0;
            for (step, mails) in by_step {
                queued += store.enqueue_mails(HistoryRef::Step(step), &mails, now)?;
            }
            if queued > 0 {
                self.inner.waker.notify_one();
            }
            total += queued;
            if due.len() < BATCH {
                return Ok(total);
            }
            last_page = page;
        }
    }

    /// A campaign's or step's templates made ready: links replaced by tracking variables
    /// and the original links stored (the same list every time for the same template).
    fn prepare(
        &self,
        about: HistoryRef,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<Prepared, StoreError> {
        let tracked = if self.inner.config.track_clicks {
            let t = track_links(text, html);
            if self.inner.store.links(about)? != t.links {
                self.inner.store.set_links(about, &t.links)?;
            }
            t
        } else {
            Tracked {
                text: text.to_string(),
                html: html.map(str::to_string),
                links: Vec::new(),
            }
        };
        Ok(Prepared {
            subject: subject.to_string(),
            tracked,
        })
    }

    fn render_mail(
        &self,
        about: HistoryRef,
        list: &List,
        prepared: &Prepared,
        subscriber: &Subscriber,
        now: i64,
    ) -> Mail {
        let config = &self.inner.config;
        let keys = &self.inner.keys;
        let origin = origin_of(about);
        let sid = subscriber.id.0;
        let unsubscribe_url = format!(
            "{}/unsubscribe/{}",
            config.base_url,
            keys.sign(&Token::Unsubscribe {
                origin: Some(origin),
                subscriber: sid,
            })
        );
        let links: Vec<String> = (0..prepared.tracked.links.len())
            .map(|i| {
                format!(
                    "{}/c/{}",
                    config.base_url,
                    keys.sign(&Token::Click {
                        origin,
                        subscriber: sid,
                        link: i as u32,
                    })
                )
            })
            .collect();
        let vars = Vars {
            name: &subscriber.name,
            email: &subscriber.email,
            attributes: &subscriber.attributes,
            unsubscribe_url: &unsubscribe_url,
            links: &links,
        };
        let Rendered {
            subject,
            text,
            html,
        } = render_parts(
            &prepared.subject,
            &prepared.tracked.text,
            prepared.tracked.html.as_deref(),
            &vars,
        );
        let html = html.map(|html| {
            if config.track_opens {
                let pixel = format!(
                    "{}/o/{}",
                    config.base_url,
                    keys.sign(&Token::Open {
                        origin,
                        subscriber: sid,
                    })
                );
                add_open_pixel(&html, &pixel)
            } else {
                html
            }
        });
        let message = build_message(&Letter {
            from_address: &list.from_address,
            from_name: &list.from_name,
            to_address: &subscriber.email,
            to_name: &subscriber.name,
            subject: &subject,
            text: &text,
            html: html.as_deref(),
            list_name: &list.name,
            domain: &config.bounce_domain,
            unsubscribe_url: &unsubscribe_url,
            date: now,
        });
        Mail {
            subscriber: subscriber.id,
            message,
            envelope: Outbound {
                sender: keys.verp(&config.verp_prefix, &config.bounce_domain, origin, sid),
                recipients: vec![subscriber.email.clone()],
                account: None,
            },
        }
    }

    /// The confirmation mail of a double opt-in, queued at once.
    pub(crate) fn send_confirmation(
        &self,
        list: &List,
        subscriber: &Subscriber,
        now: i64,
    ) -> Result<(), StoreError> {
        let config = &self.inner.config;
        let url = format!(
            "{}/confirm/{}",
            config.base_url,
            self.inner.keys.sign(&Token::Confirm {
                subscriber: subscriber.id.0
            })
        );
        let text = format!(
            "Please confirm your subscription to {} by opening this link:\n\n{url}\n\nIf you did not ask for it, ignore this mail: you will not hear from us again.\n",
            list.name
        );
        let unsubscribe_url = format!(
            "{}/unsubscribe/{}",
            config.base_url,
            self.inner.keys.sign(&Token::Unsubscribe {
                origin: None,
                subscriber: subscriber.id.0
            })
        );
        let message = build_message(&Letter {
            from_address: &list.from_address,
            from_name: &list.from_name,
            to_address: &subscriber.email,
            to_name: &subscriber.name,
            subject: &format!("Confirm your subscription to {}", list.name),
            text: &text,
            html: None,
            list_name: &list.name,
            domain: &config.bounce_domain,
            unsubscribe_url: &unsubscribe_url,
            date: now,
        });
        let envelope = Outbound {
            sender: list.from_address.clone(),
            recipients: vec![subscriber.email.clone()],
            account: None,
        };
        store::Queue::accept(self.inner.store.as_ref(), &message, &[], Some(&envelope))?;
        self.inner.waker.notify_one();
        Ok(())
    }
}

/// What one call of [`Engine::campaign_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Queued this many (0 when every mail of the batch was already in the ledger).
    Sent(usize),
    /// The throttle allows nothing now; look again after this long.
    Throttled(Duration),
    /// Nobody is pending.
    Done,
}

struct Prepared {
    subject: String,
    tracked: Tracked,
}

pub(crate) fn origin_of(about: HistoryRef) -> Origin {
    match about {
        HistoryRef::Campaign(c) => Origin::Campaign(c.0),
        HistoryRef::Step(s) => Origin::Step(s.0),
    }
}

pub(crate) fn about_of(origin: Origin) -> HistoryRef {
    match origin {
        Origin::Campaign(id) => HistoryRef::Campaign(CampaignId(id)),
        Origin::Step(id) => HistoryRef::Step(StepId(id)),
    }
}

fn domain_of(email: &str) -> String {
    email
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase()
}

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(f64::from(self.rate));
        self.last = now;
    }

    fn available(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.rate == 0 || self.tokens >= 1.0
    }

    fn spend(&mut self) {
        if self.rate > 0 {
            self.tokens -= 1.0;
        }
    }

    fn wait(&self) -> Duration {
        if self.rate == 0 || self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / f64::from(self.rate))
        }
    }
}

/// A campaign's throttle: messages per second overall and per destination domain.
#[derive(Debug)]
struct Pacer {
    overall: Bucket,
    per_domain_rate: u32,
    domains: HashMap<String, Bucket>,
}

impl Pacer {
    fn new(rate: u32, per_domain: u32) -> Pacer {
        Pacer {
            overall: Bucket::new(rate, Instant::now()),
            per_domain_rate: per_domain,
            domains: HashMap::new(),
        }
    }

    fn set_rates(&mut self, rate: u32, per_domain: u32) {
        self.overall.rate = rate;
        if per_domain != self.per_domain_rate {
            self.per_domain_rate = per_domain;
            self.domains.clear();
        }
    }

    /// Takes a token for one message to `domain`, if both buckets have one.
    fn take(&mut self, domain: String, now: Instant) -> bool {
        if !self.overall.available(now) {
            return false;
        }
        if self.per_domain_rate > 0 {
            // Forget idle domains so the map stays the size of one batch's domains.
            if self.domains.len() > 4 * BATCH {
                self.domains.retain(|_, b| b.tokens < f64::from(b.rate));
            }
            let rate = self.per_domain_rate;
            let bucket = self
                .domains
                .entry(domain)
                .or_insert_with(|| Bucket::new(rate, now));
            if !bucket.available(now) {
                return false;
            }
            bucket.spend();
        }
        self.overall.spend();
        true
    }

    fn wait(&self) -> Duration {
        let w = self.overall.wait();
        if w.is_zero() {
            // Held back by a domain: its bucket refills within 1/rate seconds.
            Duration::from_secs_f64(1.0 / f64::from(self.per_domain_rate.max(1)))
                .min(Duration::from_secs(1))
        } else {
            w
        }
    }
}

/// Reads the VERP senders of queued mail for the store (see [`store::BounceRouter`]).
struct VerpRouter {
    keys: Keys,
    verp_prefix: String,
    bounce_domain: String,
    policy: BouncePolicy,
}

impl BounceRouter for VerpRouter {
    fn route(&self, sender: &str) -> Option<(HistoryRef, SubscriberId)> {
        let (origin, subscriber) =
            self.keys
                .decode_verp(&self.verp_prefix, &self.bounce_domain, sender)?;
        Some((about_of(origin), SubscriberId(subscriber)))
    }

    fn policy(&self) -> BouncePolicy {
        self.policy
    }
}

impl Engine {
    /// Whether `recipient` is the bare bounce address `<verp_prefix>@<bounce_domain>`: the
    /// one an operator registers with mailbox providers' feedback loops, which send their
    /// reports there rather than to the VERP address of each mail.
    fn is_feedback_address(&self, recipient: &str) -> bool {
        let c = &self.inner.config;
        let recipient = recipient
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        recipient.rsplit_once('@').is_some_and(|(local, domain)| {
            local.eq_ignore_ascii_case(&c.verp_prefix)
                && domain.eq_ignore_ascii_case(&c.bounce_domain)
        })
    }

    /// The mail and subscriber a feedback report is about, from what in it our key signed:
    /// the VERP envelope sender (as `Original-Mail-From` or the original's `Return-Path`),
    /// else the unsubscribe token in the original's `List-Unsubscribe`.
    fn reported_mail(&self, report: &FeedbackReport) -> Option<(HistoryRef, SubscriberId)> {
        let c = &self.inner.config;
        let keys = &self.inner.keys;
        let by_verp = report
            .verp_candidates()
            .find_map(|address| keys.decode_verp(&c.verp_prefix, &c.bounce_domain, address));
        if let Some((origin, subscriber)) = by_verp {
            return Some((about_of(origin), SubscriberId(subscriber)));
        }
        report.unsubscribe_urls.iter().find_map(|url| {
            let (_, token) = url.rsplit_once("/unsubscribe/")?;
            let token = token.split(['?', '#', '/']).next()?;
            match keys.verify(token)? {
                Token::Unsubscribe {
                    origin: Some(origin),
                    subscriber,
                } => Some((about_of(origin), SubscriberId(subscriber))),
                _ => None,
            }
        })
    }

    /// A feedback-loop report: a complaint about a mail of ours is recorded against it and
    /// suppresses the reader's address everywhere. Only what our key signed names the
    /// reader: a report naming an address in clear (`Original-Rcpt-To`) alone could be
    /// forged by anyone to stop someone's mail, so it is logged and nothing more.
    /// `delivered_to` is the mail the VERP address the report came to stands for, if it
    /// came to one.
    fn take_feedback(
        &self,
        report: &FeedbackReport,
        delivered_to: Option<(HistoryRef, SubscriberId)>,
        now: i64,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let named = self.reported_mail(report).or(delivered_to);
        let agent = report.user_agent.as_deref().unwrap_or("unnamed");
        if !report.is_complaint() {
            return store.log_action(
                named.map(|(about, _)| about),
                &format!(
                    "feedback report of type {} from {agent}: not a complaint, nothing done",
                    report.feedback_type
                ),
                now,
            );
        }
        let Some((about, subscriber)) = named else {
            return store.log_action(
                None,
                &format!(
                    "feedback report ({}) from {agent} names no mail of ours (rcpt {}): nothing suppressed",
                    report.feedback_type,
                    report.original_rcpt_to.join(", ")
                ),
                now,
            );
        };
        tracing::info!(
            subscriber = subscriber.0,
            feedback_type = %report.feedback_type,
            "newsletter: complaint"
        );
        let detail = format!("{} via {agent}", report.feedback_type);
        store
            .complaint(about, subscriber, Some(&detail), now)
            .map(drop)
    }
}

impl smtp_server::BounceSink for Engine {
    fn claims(&self, recipient: &str) -> bool {
        let c = &self.inner.config;
        self.inner
            .keys
            .decode_verp(&c.verp_prefix, &c.bounce_domain, recipient)
            .is_some()
            || self.is_feedback_address(recipient)
    }

    fn accept(&self, recipient: &str, message: &[u8]) -> Result<(), String> {
        let c = &self.inner.config;
        let now = self.now();
        let store = &self.inner.store;
        let verp = self
            .inner
            .keys
            .decode_verp(&c.verp_prefix, &c.bounce_domain, recipient)
            .map(|(origin, subscriber)| (about_of(origin), SubscriberId(subscriber)));
        // A feedback report first: it carries the reported mail, whose text a bounce
        // parser could take for a bounce's.
        let result = if let Some(report) = parse_feedback_report(message) {
            self.take_feedback(&report, verp, now)
        } else if let Some((about, subscriber)) = verp {
            self.take_bounce(about, subscriber, message, now)
        } else if self.is_feedback_address(recipient) {
            store.log_action(
                None,
                "mail at the feedback-loop address that is not a feedback report",
                now,
            )
        } else {
            return Err("not a bounce address of ours".into());
        };
        match result {
            Ok(()) => Ok(()),
            // The subscriber or campaign was removed since: nothing left to mark.
            Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Engine {
    fn take_bounce(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        message: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        match parse_bounce(message) {
            Some(bounce) => {
                let detail = format!("{} {}", bounce.status, bounce.diagnostic);
                tracing::info!(
                    subscriber = subscriber.0,
                    hard = bounce.hard,
                    status = %bounce.status,
                    "newsletter: bounce"
                );
                store
                    .bounce(
                        about,
                        subscriber,
                        bounce.hard,
                        Some(&detail),
                        self.inner.config.bounce_policy(),
                        now,
                    )
                    .map(drop)
            }
            // An autoreply or something unreadable: noted, not counted.
            None => store.log_action(
                Some(about),
                &format!(
                    "unreadable mail at the bounce address of subscriber {}",
                    subscriber.0
                ),
                now,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_overall_and_per_domain() {
        let now = Instant::now();
        let mut p = Pacer::new(10, 2);
        let taken = (0..20)
            .filter(|i| p.take(format!("d{}", i % 3), now))
            .count();
        // Three domains, two each: six, under the overall ten.
        assert_eq!(taken, 6);
        let later = now + Duration::from_secs(1);
        let mut p = Pacer::new(5, 0);
        assert_eq!((0..20).filter(|_| p.take("x".into(), now)).count(), 5);
        assert!(p.wait() > Duration::ZERO);
        assert_eq!((0..20).filter(|_| p.take("x".into(), later)).count(), 5);
        let mut unlimited = Pacer::new(0, 0);
        assert_eq!(
            (0..1000)
                .filter(|_| unlimited.take("x".into(), now))
                .count(),
            1000
        );
    }

    #[test]
    fn networks_contain_their_addresses() {
        let check =
            |net: &str, ip: &str| Network::parse(net).unwrap().contains(ip.parse().unwrap());
        assert!(check("192.0.2.0/24", "192.0.2.77"));
        assert!(!check("192.0.2.0/24", "192.0.3.1"));
        assert!(check("10.1.2.3", "10.1.2.3"));
        assert!(!check("10.1.2.3", "10.1.2.4"));
        assert!(check("0.0.0.0/0", "203.0.113.9"));
        assert!(check("2001:db8::/32", "2001:db8:ffff::1"));
        assert!(!check("2001:db8::/32", "2001:db9::1"));
        assert!(check("::1", "::1"));
        // An IPv4 caller seen through an IPv6 socket is still itself.
        assert!(check("127.0.0.0/8", "::ffff:127.0.0.1"));
        assert!(!check("::/0", "127.0.0.1"));
        for bad in ["", "example.org", "10.0.0.0/33", "::/129", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_and_about_agree() {
        for about in [
            HistoryRef::Campaign(CampaignId(3)),
            HistoryRef::Step(StepId(4)),
        ] {
            assert_eq!(about_of(origin_of(about)), about);
        }
    }
}
