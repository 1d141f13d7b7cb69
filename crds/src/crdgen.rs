//! The CustomResourceDefinitions, rendered from the types. `crds/*.yaml` and `charts/dbward/crds/*.yaml`
//! are these, kept equal by `tests/crds.rs`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{AccessPolicy, ApprovalRequest, DatabaseConnection};

/// The line every generated file starts with.
pub const HEADER: &str = "# Generated from crds/src by `DBWARD_UPDATE_CRDS=1 cargo test -p dbward-crds --test crds`. \
                          Do not edit.\n";

/// Every CRD with the file name it is kept under (`<plural>.yaml`).
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("databaseconnections.yaml", DatabaseConnection::crd()),
        ("accesspolicies.yaml", AccessPolicy::crd()),
        ("approvalrequests.yaml", ApprovalRequest::crd()),
    ]
}

/// One CRD as the YAML file we ship: [`HEADER`], then the document.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    Ok(format!("{HEADER}{}", serde_saphyr::to_string(crd)?))
}

/// All CRDs as one multi-document YAML stream, for `kubectl apply -f -`.
pub fn render_all() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for (_, crd) in all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
