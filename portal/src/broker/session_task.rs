//! The background task that drives one of the portal's own MQTT sessions (admin or link): the loop they
//! share ([`drive`]: subscribe on every connect, hand messages over, reconnect with backoff), stopped
//! gracefully with [`SessionTask::stop`], aborted if dropped.

use std::future::Future;
use std::time::Duration;

use outpost_cloud_link::backoff::Backoff;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish,
    QoS, SubscribeReasonCode,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the broker turned a session away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The CONNACK refused the connection.
    Connection(ConnectReturnCode),
    /// The SUBACK refused the session's filter.
    Subscription,
}

/// What one of the portal's sessions does at each turn of [`drive`].
pub(crate) trait Session: Send {
    /// The session's name in logs.
    const NAME: &'static str;
    /// The filter it subscribes to on every connect.
    const FILTER: &'static str;
    /// The broker granted the subscription after a (re)connect.
    fn subscribed(&mut self);
    /// The broker turned the session away.
    fn refused(&mut self, why: Refusal);
    /// A message arrived. Returns `false` when `stop` turned `true` while it was being handed over.
    fn message(
        &mut self,
        client: &AsyncClient,
        publish: Publish,
        stop: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = bool> + Send;
    /// The connection is gone; [`drive`] reconnects after a backoff unless stopped.
    fn lost(&mut self);
}

/// Runs `session` until `stop` turns `true`: subscribes to [`Session::FILTER`] on every ConnAck, hands
/// messages over, and reconnects with a short jittered backoff (the supervisor restarts the broker quickly).
pub(crate) async fn drive<S: Session>(
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut session: S,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut connected = false;
    let mut awaiting_suback = false;
    let mut outage_logged = false;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = stopped(&mut stop) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                backoff.reset();
                if outage_logged {
                    tracing::info!(
                        session = S::NAME,
                        session_present = ack.session_present,
                        "session to the broker is back"
                    );
                    outage_logged = false;
                }
                awaiting_suback = true;
                if let Err(e) = client.try_subscribe(S::FILTER, QoS::AtLeastOnce) {
                    tracing::error!(session = S::NAME, filter = S::FILTER, error = %e, "cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) if awaiting_suback => {
                awaiting_suback = false;
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                if granted {
                    session.subscribed();
                } else {
                    tracing::error!(
                        session = S::NAME,
                        "the broker does not let the portal subscribe to {}; check the outpost-portal role in \
                         dynamic-security.json",
                        S::FILTER
                    );
                    session.refused(Refusal::Subscription);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if !session.message(&client, p, &mut stop).await {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected = false;
                awaiting_suback = false;
                session.lost();
                if let ConnectionError::ConnectionRefused(code) = &e {
                    session.refused(Refusal::Connection(*code));
                }
                if !outage_logged {
                    tracing::warn!(session = S::NAME, error = %e, "session to the broker lost; reconnecting");
                    outage_logged = true;
                } else {
                    tracing::debug!(session = S::NAME, error = %e, "session still down");
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut stop) => break,
                }
            }
        }
    }
    session.lost();
    disconnect(&client, &mut eventloop, connected).await;
}

pub(crate) struct SessionTask {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl SessionTask {
    /// Spawns `body`, which must return soon after the receiver it is given turns `true`.
    pub(crate) fn spawn<F, Fut>(body: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(body(rx));
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Asks the task to disconnect cleanly and waits for it (a few seconds at most).
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut handle) = self.handle.take() {
            if tokio::time::timeout(Duration::from_secs(3), &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
    }
}

impl Drop for SessionTask {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Resolves when `stop` turns `true` (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Sends DISCONNECT and lets the event loop flush it (bounded), when the session is connected.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop, connected: bool) {
    if !connected {
        return;
    }
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
