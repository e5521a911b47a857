//! `Newsletters` for SQLite: lists, subscribers, campaigns, sequences and steps.

use std::collections::BTreeMap;

use super::SqliteStore;
use crate::*;

fn unfinished<T>() -> Result<T> {
    Err(StoreError::Invalid("not implemented yet".into()))
}

impl Newsletters for SqliteStore {
    fn list_add(
        &self,
        _name: &str,
        _from_address: &str,
        _from_name: &str,
        _double_opt_in: bool,
        _now: i64,
    ) -> Result<ListId> {
        unfinished()
    }

    fn lists(&self) -> Result<Vec<List>> {
        unfinished()
    }

    fn list(&self, _name: &str) -> Result<List> {
        unfinished()
    }

    fn list_by_id(&self, _id: ListId) -> Result<List> {
        unfinished()
    }

    fn list_remove(&self, _name: &str) -> Result<()> {
        unfinished()
    }

    fn subscriber_add(
        &self,
        _list: ListId,
        _subscriber: NewSubscriber,
        _now: i64,
    ) -> Result<SubscriberId> {
        unfinished()
    }

    fn subscriber_import(
        &self,
        _list: ListId,
        _rows: Vec<NewSubscriber>,
        _now: i64,
    ) -> Result<ImportCounts> {
        unfinished()
    }

    fn subscribers(
        &self,
        _list: ListId,
        _after: Option<SubscriberId>,
        _limit: usize,
    ) -> Result<Vec<Subscriber>> {
        unfinished()
    }

    fn subscriber(&self, _id: SubscriberId) -> Result<Subscriber> {
        unfinished()
    }

    fn subscriber_by_email(&self, _list: ListId, _email: &str) -> Result<Subscriber> {
        unfinished()
    }

    fn subscriber_set_status(
        &self,
        _id: SubscriberId,
        _status: SubscriberStatus,
        _from: Option<HistoryRef>,
        _now: i64,
    ) -> Result<()> {
        unfinished()
    }

    fn subscriber_remove(&self, _id: SubscriberId) -> Result<()> {
        unfinished()
    }

    fn subscriber_counts(&self, _list: ListId) -> Result<BTreeMap<&'static str, u64>> {
        unfinished()
    }

    fn campaign_add(&self, _campaign: NewCampaign) -> Result<CampaignId> {
        unfinished()
    }

    fn campaigns(&self) -> Result<Vec<Campaign>> {
        unfinished()
    }

    fn campaign(&self, _id: CampaignId) -> Result<Campaign> {
        unfinished()
    }

    fn campaign_set_state(&self, _id: CampaignId, _state: CampaignState) -> Result<()> {
        unfinished()
    }

    fn campaign_pending(
        &self,
        _id: CampaignId,
        _after: Option<SubscriberId>,
        _limit: usize,
    ) -> Result<Vec<Subscriber>> {
        unfinished()
    }

    fn enqueue_mails(&self, _about: HistoryRef, _mails: &[Mail], _now: i64) -> Result<usize> {
        unfinished()
    }

    fn sequence_add(
        &self,
        _list: ListId,
        _name: &str,
        _time_zone: &str,
        _join_existing: bool,
        _now: i64,
    ) -> Result<SequenceId> {
        unfinished()
    }

    fn step_add(&self, _sequence: SequenceId, _step: NewStep) -> Result<StepId> {
        unfinished()
    }

    fn step(&self, _id: StepId) -> Result<Step> {
        unfinished()
    }

    fn sequences(&self) -> Result<Vec<(Sequence, Vec<Step>)>> {
        unfinished()
    }

    fn sequence_remove(&self, _id: SequenceId) -> Result<()> {
        unfinished()
    }

    fn steps_due(&self, _now: i64, _limit: usize) -> Result<Vec<(Step, Subscriber)>> {
        unfinished()
    }

    fn record(
        &self,
        _about: HistoryRef,
        _subscriber: SubscriberId,
        _outcome: Outcome,
        _detail: Option<&str>,
        _now: i64,
    ) -> Result<()> {
        unfinished()
    }

    fn bounce(
        &self,
        _about: HistoryRef,
        _subscriber: SubscriberId,
        _hard: bool,
        _detail: Option<&str>,
        _hard_limit: u32,
        _now: i64,
    ) -> Result<Subscriber> {
        unfinished()
    }

    fn log_action(&self, _about: Option<HistoryRef>, _detail: &str, _now: i64) -> Result<()> {
        unfinished()
    }

    fn received_by(&self, _about: HistoryRef, _outcome: Outcome) -> Result<Vec<SubscriberId>> {
        unfinished()
    }

    fn count(&self, _about: HistoryRef, _outcome: Outcome) -> Result<u64> {
        unfinished()
    }

    fn history_of(&self, _subscriber: SubscriberId) -> Result<Vec<(HistoryRef, Outcome)>> {
        unfinished()
    }

    fn daily_totals(&self, _since_day: i64) -> Result<Vec<DailyTotal>> {
        unfinished()
    }

    fn events(
        &self,
        _about: Option<HistoryRef>,
        _since: i64,
        _limit: usize,
    ) -> Result<Vec<HistoryEvent>> {
        unfinished()
    }

    fn prune_events(&self, _before: i64, _batch: usize) -> Result<u64> {
        unfinished()
    }

    fn history_bytes(&self) -> Result<u64> {
        unfinished()
    }

    fn links(&self, _about: HistoryRef) -> Result<Vec<String>> {
        unfinished()
    }

    fn set_links(&self, _about: HistoryRef, _urls: &[String]) -> Result<()> {
        unfinished()
    }
}
