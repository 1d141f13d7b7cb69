//! A person's decision — what `dbward-sidecar approve|deny NAME` does — and the rule that whoever sent a
//! statement does not approve it.
//!
//! Locally the requester is the request's `spec.requester`: the caller's subject (a token's `sub`, or
//! the sidecar's service account for ambient callers), its pod's service account, and the Unix uid of
//! the local process that connected. The approver is the process writing the decision: the name it
//! records as `decidedBy` (`local:$USER`) and the Unix uids it runs as, read from the kernel
//! (`/proc/self/status`), which — unlike `$USER` — the requester cannot choose.
//!
//! Approving is refused, as the operator's webhook refuses it in a cluster, when the approver is the
//! requester: when one of its uids (real, effective, saved, file system) is `spec.requester.uid` —
//! unless that uid owns the approvals directory: a requester that can write the directory can approve
//! by editing the file, so refusing the command would protect nothing, and refusing it would stop a
//! person running the agent as themselves (the demo) from approving at all — or its
//! name (`local:carol`, or `carol`) is the requester's subject or its service account's user name
//! (`system:serviceaccount:NS:NAME`). When the uids cannot be read and the request names a uid, approving
//! is refused too: the store cannot tell. Denying one's own request is allowed: withdrawing a statement
//! one sent harms nobody.
//!
//! Whoever can write the directory can still set `status.phase` by editing the file; this check stops
//! the command, not a text editor (the directory's permissions decide who can do that).

use std::time::SystemTime;

use dbward_crds::{ApprovalPhase, ApprovalRequestStatus, Requester, format_rfc3339, parse_rfc3339};
use tracing::debug;

use super::{DirStore, Entry, check_name};
use crate::approval::ApprovalError;

/// Who decides a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    /// Recorded as `status.decidedBy`, e.g. `local:carol`.
    name: String,
    /// The Unix uids the deciding process runs as; None when they cannot be read.
    uids: Option<Vec<u32>>,
}

impl Decider {
    /// `name` (recorded as `decidedBy`), deciding from this process, whose uids are read from
    /// `/proc/self/status`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uids: process_uids(),
        }
    }

    /// `name` with the given uids (None: unknown), for tests.
    #[cfg(test)]
    pub(crate) fn with_uids(name: &str, uids: Option<Vec<u32>>) -> Self {
        Self {
            name: name.to_owned(),
            uids,
        }
    }

    /// The name recorded as `decidedBy`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Unix uids the deciding process runs as, when known.
    pub fn uids(&self) -> Option<&[u32]> {
        self.uids.as_deref()
    }

    /// Why this decider is `requester` — a phrase for the refusal — or None when it is someone else.
    /// Err when that cannot be told (the request names a uid, the decider's are unknown).
    fn is_requester(&self, requester: &Requester, dir_owner: Option<u32>) -> Result<Option<String>, ()> {
        if let Some(uid) = requester.uid.filter(|&u| Some(u) != dir_owner) {
            match &self.uids {
                Some(uids) if uids.contains(&uid) => {
                    return Ok(Some(format!("by Unix uid {uid}, which runs this command")));
                }
                Some(_) => {}
                None => return Err(()),
            }
        }
        // `local:carol` and `carol` are one user.
        let bare = |n: &str| n.strip_prefix("local:").unwrap_or(n).to_owned();
        let me = bare(&self.name);
        if !me.is_empty() && me == bare(&requester.subject) {
            return Ok(Some(format!(
                "by {:?}, the name this command decides as",
                requester.subject
            )));
        }
        let service_account = requester
            .service_account
            .as_deref()
            .and_then(|sa| sa.split_once('/'))
            .map(|(ns, sa)| format!("system:serviceaccount:{ns}:{sa}"));
        if let Some(user) = service_account
            && user == self.name
        {
            return Ok(Some(format!(
                "from service account {user:?}, the name this command decides as"
            )));
        }
        Ok(None)
    }
}

/// Why [`DirStore::decide`] refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The store refused (unknown request, already decided, past its expiry, unreadable file…).
    #[error(transparent)]
    Store(#[from] ApprovalError),
    /// The approver is the requester.
    #[error(
        "approval request {name:?} was sent {why}: the requester cannot approve its own statement; someone \
         else must (the requester may still deny it)"
    )]
    SelfApproval {
        /// The request.
        name: String,
        /// How the approver was recognized as the requester.
        why: String,
    },
    /// The request names the requester's uid, and this process's uids cannot be read.
    #[error(
        "cannot approve approval request {name:?}: it was sent by Unix uid {uid}, and which uids run this \
         command cannot be read (/proc/self/status), so approving it could be the requester's own"
    )]
    UnknownDecider {
        /// The request.
        name: String,
        /// The requester's uid.
        uid: u32,
    },
}

impl DirStore {
    /// A person's decision: sets request `name` to `phase` (Approved or Denied) with `decidedBy` =
    /// `decided_by`, `decidedAt` = now and `reason`, and returns the updated request. Refuses a request
    /// that is unknown, already decided, or Pending past its expiresAt, and approving one this process's
    /// user sent (see the module documentation).
    pub fn decide(
        &self,
        name: &str,
        phase: ApprovalPhase,
        decided_by: &str,
        reason: Option<&str>,
    ) -> Result<Entry, DecideError> {
        self.decide_as(name, phase, &Decider::new(decided_by), reason)
    }

    /// [`Self::decide`] by `decider`.
    pub(crate) fn decide_as(
        &self,
        name: &str,
        phase: ApprovalPhase,
        decider: &Decider,
        reason: Option<&str>,
    ) -> Result<Entry, DecideError> {
        if !matches!(phase, ApprovalPhase::Approved | ApprovalPhase::Denied) {
            return Err(ApprovalError::InvalidRequest(format!(
                "a person approves or denies; {phase} is not a decision"
            ))
            .into());
        }
        check_name(name)?;
        let now = SystemTime::now();
        let dir_owner = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(self.dir()).ok().map(|m| m.uid())
        };
        let updated = self.inner.update(name, |entry| {
            if entry.status.phase.is_final() {
                return Err(ApprovalError::AlreadyDecided {
                    name: entry.name.clone(),
                    phase: entry.status.phase,
                    decided_by: entry.status.decided_by.clone(),
                });
            }
            if entry.expires_at <= now {
                return Err(ApprovalError::PastExpiry {
                    name: entry.name.clone(),
                    expires_at: entry.spec.expires_at.clone(),
                });
            }
            if phase == ApprovalPhase::Approved {
                let refusal = match decider.is_requester(&entry.spec.requester, dir_owner) {
                    Ok(None) => None,
                    Ok(Some(why)) => Some(DecideError::SelfApproval {
                        name: entry.name.clone(),
                        why,
                    }),
                    Err(()) => Some(DecideError::UnknownDecider {
                        name: entry.name.clone(),
                        uid: entry.spec.requester.uid.unwrap_or_default(),
                    }),
                };
                if let Some(refusal) = refusal {
                    return Ok((false, Err(refusal)));
                }
            }
            entry.status = ApprovalRequestStatus {
                phase,
                decided_by: Some(decider.name.clone()),
                decided_at: Some(format_rfc3339(now)),
                reason: reason.map(str::to_owned),
            };
            entry.decided_at = parse_rfc3339(&format_rfc3339(now)).ok();
            Ok((true, Ok(entry.clone())))
        })?;
        match updated {
            Some(Ok(entry)) => {
                debug!(request = %name, %phase, by = %decider.name, "approval request decided");
                Ok(entry)
            }
            Some(Err(refusal)) => Err(refusal),
            None => Err(self.inner.not_found(name, now).into()),
        }
    }
}

/// The uids this process runs as — real, effective, saved and file system — from `/proc/self/status`;
/// None when it cannot be read.
pub fn process_uids() -> Option<Vec<u32>> {
    parse_uids(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The uids on the `Uid:` line of a `/proc/PID/status` text.
fn parse_uids(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut uids: Vec<u32> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    uids.sort_unstable();
    uids.dedup();
    (!uids.is_empty()).then_some(uids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(subject: &str, sa: Option<&str>, uid: Option<u32>) -> Requester {
        Requester {
            service_account: sa.map(str::to_owned),
            pod: None,
            subject: subject.to_owned(),
            uid,
        }
    }

    #[test]
    fn the_requester_is_recognized_by_uid_subject_or_service_account() {
        let carol = Decider::with_uids("local:carol", Some(vec![1000]));
        let is = |r: &Requester| carol.is_requester(r, None);
        assert!(
            is(&requester("system:serviceaccount:ci:agent", None, Some(1000)))
                .unwrap()
                .unwrap()
                .contains("uid 1000")
        );
        assert_eq!(
            is(&requester(
                "system:serviceaccount:ci:agent",
                Some("ci/agent"),
                Some(1001)
            )),
            Ok(None)
        );
        assert_eq!(
            is(&requester("system:serviceaccount:ci:agent", None, None)),
            Ok(None)
        );
        for subject in ["carol", "local:carol"] {
            assert!(
                is(&requester(subject, None, Some(1001))).unwrap().is_some(),
                "{subject}"
            );
        }
        assert_eq!(is(&requester("carolyn", None, None)), Ok(None));
        let sa = Decider::with_uids("system:serviceaccount:ci:agent", Some(vec![0]));
        assert!(
            sa.is_requester(&requester("someone", Some("ci/agent"), None), None)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            sa.is_requester(&requester("someone", Some("ci/other"), None), None),
            Ok(None)
        );
        // Unknown uids: cannot tell when the request names a uid; can when it does not.
        let unknown = Decider::with_uids("local:carol", None);
        assert_eq!(
            unknown.is_requester(&requester("x", None, Some(1000)), None),
            Err(())
        );
        assert_eq!(unknown.is_requester(&requester("x", None, None), None), Ok(None));
        // A requester whose uid owns the directory could edit the file: the uid is not checked.
        assert_eq!(
            carol.is_requester(
                &requester("system:serviceaccount:ci:agent", None, Some(1000)),
                Some(1000)
            ),
            Ok(None)
        );
        assert_eq!(
            unknown.is_requester(&requester("x", None, Some(1000)), Some(1000)),
            Ok(None)
        );
        // An empty user name matches nothing.
        let empty = Decider::with_uids("local:", Some(vec![5]));
        assert_eq!(empty.is_requester(&requester("", None, None), None), Ok(None));
        assert_eq!(
            empty.is_requester(&requester("local:", None, None), None),
            Ok(None)
        );
    }

    #[test]
    fn uids_come_from_the_status_line() {
        assert_eq!(
            parse_uids("Name:\tx\nUid:\t1000\t0\t1000\t1000\nGid:\t5\t5\t5\t5\n"),
            Some(vec![0, 1000])
        );
        assert_eq!(parse_uids("Name:\tx\n"), None);
        assert_eq!(parse_uids("Uid:\tx\n"), None);
        assert!(process_uids().is_some_and(|u| !u.is_empty()));
    }
}
