//! `dbward-sidecar egress-lock`: the init container that makes the sidecar the only way out to the
//! databases ([`crate::egress`]).

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::egress::{self, Backend, BackendChoice, Plan};

#[derive(Debug, Args)]
pub struct EgressLockArgs {
    /// The uid that keeps its way out: the sidecar's.
    #[arg(long)]
    pub uid: u32,
    /// An upstream `host:port` only that uid may reach (repeatable). An IPv6 address goes in brackets,
    /// `[2001:db8::5]:5432`; a name's port is refused to other uids toward every destination but
    /// loopback.
    #[arg(long = "allow", value_name = "HOST:PORT", required = true)]
    pub allow: Vec<String>,
    /// Which iptables to drive: nf_tables, legacy x_tables, or auto (nft when it works here, else
    /// legacy).
    #[arg(long, value_enum, default_value = "auto", env = "DBWARD_IPTABLES_BACKEND")]
    pub backend: BackendArg,
    /// Print the iptables-restore input that would be applied and exit, changing nothing (needs no
    /// privileges; names are still resolved).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Auto,
    Nft,
    Legacy,
}

impl From<BackendArg> for BackendChoice {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Nft => BackendChoice::Nft,
            BackendArg::Legacy => BackendChoice::Legacy,
        }
    }
}

/// Installs the rules (or, with `--dry-run`, prints them).
pub fn run(args: &EgressLockArgs) -> Result<()> {
    egress::check_uid(args.uid)?;
    let upstreams = args
        .allow
        .iter()
        .map(|arg| egress::parse_allow(arg))
        .collect::<egress::Result<Vec<_>>>()?;
    let resolved = upstreams
        .iter()
        .map(|upstream| egress::resolve(upstream, egress::system_lookup))
        .collect::<egress::Result<Vec<_>>>()?;
    let plan = Plan::new(args.uid, &resolved);
    let choice = BackendChoice::from(args.backend);
    if args.dry_run {
        let backend = match choice {
            BackendChoice::Legacy => Backend::Legacy,
            BackendChoice::Nft | BackendChoice::Auto => Backend::Nft,
        };
        if choice == BackendChoice::Auto {
            println!(
                "# --backend auto: nft where it works here, else the same input to the -legacy- commands"
            );
        }
        print!(
            "{}",
            egress::dry_run_text(&plan, |family| backend.command(family, "-restore"))
        );
        return Ok(());
    }
    egress::lock(&plan, &resolved, choice)?;
    Ok(())
}
