use clap::Parser;
use dbward_sidecar::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // One crypto provider for every TLS use in the process, installed before anything else.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("DBWARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.init(),
    }
    let result = match cli.command {
        Command::Check(args) => dbward_sidecar::cli::check(&args),
        Command::Approve(args) => dbward_sidecar::cli::approve(&args),
        Command::Deny(args) => dbward_sidecar::cli::deny(&args),
        Command::Approvals(args) => dbward_sidecar::cli::approvals::list(&args),
        Command::EgressLock(args) => dbward_sidecar::cli::egress::run(&args),
        Command::Replay(args) => dbward_sidecar::cli::journal::replay(&args),
        Command::Run(args) => {
            let runtime = match args.threads {
                1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                n => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.into())
                    .enable_all()
                    .build(),
            };
            match runtime {
                Ok(rt) => rt.block_on(dbward_sidecar::cli::run(*args)),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dbward-sidecar: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
