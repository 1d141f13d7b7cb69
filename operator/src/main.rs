//! dbward-operator. Its controllers, admission webhooks and the sidecar control API are being built;
//! until then this binary only says so. The CRDs are printed by the `crdgen` binary of this crate.

fn main() -> std::process::ExitCode {
    eprintln!(
        "dbward-operator {}: the controllers, webhooks and control API are not built yet; \
         run the sidecar without a cluster (`dbward-sidecar run --config FILE`), and install the CRDs with \
         `crdgen | kubectl apply -f -`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
