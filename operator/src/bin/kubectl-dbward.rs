//! `kubectl dbward`: the kubectl plugin for dbward's approvals and policies (docs/kubectl-dbward.md).
//! Copy the binary onto PATH as `kubectl-dbward` and kubectl finds it.
//!
//! This file only does the I/O: it reads and patches objects with a kube client and prints what the
//! functions of `dbward_operator::plugin` decide.

use std::{path::PathBuf, process::ExitCode, time::SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection};
use dbward_operator::plugin::{
    approvals::{self, Decision},
    errors::{Access, api_error},
    explain::{self, Query, ServiceAccount},
    report,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// The field manager recorded for the plugin's status patches.
const FIELD_MANAGER: &str = "kubectl-dbward";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-dbward",
    bin_name = "kubectl dbward",
    version,
    about = "Decide dbward approval requests and explain which AccessPolicies apply",
    after_help = "Documentation: docs/kubectl-dbward.md"
)]
struct Cli {
    /// The namespace (default: the kubeconfig context's namespace; for explain, the service account's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List ApprovalRequests waiting for a decision (phase Pending, not past expiresAt).
    Pending(PendingArgs),
    /// Approve a pending ApprovalRequest: the held statement runs.
    Approve(DecideArgs),
    /// Deny a pending ApprovalRequest: the held statement fails.
    Deny(DecideArgs),
    /// Explain which AccessPolicies apply to a service account on a connection, and what they allow.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
struct PendingArgs {
    /// List pending requests of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format: a table (default), wide (whole statements), yaml or json (the objects).
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, Args)]
struct DecideArgs {
    /// The ApprovalRequest's name (see `kubectl dbward pending`).
    name: String,
    /// Why, recorded in status.reason.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The service account, as NAMESPACE/NAME (or system:serviceaccount:NAMESPACE:NAME).
    #[arg(
        long = "serviceaccount",
        visible_alias = "service-account",
        value_name = "NS/NAME"
    )]
    service_account: String,
    /// The DatabaseConnection's name.
    #[arg(long, value_name = "NAME")]
    connection: String,
    /// The Unix uid of the calling process inside the pod, for subjects narrowed by `uids`.
    #[arg(long)]
    uid: Option<u32>,
}

/// A failure to report: the message is complete and says what to do.
struct Failure(String);

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// A kube error while doing `access`, as a message.
fn api_failure(e: kube::Error, access: Access<'_>) -> Failure {
    match e {
        kube::Error::Api(status) => Failure(api_error(status.code, &status.reason, &status.message, &access)),
        other => Failure(format!("cannot {} {}: {other}", access.verb, access.resource)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli).await {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let (client, context_namespace) = connect(&cli).await?;
    match cli.command {
        Command::Pending(args) => {
            let namespace = cli.namespace.unwrap_or(context_namespace);
            pending(client, &namespace, &args).await
        }
        Command::Approve(args) => {
            let namespace = cli.namespace.unwrap_or(context_namespace);
            decide(client, &namespace, &args, Decision::Approve).await
        }
        Command::Deny(args) => {
            let namespace = cli.namespace.unwrap_or(context_namespace);
            decide(client, &namespace, &args, Decision::Deny).await
        }
        Command::Explain(args) => {
            let default = cli.namespace.as_deref().unwrap_or(&context_namespace);
            let caller = ServiceAccount::parse(&args.service_account, default)?;
            let namespace = cli.namespace.clone().unwrap_or_else(|| caller.namespace.clone());
            explain(client, &namespace, &caller, &args).await
        }
    }
}

/// A client from `--kubeconfig`/`--context`, or the usual places; and the context's namespace.
async fn connect(cli: &Cli) -> Result<(Client, String), Failure> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("kubeconfig context {context:?}: {e}"))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| format!("no cluster to talk to: {e} (set KUBECONFIG, or pass --kubeconfig)"))?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
    Ok((client, namespace))
}

async fn pending(client: Client, namespace: &str, args: &PendingArgs) -> Result<ExitCode, Failure> {
    let scope = (!args.all_namespaces).then_some(namespace);
    let api: Api<ApprovalRequest> = match scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure(e, Access::dbward("list", "approvalrequests", scope)))?;
    let now = SystemTime::now();
    let pending = approvals::pending(&list.items, now);
    match args.output {
        None | Some(Output::Wide) => {
            if pending.is_empty() {
                eprintln!("{}", approvals::nothing_pending(scope));
            } else {
                let wide = args.output == Some(Output::Wide);
                print!(
                    "{}",
                    approvals::pending_table(&pending, args.all_namespaces, wide, now)
                );
            }
        }
        Some(format) => {
            let doc =
                approvals::list_document(&pending).map_err(|e| format!("cannot encode the requests: {e}"))?;
            let text = match format {
                Output::Json => serde_json::to_string_pretty(&doc)
                    .map(|s| s + "\n")
                    .map_err(|e| e.to_string()),
                _ => serde_saphyr::to_string(&doc).map_err(|e| e.to_string()),
            }
            .map_err(|e| format!("cannot encode the requests: {e}"))?;
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(
    client: Client,
    namespace: &str,
    args: &DecideArgs,
    decision: Decision,
) -> Result<ExitCode, Failure> {
    let api: Api<ApprovalRequest> = Api::namespaced(client, namespace);
    let get = Access::dbward("get", "approvalrequests", Some(namespace));
    let now = SystemTime::now();
    let Some(request) = api.get_opt(&args.name).await.map_err(|e| api_failure(e, get))? else {
        let existing = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_failure(e, Access::dbward("list", "approvalrequests", Some(namespace))))?;
        return Err(Failure(approvals::not_found(
            &args.name,
            namespace,
            &existing.items,
            now,
        )));
    };
    approvals::check_decidable(&request, now).map_err(|refusal| refusal.to_string())?;

    let patch = approvals::status_patch(decision, args.reason.as_deref());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let updated = api
        .patch_status(&request.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            api_failure(
                e,
                Access::dbward("patch", "approvalrequests/status", Some(namespace)),
            )
        })?;
    print!("{}", approvals::outcome(&updated));
    if approvals::phase(&updated) != decision.phase() {
        return Err(Failure(format!(
            "the server kept phase {} instead of {}",
            approvals::phase(&updated),
            decision.phase()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(
    client: Client,
    namespace: &str,
    caller: &ServiceAccount,
    args: &ExplainArgs,
) -> Result<ExitCode, Failure> {
    let connections: Api<DatabaseConnection> = Api::namespaced(client.clone(), namespace);
    let existing: Vec<String> = connections
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| api_failure(e, Access::dbward("list", "databaseconnections", Some(namespace))))?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    let policies: Api<AccessPolicy> = Api::namespaced(client.clone(), namespace);
    let policies = policies
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure(e, Access::dbward("list", "accesspolicies", Some(namespace))))?
        .items;

    // Only a hint: policies may name a service account that does not exist (yet). Without the right to
    // read service accounts, say nothing.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client, &caller.namespace);
    if let Ok(None) = accounts.get_opt(&caller.name).await {
        eprintln!(
            "warning: service account {caller} does not exist; explaining what policies would grant it"
        );
    }

    let now = SystemTime::now();
    let explanation = explain::explain(&Query {
        caller,
        uid: args.uid,
        namespace,
        connection: &args.connection,
        existing_connections: &existing,
        policies: &policies,
        now,
    });
    print!("{}", report::render(&explanation, now));
    Ok(ExitCode::SUCCESS)
}
