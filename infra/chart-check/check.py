"""Offline checks of the Helm chart infra/helm/sa-engine, for each values set:

  1. `helm lint --strict` (a warning fails too);
  2. `helm template` (which renders NOTES.txt too, failing on its errors), then every manifest:
     - Kubernetes kinds against the Kubernetes OpenAPI schemas that kubernetes-validate bundles, in
       strict mode (an unknown field fails), for each version in KUBE_VERSIONS;
     - KEDA kinds (ScaledObject, TriggerAuthentication) against the openAPIV3Schema of KEDA's own
       CRDs, made strict the same way (an object schema with properties accepts no others);
     - object names and label keys/values as the API server would check them, image references,
       and that no secret-holding variable (AWS_SECRET_ACCESS_KEY, TEMPORAL_API_KEY ...) has a
       literal value;
  3. every `temporal` trigger against KEDA's temporal scaler source (pkg/scalers/temporal_scaler.go):
     each metadata key is one the scaler declares for trigger metadata (`keda:"name=..."` tags),
     none deprecated, the required ones present, enum-like values known; each TriggerAuthentication
     parameter it uses is one the scaler reads from authParams;
  4. references inside the release: ScaledObject -> Deployment, authenticationRef ->
     TriggerAuthentication, and a PodDisruptionBudget selecting every Deployment's pods.

Run through check.sh, which finds helm, this venv and KEDA's files (infra/chart-check/paths.sh).
Exit status 0: all passed; 1: something failed (each failure is printed); 2: bad usage.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the pinned
# kubernetes-validate bundles: a field or API missing from either fails.
KUBE_VERSIONS = ["1.31.0", "1.37.0"]
RELEASE = "sa-engine"
NAMESPACE = "sa-engine"

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.normpath(os.path.join(HERE, "..", "helm", "sa-engine"))
# name -> values files (relative to the repository root), on top of the chart's values.yaml.
VALUE_SETS = {
    "default": [],
    "selfhosted": ["infra/helm/sa-engine/values-selfhosted.yaml"],
    "cloud": ["infra/helm/sa-engine/values-cloud.yaml"],
    # Not for users: they reach the templates' other branches (draining builds, mTLS, the annotation
    # service; a CPU-only cluster without KEDA or versioning).
    "draining-mtls": ["infra/helm/sa-engine/values-cloud.yaml", "infra/chart-check/values/draining-mtls.yaml"],
    "cpu-only": ["infra/chart-check/values/cpu-only.yaml"],
}
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

KEDA_KINDS = {"ScaledObject": "keda.sh_scaledobjects.yaml",
              "TriggerAuthentication": "keda.sh_triggerauthentications.yaml"}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.failures.append(f"{where}: {message}")


# --- KEDA: CRD schemas and the temporal scaler's declared parameters ---------------------------------

def strict_schema(schema):
    """An OpenAPI v3 schema where an object with `properties` accepts no other fields (what
    `kubectl --validate=strict` and the API server's field validation do for a CRD)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_keda_validators(keda_dir: str) -> dict:
    validators = {}
    for kind, filename in KEDA_KINDS.items():
        with open(os.path.join(keda_dir, filename)) as f:
            crd = yaml.safe_load(f)
        for version in crd["spec"]["versions"]:
            schema = strict_schema(version["schema"]["openAPIV3Schema"])
            api_version = f"{crd['spec']['group']}/{version['name']}"
            validators[(api_version, kind)] = jsonschema.Draft4Validator(schema)
    return validators


@dataclass
class ScalerParam:
    names: list[str]
    orders: list[str]
    optional: bool = False
    default: str | None = None
    deprecated: str | None = None
    enum: list[str] | None = None


def temporal_scaler_params(source: str) -> list[ScalerParam]:
    """The `keda:"..."` struct tags of temporalMetadata, parsed as KEDA's paramsFromTag does
    (pkg/scalers/scalersconfig/typed_config.go): comma-separated key=value, ';' within a value."""
    struct = re.search(r"type temporalMetadata struct \{(.*?)\n\}", source, re.S)
    if not struct:
        raise SystemExit("check: no `type temporalMetadata struct` in KEDA's temporal_scaler.go")
    params = []
    for tag in re.findall(r'keda:"([^"]*)"', struct.group(1)):
        p = ScalerParam(names=[], orders=[])
        for part in tag.split(","):
            key, _, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if key == "name":
                p.names = value.split(";")
            elif key == "order":
                p.orders = [o.strip() for o in value.split(";")]
            elif key == "optional":
                p.optional = value in ("", "true")
            elif key == "default":
                p.default = value
            elif key == "deprecated":
                p.deprecated = value or "deprecated"
            elif key == "enum":
                p.enum = value.split(";")
        params.append(p)
    if not params:
        raise SystemExit("check: no keda:\"name=...\" tags in temporalMetadata")
    return params


# Values the scaler matches by name (temporal_scaler.go getQueueTypes / queueTypeSet); any other
# is silently ignored there, which is why it is an error here.
TEMPORAL_QUEUE_TYPES = {"workflow", "activity", "nexus"}


def check_temporal_trigger(where: str, trigger: dict, auth_params: set[str], params: list[ScalerParam],
                           report: Report) -> None:
    metadata = trigger.get("metadata") or {}
    by_metadata_key = {}
    for p in params:
        if "triggerMetadata" in p.orders:
            for name in p.names:
                by_metadata_key[name] = p
                if "resolvedEnv" in p.orders:
                    by_metadata_key[name + "FromEnv"] = p
    auth_names = {name for p in params if "authParams" in p.orders for name in p.names}
    for key, value in metadata.items():
        p = by_metadata_key.get(key)
        if p is None:
            report.fail(where, f"temporal trigger metadata key {key!r} is not one KEDA's temporal scaler "
                               f"reads from trigger metadata ({', '.join(sorted(by_metadata_key))})")
            continue
        if p.deprecated:
            report.fail(where, f"temporal trigger metadata key {key!r} is deprecated: {p.deprecated}")
        if p.enum and value not in p.enum:
            report.fail(where, f"temporal trigger {key}={value!r}: expected one of {p.enum}")
    for name in sorted(auth_params):
        if name not in auth_names:
            report.fail(where, f"TriggerAuthentication parameter {name!r} is not one the temporal scaler "
                               f"reads from authParams ({', '.join(sorted(auth_names))})")
    for p in params:
        if p.optional or p.default is not None:
            continue
        given = any(n in metadata or n + "FromEnv" in metadata or n in auth_params for n in p.names)
        if not given:
            report.fail(where, f"temporal trigger lacks the required parameter {'/'.join(p.names)}")
    for queue_type in filter(None, (metadata.get("queueTypes") or "").split(",")):
        if queue_type.strip() not in TEMPORAL_QUEUE_TYPES:
            report.fail(where, f"temporal trigger queueTypes has {queue_type!r}; the scaler knows "
                               f"{sorted(TEMPORAL_QUEUE_TYPES)}")
    if bool(metadata.get("workerDeploymentName")) != bool(metadata.get("workerDeploymentBuildId")):
        report.fail(where, "temporal trigger: workerDeploymentName and workerDeploymentBuildId go together")


# --- rendering and validating ------------------------------------------------------------------------

class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key twice: PyYAML keeps the last silently, while
    the API server's strict decoding (and kubectl) refuse the manifest."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def values_args(files: list[str]) -> list[str]:
    args = []
    for f in files:
        args += ["-f", os.path.join(REPO, f)]
    return args


def check_names_and_labels(where: str, doc: dict, report: Report) -> None:
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    if not (DNS_SUBDOMAIN.match(name) and len(name) <= 253):
        report.fail(where, f"name {name!r} is not a DNS subdomain")
    if doc["kind"] == "Service" and not (DNS_LABEL.match(name) and len(name) <= 63):
        report.fail(where, f"Service name {name!r} is not a DNS-1035 label of at most 63 characters")
    label_sets = [meta.get("labels") or {}]
    spec = doc.get("spec") or {}
    label_sets.append(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    label_sets.append((spec.get("selector") or {}).get("matchLabels") or {})
    for labels in label_sets:
        for key, value in labels.items():
            prefix, _, label_name = key.rpartition("/")
            if prefix and not (DNS_SUBDOMAIN.match(prefix) and len(prefix) <= 253):
                report.fail(where, f"label key {key!r}: bad prefix")
            if not (LABEL_NAME.match(label_name) and len(label_name) <= 63):
                report.fail(where, f"label key {key!r}: bad name")
            if not isinstance(value, str) or not (LABEL_VALUE.match(value) and len(value) <= 63):
                report.fail(where, f"label {key}={value!r}: not a valid label value")


# A container image reference: [registry[:port]/]path[:tag][@sha256:digest] (distribution/reference).
IMAGE_REF = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\.[a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
# Environment variables that hold secrets: only ever from a Secret (valueFrom), never by value.
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "TEMPORAL_API_KEY"}


def check_pod_spec(where: str, doc: dict, report: Report) -> None:
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec")
    if not pod:
        return
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        image = container.get("image", "")
        if not IMAGE_REF.match(image):
            report.fail(where, f"container {container['name']}: {image!r} is not an image reference")
        for env in container.get("env", []):
            if env["name"] in SECRET_ENV and "value" in env:
                report.fail(where, f"container {container['name']}: {env['name']} is set by value; "
                                   "secrets come from a Secret (valueFrom.secretKeyRef)")


def check_value_set(name: str, files: list[str], helm: str, keda_validators: dict,
                    scaler_params: list[ScalerParam], report: Report) -> int:
    lint = run([helm, "lint", "--strict", "--kube-version", KUBE_VERSIONS[0], CHART, *values_args(files)])
    if lint.returncode != 0:
        report.fail(f"[{name}] helm lint", (lint.stdout + lint.stderr).strip())
    rendered = run([helm, "template", RELEASE, CHART, "--namespace", NAMESPACE,
                    "--kube-version", KUBE_VERSIONS[0], *values_args(files)])
    if rendered.returncode != 0:
        report.fail(f"[{name}] helm template", rendered.stderr.strip())
        return 0
    return check_manifests(name, rendered.stdout, keda_validators, scaler_params, report)


def check_manifests(name: str, text: str, keda_validators: dict, scaler_params: list[ScalerParam],
                    report: Report) -> int:
    """Validates a stream of rendered manifests; returns how many documents it held."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d]
    except yaml.YAMLError as error:
        report.fail(f"[{name}] helm template", f"output is not valid YAML: {error}")
        return 0
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    for doc in docs:
        where = f"[{name}] {doc['kind']}/{doc['metadata']['name']}"
        check_names_and_labels(where, doc, report)
        check_pod_spec(where, doc, report)
        keda = keda_validators.get((doc["apiVersion"], doc["kind"]))
        if keda is not None:
            for error in sorted(keda.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                path = "/".join(str(p) for p in error.absolute_path) or "(root)"
                report.fail(where, f"KEDA CRD schema, at {path}: {error.message}")
            continue
        if doc["apiVersion"].startswith("keda.sh/"):
            report.fail(where, f"no KEDA CRD schema for {doc['apiVersion']} {doc['kind']}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.absolute_path) or "(root)"
                report.fail(where, f"Kubernetes {version} schema (strict), at {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                report.fail(where, error.message)

    # KEDA: the temporal triggers against the scaler, and what they point at.
    auths = by_kind.get("TriggerAuthentication", {})
    for so_name, so in by_kind.get("ScaledObject", {}).items():
        where = f"[{name}] ScaledObject/{so_name}"
        target = so["spec"]["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in by_kind.get("Deployment", {}):
            report.fail(where, f"scaleTargetRef {target} is no Deployment of this release")
        for trigger in so["spec"]["triggers"]:
            auth_params: set[str] = set()
            ref = (trigger.get("authenticationRef") or {}).get("name")
            if ref is not None:
                if ref not in auths:
                    report.fail(where, f"authenticationRef {ref!r} is no TriggerAuthentication of this release")
                else:
                    spec = auths[ref]["spec"]
                    auth_params = {t["parameter"] for t in spec.get("secretTargetRef", [])}
                    auth_params |= {t["parameter"] for t in spec.get("env", [])}
            if trigger["type"] == "temporal":
                check_temporal_trigger(where, trigger, auth_params, scaler_params, report)

    # Every Deployment's pods are covered by a PodDisruptionBudget.
    pdbs = list(by_kind.get("PodDisruptionBudget", {}).values())
    for dep_name, dep in by_kind.get("Deployment", {}).items():
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        if not any(all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
                   for pdb in pdbs):
            report.fail(f"[{name}] Deployment/{dep_name}", "no PodDisruptionBudget selects its pods")
    return len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="infra/chart-check/check.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("value_sets", nargs="*", metavar="VALUES",
                        help=f"values sets to check (default: all of {', '.join(VALUE_SETS)})")
    parser.add_argument("--helm", required=True)
    parser.add_argument("--keda-dir", required=True)
    parser.add_argument("--rendered", metavar="FILE", action="append", default=[],
                        help="validate these already rendered manifests too (no helm; for testing "
                             "the check itself)")
    args = parser.parse_args()
    unknown = [v for v in args.value_sets if v not in VALUE_SETS]
    if unknown:
        parser.error(f"unknown values set(s) {unknown}; known: {', '.join(VALUE_SETS)}")
    value_sets = args.value_sets or ([] if args.rendered else list(VALUE_SETS))

    keda_validators = load_keda_validators(args.keda_dir)
    with open(os.path.join(args.keda_dir, "temporal_scaler.go")) as f:
        scaler_params = temporal_scaler_params(f.read())

    report = Report()
    checks = [(name, lambda name=name: check_value_set(name, VALUE_SETS[name], args.helm, keda_validators,
                                                      scaler_params, report)) for name in value_sets]
    for path in args.rendered:
        with open(path) as f:
            text = f.read()
        checks.append((path, lambda path=path, text=text: check_manifests(path, text, keda_validators,
                                                                         scaler_params, report)))
    for name, check in checks:
        count = check()
        failed = sum(1 for f in report.failures if f.startswith(f"[{name}]"))
        print(f"chart-check: [{name}] {count} manifests checked, "
              f"{'OK' if not failed else f'{failed} problem(s)'}")
    if report.failures:
        print(f"\nchart-check: FAILED, {len(report.failures)} problem(s):", file=sys.stderr)
        for failure in report.failures:
            print(f"  - {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"chart-check: all passed (helm lint --strict; Kubernetes {', '.join(KUBE_VERSIONS)} strict "
          f"schemas; KEDA CRDs and temporal scaler from {os.path.basename(args.keda_dir)})")


if __name__ == "__main__":
    main()
