//! The daemon's account of notifications: every outcome counted in
//! `shiftgate_notifications_total`, and a failed delivery a Warning Event on its
//! policy (never with the URL or a header value).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;

use super::notify::NotifyReport;
use crate::metrics::PolicyRef;
use crate::observe::events::{EventPublisher, RolloutEvent};
use crate::observe::metrics::{Metrics, NotifyChannel, NotifyResult};
use crate::policy::API_VERSION;

pub struct DaemonNotifyReport {
    metrics: Arc<Metrics>,
    events: EventPublisher,
}

impl DaemonNotifyReport {
    pub fn new(metrics: Arc<Metrics>, events: EventPublisher) -> Self {
        DaemonNotifyReport { metrics, events }
    }
}

#[async_trait]
impl NotifyReport for DaemonNotifyReport {
    fn counted(&self, channel: NotifyChannel, result: NotifyResult) {
        self.metrics.notification(channel, result);
    }

    async fn failed(&self, policy: &PolicyRef, message: &str) {
        tracing::warn!(namespace = %policy.namespace, name = %policy.name, detail = %message, "notification failed");
        let regarding = ObjectReference {
            api_version: Some(API_VERSION.to_owned()),
            kind: Some("RolloutPolicy".to_owned()),
            namespace: Some(policy.namespace.clone()),
            name: Some(policy.name.clone()),
            ..ObjectReference::default()
        };
        let event = RolloutEvent::NotificationFailed {
            message: message.to_owned(),
        };
        self.events.publish(&regarding, &event, None).await;
    }
}
