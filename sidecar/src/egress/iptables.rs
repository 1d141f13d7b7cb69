//! Running iptables: choosing the backend, installing each family's chain in one `iptables-restore`
//! transaction, and reading it back.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use tracing::{info, warn};

use super::{
    Error, Result,
    rules::{CHAIN, Family, FamilyRules, Need, Plan, check_chain, check_output, jump_fix, restore_input},
    target::Resolved,
};

/// How long to wait for the legacy backend's lock (the nf_tables backend takes none).
const WAIT: [&str; 2] = ["-w", "10"];

/// The kernel interface iptables drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// nf_tables (`iptables-nft`), Debian's default.
    Nft,
    /// The x_tables interface (`iptables-legacy`), for kernels or nodes without nf_tables.
    Legacy,
}

/// `--backend`: one of them, or the first that works here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// nft when `iptables-nft` can list the filter table, else legacy.
    #[default]
    Auto,
    Nft,
    Legacy,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// The command for a family: `iptables-nft`, `ip6tables-legacy-restore`...
    pub fn command(self, family: Family, suffix: &str) -> String {
        format!("{}-{}{suffix}", family.command(), self.name())
    }
}

/// Runs a command to its end; its stdout when it succeeds, otherwise an error with its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_error = |source| Error::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The input is a few hundred bytes: it fits the pipe, so writing before reading cannot block.
        pipe.write_all(input.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let status = output.status.to_string();
        return Err(Error::Tool {
            command,
            status,
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `iptables -S CHAIN` for a family.
fn list(backend: Backend, family: Family, chain: &str) -> Result<String> {
    run(
        &backend.command(family, ""),
        &[WAIT[0], WAIT[1], "-S", chain],
        None,
    )
}

/// The backend to use. `auto` tries nft first (listing the filter table needs nf_tables and
/// NET_ADMIN), then legacy.
pub fn choose_backend(choice: BackendChoice, family: Family) -> Result<Backend> {
    let backend = match choice {
        BackendChoice::Nft => Backend::Nft,
        BackendChoice::Legacy => Backend::Legacy,
        BackendChoice::Auto => match list(Backend::Nft, family, "OUTPUT") {
            Ok(_) => Backend::Nft,
            Err(nft) => match list(Backend::Legacy, family, "OUTPUT") {
                Ok(_) => {
                    info!(nft_error = %nft, "the nf_tables backend does not work here; using legacy");
                    Backend::Legacy
                }
                Err(legacy) => {
                    return Err(Error::NoBackend {
                        nft: nft.to_string(),
                        legacy: legacy.to_string(),
                    });
                }
            },
        },
    };
    info!(backend = backend.name(), ?choice, "iptables backend");
    Ok(backend)
}

/// Installs one family's chain: one `iptables-restore --noflush` transaction (the chain recreated with
/// exactly its rules, OUTPUT jumping to it once, first), then reads both chains back.
pub fn apply_family(backend: Backend, rules: &FamilyRules) -> Result<()> {
    let family = rules.family;
    let fix = jump_fix(&list(backend, family, "OUTPUT")?);
    let input = restore_input(rules, &fix);
    run(
        &backend.command(family, "-restore"),
        &[WAIT[0], WAIT[1], "--noflush"],
        Some(&input),
    )?;
    let verify = |detail| Error::Verify { family, detail };
    check_chain(&list(backend, family, CHAIN)?, &rules.rules).map_err(verify)?;
    check_output(&list(backend, family, "OUTPUT")?).map_err(verify)?;
    Ok(())
}

/// Whether the kernel of this network namespace has IPv6 at all.
fn kernel_has_ipv6() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

/// Installs the plan and logs what was locked. Any failure is an error: the init container then
/// fails and the pod does not start.
pub fn lock(plan: &Plan, upstreams: &[Resolved], choice: BackendChoice) -> Result<Backend> {
    let first = plan.families.first().ok_or(Error::NothingToLock)?;
    let backend = choose_backend(choice, first.family)?;
    for rules in &plan.families {
        let family = rules.family;
        if family == Family::V6 && !kernel_has_ipv6() {
            // Nothing connects over a family the kernel lacks: rules that only names need (for an
            // address they may have later) can go. An IPv6 address given or resolved now cannot.
            if rules.need == Need::Addresses {
                return Err(Error::NoIpv6);
            }
            warn!(%family, "the pod's kernel has no IPv6: IPv6 rules skipped");
            continue;
        }
        apply_family(backend, rules)?;
        info!(
            %family,
            backend = backend.name(),
            rules = rules.rules.len(),
            chain = CHAIN,
            "rules installed and verified"
        );
    }
    for resolved in upstreams {
        let addresses: Vec<String> = resolved.addrs.iter().map(ToString::to_string).collect();
        info!(
            upstream = %resolved.upstream,
            addresses = %addresses.join(","),
            port = resolved.upstream.port,
            uid = plan.uid,
            scope = if resolved.is_name() {
                "port, every non-loopback destination"
            } else {
                "address and port"
            },
            "egress locked: only this uid may open TCP connections"
        );
    }
    Ok(backend)
}
