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
        return identity.groups.iter().any(|g| g == group)
            || identity
                .service_account
                .as_ref()
                .filter(|_| sa_trusted)
                .is_some_and(|sa| service_account_groups(&sa.namespace).iter().any(|g| g == group));
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

/// The groups Kubernetes puts every service account of `namespace` in; its tokens do not carry them
/// as a claim, so they are added here for a trusted service-account identity.
fn service_account_groups(namespace: &str) -> [String; 2] {
    [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> Subject {
        serde_json::from_value(serde_json::json!({ "group": name })).expect("subject")
    }

    #[test]
    fn a_service_account_is_in_kubernetes_service_account_groups() {
        let me = CallerIdentity::ambient("shop/api", None).expect("identity");
        assert!(matches(&group("system:serviceaccounts"), Some("shop"), &me, true));
        assert!(matches(
            &group("system:serviceaccounts:shop"),
            Some("shop"),
            &me,
            true
        ));
        assert!(!matches(
            &group("system:serviceaccounts:other"),
            Some("shop"),
            &me,
            true
        ));
        assert!(!matches(&group("dba"), Some("shop"), &me, true));
        // Only for a service account identity the sidecar trusts as one.
        assert!(!matches(
            &group("system:serviceaccounts"),
            Some("shop"),
            &me,
            false
        ));
    }
}
