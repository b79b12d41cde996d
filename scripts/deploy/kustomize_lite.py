#!/usr/bin/env python3
"""Render a kustomization the way `kustomize build` does, for the subset our manifests use.

The fallback of scripts/deploy/check_k8s.py on machines without kubectl or kustomize, and
checked against `kubectl kustomize` wherever that exists (so the two cannot drift apart
unnoticed). Supported, and nothing else (anything else is an error, never ignored):

- `resources` (files and directories), `components` (kind: Component), applied in order;
- `configMapGenerator` with `files` (`name` or `key=name`) and `literals`, `behavior`
  create / merge / replace, only with `generatorOptions.disableNameSuffixHash: true`;
- `patches` with `path` (or inline `patch`) holding a strategic merge patch: maps merge,
  `null` deletes a key, lists of containers / initContainers / volumes / env merge by
  `name`, volumeMounts by `mountPath`, ports by `containerPort`, other lists are replaced;
  merged lists put the patch's entries first, in patch order, then the rest (as kyaml does);
- `images` (`name` → `newName`, `newTag`, `digest`) over containers and initContainers.

Order, as in kustomize: resources, components, generators, patches, images.

    kustomize_lite.py DIR    # prints the multi-document YAML
"""
import copy
import os
import sys

import yaml

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
KNOWN_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "components", "configMapGenerator",
    "generatorOptions", "patches", "images",
}


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def load_kustomization(d):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                k = yaml.safe_load(f) or {}
            extra = set(k) - KNOWN_FIELDS
            if extra:
                raise Unsupported(f"{p}: fields {sorted(extra)} are not supported")
            return k
    raise Unsupported(f"{d}: no kustomization.yaml")


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def merge(dst, patch, key=None):
    """Strategic merge of `patch` into `dst` (both plain YAML data); returns the result."""
    if isinstance(patch, dict) and isinstance(dst, dict):
        out = dict(dst)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = strip_nulls(v)
        return out
    if isinstance(patch, list) and isinstance(dst, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        by_key = {e.get(mk): e for e in dst if isinstance(e, dict)}
        out, used = [], set()
        for e in patch:
            k = e.get(mk)
            out.append(merge(by_key[k], e, None) if k in by_key else strip_nulls(e))
            used.add(k)
        out.extend(e for e in dst if not (isinstance(e, dict) and e.get(mk) in used))
        return out
    return strip_nulls(patch)


def strip_nulls(v):
    if isinstance(v, dict):
        return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_nulls(x) for x in v]
    return v


def generate_configmaps(d, k, objs):
    gens = k.get("configMapGenerator") or []
    if gens and not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise Unsupported(f"{d}: configMapGenerator needs generatorOptions.disableNameSuffixHash")
    for g in gens:
        data = {}
        for spec in g.get("files", []):
            key, _, name = spec.rpartition("=") if "=" in spec else (os.path.basename(spec), "", spec)
            with open(os.path.join(d, name), encoding="utf-8") as f:
                data[key] = f.read()
        for lit in g.get("literals", []):
            key, _, val = lit.partition("=")
            data[key] = val
        extra = set(g) - {"name", "files", "literals", "behavior"}
        if extra:
            raise Unsupported(f"{d}: configMapGenerator fields {sorted(extra)} not supported")
        behavior = g.get("behavior", "create")
        existing = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == g["name"]]
        if behavior == "create":
            if existing:
                raise Unsupported(f"{d}: ConfigMap {g['name']} already exists (use behavior: merge)")
            objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": g["name"]}, "data": data})
        elif behavior in ("merge", "replace"):
            if len(existing) != 1:
                raise Unsupported(f"{d}: no ConfigMap {g['name']} to {behavior}")
            cm = existing[0]
            cm["data"] = {**cm.get("data", {}), **data} if behavior == "merge" else data
        else:
            raise Unsupported(f"{d}: behavior {behavior!r}")


def apply_patches(d, k, objs):
    for p in k.get("patches") or []:
        if set(p) - {"path", "patch"}:
            raise Unsupported(f"{d}: patch fields {sorted(set(p) - {'path', 'patch'})} (targets) not supported")
        if "path" in p:
            docs = load_docs(os.path.join(d, p["path"]))
        else:
            docs = [d_ for d_ in yaml.safe_load_all(p["patch"]) if d_]
        for patch in docs:
            kind, name = patch["kind"], patch["metadata"]["name"]
            hits = [i for i, o in enumerate(objs) if o["kind"] == kind and o["metadata"]["name"] == name]
            if len(hits) != 1:
                raise Unsupported(f"{d}: patch target {kind}/{name} matches {len(hits)} objects")
            objs[hits[0]] = merge(objs[hits[0]], patch)


def apply_images(k, objs):
    for img in k.get("images") or []:
        for o in objs:
            spec = (o.get("spec") or {}).get("template", {}).get("spec") or o.get("spec") or {}
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                ref = c.get("image", "")
                base = ref.split("@")[0]
                base = base.rsplit(":", 1)[0] if ":" in base.rsplit("/", 1)[-1] else base
                if base != img["name"]:
                    continue
                new = img.get("newName", base)
                if "digest" in img:
                    new += "@" + img["digest"]
                elif "newTag" in img:
                    new += ":" + str(img["newTag"])
                c["image"] = new


def build(d, objs=None, component=False):
    """Builds directory d. For a component, `objs` is the accumulated input it transforms."""
    k = load_kustomization(d)
    kind = k.get("kind", "Kustomization")
    if component != (kind == "Component"):
        raise Unsupported(f"{d}: kind {kind} used as {'component' if component else 'resource'}")
    objs = objs if objs is not None else []
    for r in k.get("resources") or []:
        p = os.path.join(d, r)
        objs.extend(build(p) if os.path.isdir(p) else load_docs(p))
    for c in k.get("components") or []:
        objs = build(os.path.join(d, c), objs, component=True)
    generate_configmaps(d, k, objs)
    apply_patches(d, k, objs)
    apply_images(k, objs)
    return objs


def render(d):
    return copy.deepcopy(build(os.path.normpath(d)))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objs = render(sys.argv[1])
    except Unsupported as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objs, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
