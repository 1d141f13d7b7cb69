//! Whether a policy's subject names the caller.

use dbward_crds::Subject;
use serde_json::Value;

use crate::identity::CallerIdentity;

/// Whether `subject` matches `identity`. `policy_namespace` is the default namespace of
/// `serviceAccount` subjects; `sa_trusted` says whether the identity's service account can be believed
/// (the ambient identity, or a token from a Kubernetes service-account issuer).
pub(crate) fn matches(
    subject: &Subject,
    policy_namespace: Option<&str>,
    identity: &CallerIdentity,
    sa_trusted: bool,
) -> bool {
    if !subject.uids.is_empty() && !identity.uid.is_some_and(|uid| subject.uids.contains(&uid)) {
        return false;
    }
    if let Some(sa) = &subject.service_account {
        let Some(caller) = identity.service_account.as_ref().filter(|_| sa_trusted) else {
            return false;
        };
        let namespace = sa.namespace.as_deref().or(policy_namespace);
        return caller.name == sa.name && namespace.is_none_or(|ns| caller.namespace == ns);
    }
    if let Some(group) = &subject.group {
        return identity.groups.iter().any(|g| g == group);
    }
    if let Some(oidc) = &subject.oidc {
        if identity.issuer.as_deref() != Some(oidc.issuer.as_str()) {
            return false;
        }
        let accepted = |v: &Value| {
            v.as_str()
                .is_some_and(|s| oidc.values.iter().any(|want| want == s))
        };
        return match identity.claims.get(&oidc.claim) {
            Some(Value::Array(items)) => items.iter().any(accepted),
            Some(value) => accepted(value),
            None => false,
        };
    }
    // validate() refuses a subject of no kind; if one slipped through, it names no one.
    false
}
