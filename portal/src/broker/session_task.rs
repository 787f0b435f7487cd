//! The background task that drives one of the portal's own MQTT sessions (admin or link): stopped
//! gracefully with [`SessionTask::stop`], aborted if dropped.

use std::future::Future;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
pub(crate) async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop, connected: bool) {
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
