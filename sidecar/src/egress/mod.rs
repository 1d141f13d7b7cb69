//! The egress lock (`dbward-sidecar egress-lock`, run as the injected init container): iptables rules in
//! the pod's network namespace so that only the sidecar's uid can open a TCP connection to each
//! upstream database. The app, or anything it runs, reaches the database through the sidecar or not
//! at all.
//!
//! - [`target`]: the `--allow HOST:PORT` arguments, parsed, and names resolved to addresses.
//! - [`rules`]: the rules for each address family, as plain data, the `iptables-restore` input that
//!   installs them and the checks of what the kernel lists afterwards.
//! - [`iptables`]: running iptables (nft or legacy backend), the only part that touches the system.
//!
//! An upstream given as an address locks that address and port. One given as a name locks its port
//! toward every destination but loopback, because the name may resolve elsewhere after a failover;
//! its addresses are resolved anyway, to log them and to know whether IPv6 rules are a must.
//! Loopback is never locked (the app reaches the sidecar there), so a loopback upstream is refused.

pub mod iptables;
pub mod rules;
pub mod target;

use std::{io, net::IpAddr};

pub use self::{
    iptables::{Backend, BackendChoice, lock},
    rules::{CHAIN, Family, Plan, check_uid, dry_run_text},
    target::{Host, Resolved, Upstream, parse_allow, resolve, system_lookup},
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the lock could not be installed. Each one fails the init container, so the pod does not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--allow {arg:?}: {reason}")]
    BadAllow { arg: String, reason: String },
    #[error(
        "--allow {arg:?}: {addr} is inside the pod (loopback or unspecified), and the egress lock cannot \
         keep the pod's other processes from it; point the connection at the database's own address, or \
         turn egressLock off for it"
    )]
    LocalUpstream { arg: String, addr: IpAddr },
    #[error("--allow {arg:?}: the host name does not resolve; check the name and the pod's DNS")]
    Resolve {
        arg: String,
        #[source]
        source: io::Error,
    },
    #[error("--allow {arg:?}: the host name resolves to no address")]
    NoAddress { arg: String },
    #[error(
        "--uid 0 would let every root process through, the app's included; give the sidecar's own uid \
         (47301 unless the operator's --sidecar-uid says otherwise)"
    )]
    RootUid,
    #[error("nothing to lock: give at least one --allow HOST:PORT")]
    NothingToLock,
    #[error("could not run `{command}` (is iptables installed?)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "no iptables backend works here (the init container needs root with NET_ADMIN and NET_RAW): \
         nft: {nft}; legacy: {legacy}"
    )]
    NoBackend { nft: String, legacy: String },
    #[error("an upstream has an IPv6 address, but the pod's kernel has no IPv6 to lock it with")]
    NoIpv6,
    #[error("the {family} rules are not in place after applying them: {detail}")]
    Verify { family: Family, detail: String },
}
