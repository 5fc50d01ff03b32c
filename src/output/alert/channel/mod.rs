//! Alert channels: where one composed message goes. Each channel renders the message
//! its own way (Block Kit, email, JSON) and sends it once; everything around a send
//! (routing, once-per-finding, batching, the hourly cap, the durable queue, parking a
//! channel that refuses) is the alerter's and the same for every channel.
//!
//! Adding a channel: a file here implementing [`Channel`] with its config type and a
//! `build` fn, and one line in [`build`].

pub mod email;
mod http;
pub mod mrkdwn;
pub mod msteams;
pub mod slack;
pub mod webhook;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::SendError;
use super::compose::Message;
use super::config::{MsTeamsWebhook, SlackWebhook};
use crate::mail::Mailer;
use crate::retry::Backoff;

pub use http::client;

/// One configured delivery: a Slack webhook, a Teams webhook, an email route, a JSON webhook.
pub trait Channel: Send + Sync {
    /// `slack`, `msteams`, `email`, `webhook`: the medium in the destination's store key
    /// (`channel:<name>:<kind>`), its label (`security (slack)`) and logs.
    fn kind(&self) -> &'static str;

    /// Sends one message (or the test message); `Ok` once the server accepted it.
    /// Retries within the call are the channel's (`http::post_json`, the mailer), with
    /// the shared backoff; an error never contains a secret (URL, header).
    fn send<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Result<(), SendError>>;
}

impl fmt::Debug for dyn Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.kind())
    }
}

/// What every channel is built with: one HTTP client, backoff and mailer for all.
#[derive(Debug)]
pub struct Shared {
    pub cluster: String,
    /// Findings listed per message (`alerts.max_findings_per_message`).
    pub max_findings: usize,
    pub http: reqwest::Client,
    pub backoff: Backoff,
    /// Present when an `smtp` section is configured and some destination has recipients.
    pub mailer: Option<Mailer>,
    /// `alerts.templates`: the user's overrides, compiled at config load.
    pub templates: super::config::AlertTemplates,
}

/// The delivery settings of one alert channel or team route.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// `channel:<name>` or `team:<name>`: the destination key is `<prefix>:<kind>`.
    pub key_prefix: &'a str,
    pub slack: &'a SlackWebhook,
    pub msteams: &'a MsTeamsWebhook,
    pub email: &'a [String],
    pub webhook: Option<&'a crate::output::alert::config::WebhookConfig>,
}

/// The factory: every channel `spec` configures, in a stable order (the order of
/// destinations, hence of messages).
pub fn build(spec: &Spec<'_>, shared: &Arc<Shared>) -> Vec<Arc<dyn Channel>> {
    let mut out: Vec<Arc<dyn Channel>> = Vec::new();
    out.extend(slack::build(spec, shared));
    out.extend(msteams::build(spec, shared));
    out.extend(email::build(spec, shared));
    out.extend(webhook::build(spec, shared));
    out
}

/// A channel that sends nothing, for unit tests of routing and queueing.
#[cfg(test)]
pub fn stub(kind: &'static str) -> Arc<dyn Channel> {
    struct Stub(&'static str);
    impl Channel for Stub {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn send<'a>(&'a self, _: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
            Box::pin(async { Ok(()) })
        }
    }
    Arc::new(Stub(kind))
}
