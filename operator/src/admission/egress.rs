//! What a pod's own containers must not be for the egress lock to hold.
//!
//! The egress lock (`dbward-sidecar egress-lock`, `docs/sidecar.md`) is an iptables rule that lets only
//! the sidecar's uid open connections to the databases. A container defeats it when it runs as that uid,
//! can change its uid to it (`SETUID`; `SETGID` for the sidecar's gid), can rewrite or bypass the
//! firewall (`NET_ADMIN`, `NET_RAW`: raw packets iptables' owner match never sees, `SYS_ADMIN`), or has
//! everything (`privileged: true`, capability `ALL`). A pod that asks for such a container together with
//! an egress-locked connection is refused, naming the container and the field.
//!
//! Only what the pod spec says explicitly is judged: a container that sets no `runAsUser` runs as its
//! image's user, which the webhook cannot see, and a root process keeps the runtime's default
//! capabilities (which include `SETUID` and `NET_RAW`) unless the container drops them. Ephemeral
//! containers are not judged: a pod is created without them, and they are added later through the
//! `pods/ephemeralcontainers` subresource, which the webhook does not intercept.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

use super::inject::Refusal;

/// Capabilities that let a process past a uid-owner firewall rule: it can become the sidecar's uid
/// (`SETUID`) or gid (`SETGID`), remove the rules (`NET_ADMIN`, `SYS_ADMIN`), or send packets the rules
/// never see (`NET_RAW`). `ALL` includes them.
pub const FORBIDDEN_CAPABILITIES: [&str; 6] =
    ["ALL", "NET_ADMIN", "NET_RAW", "SETGID", "SETUID", "SYS_ADMIN"];

/// Refuse the first container of `spec` (init containers first, in the order the kubelet starts them)
/// that could get past an egress lock letting `sidecar_uid` through.
pub(crate) fn check_egress_lock(spec: &PodSpec, sidecar_uid: i64) -> Result<(), Refusal> {
    let pod_uid = spec.security_context.as_ref().and_then(|sc| sc.run_as_user);
    let init = spec.init_containers.iter().flatten().enumerate();
    let init = init.map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let regular = spec.containers.iter().enumerate();
    let regular = regular.map(|(i, c)| (format!("spec.containers[{i}]"), c));
    for (path, container) in init.chain(regular) {
        check_container(&path, container, pod_uid, sidecar_uid)?;
    }
    Ok(())
}

fn check_container(
    path: &str,
    container: &Container,
    pod_uid: Option<i64>,
    sidecar_uid: i64,
) -> Result<(), Refusal> {
    let name = &container.name;
    let sc = container.security_context.as_ref();
    let (uid, uid_field) = match sc.and_then(|sc| sc.run_as_user) {
        Some(uid) => (Some(uid), format!("{path}.securityContext.runAsUser")),
        None => (pod_uid, "spec.securityContext.runAsUser".to_owned()),
    };
    if uid == Some(sidecar_uid) {
        return Err(Refusal::RunsAsSidecarUid {
            container: name.clone(),
            field: uid_field,
            uid: sidecar_uid,
        });
    }
    let Some(sc) = sc else {
        return Ok(());
    };
    if sc.privileged == Some(true) {
        return Err(Refusal::PrivilegedContainer {
            container: name.clone(),
            field: format!("{path}.securityContext.privileged"),
        });
    }
    if let Some(capability) = forbidden_capability(sc) {
        return Err(Refusal::ForbiddenCapability {
            container: name.clone(),
            field: format!("{path}.securityContext.capabilities.add"),
            capability,
        });
    }
    Ok(())
}

/// The first capability of `capabilities.add` in [`FORBIDDEN_CAPABILITIES`], as written. The container
/// runtime reads names without regard to case and with or without the `CAP_` prefix, and so does this.
fn forbidden_capability(sc: &SecurityContext) -> Option<String> {
    let added = sc.capabilities.as_ref().and_then(|c| c.add.as_deref());
    added.unwrap_or_default().iter().find_map(|cap| {
        let upper = cap.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        FORBIDDEN_CAPABILITIES.contains(&bare).then(|| cap.clone())
    })
}
