//! Leader election through the Lease `dbward-operator-leader`: every replica serves the webhooks and
//! the control API, one at a time runs the reconcilers.
//!
//! The holder renews every [`RENEW_EVERY`]; a Lease not renewed for its duration may be taken over.
//! A holder that cannot renew for [`LEASE_DURATION`] minus a margin stops leading before anyone else
//! can take over, so two replicas never reconcile at once (given clocks that agree within the margin).
//! On shutdown the holder gives the Lease up so a standby takes over at once.

use std::{
    future::Future,
    time::{Duration, SystemTime},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The Lease's name.
pub const LEASE_NAME: &str = "dbward-operator-leader";
/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and a follower tries.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A holder stops leading this long before its Lease could be taken over.
const MARGIN: Duration = Duration::from_secs(3);

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is none: create it, holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's, not renewed in time, or released: take it over.
    TakeOver,
    /// Someone else holds it.
    Follow { holder: String },
}

fn time(t: &MicroTime) -> SystemTime {
    SystemTime::from(t.0)
}

fn micro(t: SystemTime) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::try_from(t).ok().map(MicroTime)
}

/// Decides from the Lease, this replica's identity and the time.
pub fn step(lease: Option<&Lease>, me: &str, now: SystemTime) -> Step {
    let Some(lease) = lease else { return Step::Create };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let renewed = spec
        .renew_time
        .as_ref()
        .map(time)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if renewed + duration < now {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

fn held(me: &str, prev: Option<&LeaseSpec>, now: SystemTime, transition: bool) -> LeaseSpec {
    let prev = prev.cloned().unwrap_or_default();
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if transition {
            micro(now)
        } else {
            prev.acquire_time.or_else(|| micro(now))
        },
        renew_time: micro(now),
        lease_transitions: Some(prev.lease_transitions.unwrap_or(0) + i32::from(transition)),
        ..LeaseSpec::default()
    }
}

/// One attempt: true when this replica holds the Lease afterwards.
async fn attempt(api: &Api<Lease>, me: &str) -> Result<bool, kube::Error> {
    let current = api.get_opt(LEASE_NAME).await?;
    let now = SystemTime::now();
    let (spec, transition) = match step(current.as_ref(), me, now) {
        Step::Follow { .. } => return Ok(false),
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(held(me, None, now, true)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
        Step::Renew => (current.as_ref().and_then(|l| l.spec.as_ref()), false),
        Step::TakeOver => (current.as_ref().and_then(|l| l.spec.as_ref()), true),
    };
    let Some(mut lease) = current.clone() else {
        return Ok(false);
    };
    lease.spec = Some(held(me, spec, now, transition));
    // The replace carries the resourceVersion read: of two replicas racing, one gets a conflict.
    match api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (when still ours) so a standby takes over without waiting for it to lapse.
async fn release(api: &Api<Lease>, me: &str) {
    let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await else {
        return;
    };
    if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(me) {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    match api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
        Ok(_) => info!("leadership released"),
        Err(e) => warn!(error = %e, "could not release the leader Lease; it lapses in {LEASE_DURATION:?}"),
    }
}

/// Runs `lead` while this replica holds the Lease, until `shutdown`. `lead` gets a token that is
/// cancelled when leadership is lost; it must return soon after.
pub async fn run<F, Fut>(client: Client, namespace: &str, me: &str, shutdown: CancellationToken, lead: F)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let mut last_renewed = SystemTime::UNIX_EPOCH;
    loop {
        let ok = match attempt(&api, me).await {
            Ok(ok) => ok,
            Err(e) => {
                warn!(error = %e, "leader election: the Lease cannot be read or written");
                false
            }
        };
        let now = SystemTime::now();
        if ok {
            last_renewed = now;
        }
        let still_valid = now
            .duration_since(last_renewed)
            .is_ok_and(|d| d + MARGIN < LEASE_DURATION);
        let should_lead = ok || (leading.is_some() && still_valid);
        match (leading.is_some(), should_lead) {
            (false, true) => {
                info!(identity = %me, "became the leader: running the reconcilers");
                let token = shutdown.child_token();
                let task = tokio::spawn(lead(token.clone()));
                leading = Some((token, task));
            }
            (true, false) => {
                warn!("lost leadership: stopping the reconcilers");
                if let Some((token, task)) = leading.take() {
                    token.cancel();
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(RENEW_EVERY) => {}
            () = shutdown.cancelled() => break,
        }
    }
    if let Some((token, task)) = leading.take() {
        token.cancel();
        let _ = task.await;
        release(&api, me).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: SystemTime) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                renew_time: micro(renewed),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn steps() {
        let now = SystemTime::now();
        assert_eq!(step(None, "a", now), Step::Create);
        assert_eq!(step(Some(&lease(Some("a"), now)), "a", now), Step::Renew);
        assert_eq!(
            step(Some(&lease(Some("b"), now)), "a", now),
            Step::Follow { holder: "b".into() }
        );
        let old = now - Duration::from_secs(16);
        assert_eq!(step(Some(&lease(Some("b"), old)), "a", now), Step::TakeOver);
        assert_eq!(step(Some(&lease(None, now)), "a", now), Step::TakeOver);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let t0 = SystemTime::now();
        let first = held("a", None, t0, true);
        assert_eq!(first.lease_transitions, Some(1));
        let renewed = held("a", Some(&first), t0 + Duration::from_secs(5), false);
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_ne!(renewed.renew_time, first.renew_time);
    }
}
