//! API refusals as messages that say what to do: a missing RBAC permission names the verb and resource,
//! an admission webhook's refusal is passed on word for word.

use dbward_crds::GROUP;

/// What the plugin was doing when the API refused: the RBAC verb and resource it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access<'a> {
    /// The RBAC verb: get, list, patch.
    pub verb: &'a str,
    /// The resource, with its subresource: `approvalrequests`, `approvalrequests/status`.
    pub resource: &'a str,
    /// The API group (`""` for the core group).
    pub group: &'a str,
    /// The namespace; `None` for all namespaces.
    pub namespace: Option<&'a str>,
}

impl<'a> Access<'a> {
    /// Access to one of dbward's resources (group `dbward.dev`).
    pub fn dbward(verb: &'a str, resource: &'a str, namespace: Option<&'a str>) -> Self {
        Self {
            verb,
            resource,
            group: GROUP,
            namespace,
        }
    }

    fn scope(&self) -> String {
        match self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in all namespaces (a ClusterRoleBinding)".to_owned(),
        }
    }

    fn group_name(&self) -> &str {
        if self.group.is_empty() { "core" } else { self.group }
    }
}

/// The message for an API error with HTTP `code`, `reason` and `message` (the Status the server sent)
/// while doing `access`.
pub fn api_error(code: u16, reason: &str, message: &str, access: &Access<'_>) -> String {
    let message = super::text::terminal_safe(message.trim());
    if message.contains("admission webhook") {
        // The webhook's own words ("... cannot approve it: someone else must ..."), verbatim.
        return format!("refused: {message}");
    }
    match code {
        401 => format!(
            "not authenticated ({message}): check the credentials of your kubeconfig context, e.g. with \
             `kubectl auth whoami`"
        ),
        403 => format!(
            "forbidden: you need RBAC verb {:?} on resource {:?} (API group {}) {}. Check with `kubectl auth \
             can-i {} {}{}`. The server said: {message}",
            access.verb,
            access.resource,
            access.group_name(),
            access.scope(),
            access.verb,
            resource_arg(access),
            access
                .namespace
                .map(|ns| format!(" -n {ns}"))
                .unwrap_or_else(|| " -A".to_owned()),
        ),
        404 if reason == "NotFound"
            && message.contains("the server could not find the requested resource") =>
        {
            format!(
                "the server does not know {} ({}): are dbward's CustomResourceDefinitions installed?",
                access.resource,
                access.group_name()
            )
        }
        _ if message.is_empty() => format!("the API server answered HTTP {code} {reason}"),
        _ => format!("{message} (HTTP {code})"),
    }
}

/// `approvalrequests.dbward.dev --subresource=status`-style argument for `kubectl auth can-i`.
fn resource_arg(access: &Access<'_>) -> String {
    let (resource, sub) = match access.resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (access.resource, None),
    };
    let qualified = if access.group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{}", access.group)
    };
    match sub {
        Some(sub) => format!("{qualified} --subresource={sub}"),
        None => qualified,
    }
}
