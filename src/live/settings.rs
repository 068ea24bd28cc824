//! The change feed's settings: subscriptions per user, their queues, how long deletions are
//! remembered, how often feeds are checked against the database.

use std::time::Duration;

use clap::Args;

use crate::config::{parse_duration, parse_duration_or_zero, whole};

/// The change feed's settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Subscriptions and sync")]
pub struct LiveSettings {
    /// Live subscriptions one user may hold on this instance, over all their connections
    /// (TOO_MANY_SUBSCRIPTIONS above it).
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS_PER_USER", default_value = "100", value_parser = whole::<usize, 1, 100_000>)]
    pub ws_max_subscriptions_per_user: usize,
    /// Events queued per subscription; a subscriber that falls this far behind is
    /// disconnected (1013). Keep it above the largest bulk mutation (100 tasks).
    #[arg(long, env = "WS_EVENT_BUFFER", default_value = "256", value_parser = whole::<usize, 1, 1_000_000>)]
    pub ws_event_buffer: usize,
    /// How long deleted tasks' tombstones are kept: a client resuming from a version older
    /// than a purged tombstone is told to resync.
    #[arg(long, env = "SYNC_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub sync_retention: Duration,
    /// How often each instance compares its subscribed users' versions with the database
    /// (0: never).
    #[arg(long, env = "SYNC_POLL", default_value = "5s", value_parser = parse_duration_or_zero)]
    pub sync_poll: Duration,
}

/// The change feed's configuration (see the README section "Subscriptions and sync").
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `WS_MAX_SUBSCRIPTIONS_PER_USER`: live subscriptions one user may hold on this instance,
    /// over all their connections.
    pub per_user: usize,
    /// `WS_EVENT_BUFFER`: events queued for one subscription before its connection counts as
    /// too slow and is closed.
    pub event_buffer: usize,
    /// `SYNC_RETENTION`: how long deleted tasks' tombstones are kept; a client whose version
    /// is older than a purged tombstone is told to resync.
    pub sync_retention: Duration,
    /// `SYNC_POLL`: how often each instance compares its subscribed users' versions with the
    /// database, healing lost announcements and picking up writes made outside taskql; 0
    /// turns the check off.
    pub sync_poll: Duration,
}

impl From<LiveSettings> for LiveConfig {
    fn from(settings: LiveSettings) -> Self {
        Self {
            per_user: settings.ws_max_subscriptions_per_user,
            event_buffer: settings.ws_event_buffer,
            sync_retention: settings.sync_retention,
            sync_poll: settings.sync_poll,
        }
    }
}
