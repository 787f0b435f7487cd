//! The daemon's local control socket, `<state>/control.sock` (mode 0600 in the 0700 state directory):
//! `outpost-agent devices` asks a running daemon for its inventory here, because the database is locked
//! while the daemon runs. One request line (`devices`), one JSON answer ([`DevicesAnswer`]), then close.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_cloud_link::inventory::Device;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::discovery::engine::{InterfaceStatus, Shared};

/// The one request there is.
pub const DEVICES: &str = "devices";
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: the daemon's answer is not readable ({source}); is the daemon the same version as this command?")]
    Answer {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What the daemon answers to [`DEVICES`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevicesAnswer {
    pub devices: Vec<Device>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceStatus>,
}

/// Binds the socket at `path` (replacing a stale one) and answers requests until `shutdown`.
pub async fn serve(
    path: PathBuf,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControlError> {
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            // The requests are single words: a few bytes are enough.
            let mut reader = AsyncBufReader::new(read.take(64));
            let got = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
            if !matches!(got, Ok(Ok(_))) {
                return;
            }
            match line.trim() {
                DEVICES => {
                    if let Err(e) = write_devices(&mut write, &shared).await {
                        debug!(error = %e, "control socket: the client went away");
                    }
                }
                other => {
                    debug!(request = other, "control socket: unknown request");
                    let _ = write.write_all(br#"{"error":"unknown request"}"#).await;
                }
            }
            let _ = write.shutdown().await;
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Writes a [`DevicesAnswer`] a hundred devices at a time: a big inventory is neither copied whole nor
/// held as one JSON buffer.
async fn write_devices(
    write: &mut (impl AsyncWriteExt + Unpin),
    shared: &Shared,
) -> std::io::Result<()> {
    let interfaces = shared.interfaces();
    let mut buf = b"{\"interfaces\":".to_vec();
    buf.extend(serde_json::to_vec(&interfaces).unwrap_or_else(|_| b"[]".to_vec()));
    buf.extend_from_slice(b",\"devices\":[");
    let keys = shared.keys();
    let mut first = true;
    for chunk in keys.chunks(100) {
        for d in shared.devices_of(chunk) {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend(serde_json::to_vec(&d).unwrap_or_default());
        }
        write.write_all(&buf).await?;
        buf.clear();
    }
    buf.extend_from_slice(b"]}");
    write.write_all(&buf).await
}

/// Asks the daemon listening at `path` for its devices. `Ok(None)` when no daemon listens there.
pub fn query_devices(path: &Path) -> Result<Option<DevicesAnswer>, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io(e)),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    stream
        .write_all(format!("{DEVICES}\n").as_bytes())
        .map_err(io)?;
    let mut body = Vec::new();
    BufReader::new(stream)
        .read_until(0, &mut body)
        .map_err(io)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| ControlError::Answer {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::inventory::{Inventory, Segment};
    use pnet_datalink::MacAddr;

    #[tokio::test]
    async fn the_daemon_answers_with_its_inventory_and_no_daemon_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        assert!(query_devices(&path).unwrap().is_none());

        let mut inv = Inventory::new();
        let seg = Segment {
            interface: "lan0".into(),
            vlan: Some(10),
        };
        inv.seen(
            &seg,
            MacAddr(0, 0x1a, 0x11, 0, 0, 1),
            Some([10, 0, 0, 5].into()),
            None,
            1,
        );
        let shared = Shared::new(inv);
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve(path.clone(), shared, shutdown));
        let answer = loop {
            let p = path.clone();
            if let Some(a) = tokio::task::spawn_blocking(move || query_devices(&p))
                .await
                .unwrap()
                .unwrap()
            {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(answer.devices.len(), 1);
        assert_eq!(answer.devices[0].vlan, Some(10));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
        assert!(!path.exists());
    }
}
