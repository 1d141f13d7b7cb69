//! Query cancellation. Each session hands its client a cancel key of the sidecar's own making; a
//! CancelRequest carrying it is sent on to the upstream backend with the upstream's real key, which the
//! client never sees.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};
use tracing::{debug, warn};

use super::{messages::startup::encode_cancel, upstream::UpstreamTarget};

/// Where and how to cancel a running upstream query.
#[derive(Clone)]
pub struct CancelTarget {
    pub upstream: Arc<UpstreamTarget>,
    pub pid: i32,
    pub secret: i32,
    /// Told of the cancel too (a statement the sidecar holds has not reached the server).
    pub signals: Option<super::signals::SessionSignals>,
}

/// The cancel keys of all live sessions of this process.
#[derive(Default)]
pub struct CancelRegistry {
    keys: Mutex<HashMap<(i32, i32), CancelTarget>>,
}

/// Removes a session's key when the session ends.
pub struct CancelKey {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: i32,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.lock().remove(&(self.pid, self.secret));
    }
}

fn random_i32() -> i32 {
    let mut b = [0u8; 4];
    // The system RNG does not fail on Linux; a zero key would still be unique-checked below.
    let _ = aws_lc_rs::rand::fill(&mut b);
    i32::from_be_bytes(b)
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), CancelTarget>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session's upstream key and returns the key to give the client.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> CancelKey {
        let mut keys = self.lock();
        loop {
            // A positive process id, as clients expect; the secret is fully random.
            let pid = random_i32() & 0x7fff_ffff;
            let secret = random_i32();
            if pid != 0 && !keys.contains_key(&(pid, secret)) {
                keys.insert((pid, secret), target);
                return CancelKey {
                    registry: self.clone(),
                    pid,
                    secret,
                };
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Handles a client's CancelRequest. Unknown keys are ignored, as the server does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let Some(target) = self.lock().get(&(pid, secret)).cloned() else {
            debug!("cancel request with an unknown key ignored");
            return;
        };
        if let Some(s) = &target.signals {
            s.cancel();
        }
        match timeout(Duration::from_secs(10), send_cancel(&target)).await {
            Ok(Ok(())) => debug!(upstream_pid = target.pid, "cancel request forwarded"),
            Ok(Err(e)) => warn!(error = %e, "could not forward a cancel request upstream"),
            Err(_) => warn!("forwarding a cancel request upstream timed out"),
        }
    }
}

async fn send_cancel(target: &CancelTarget) -> std::io::Result<()> {
    let mut packet = BytesMut::new();
    encode_cancel(&mut packet, target.pid, target.secret);
    let upstream = &target.upstream;
    let tcp = TcpStream::connect((upstream.host.as_str(), upstream.port)).await?;
    let mut stream = super::upstream::negotiate_tls(tcp, upstream)
        .await
        .map_err(std::io::Error::other)?;
    stream.write_all(&packet).await?;
    stream.flush().await?;
    // The server closes the connection without answering.
    stream.shutdown().await.ok();
    Ok(())
}
