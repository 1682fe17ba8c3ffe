"""A small Kustomize renderer for the deploy/k8s layout, used where no `kubectl kustomize` runs.

It knows only what deploy/k8s uses: `resources` (files and directories), `namespace`, `images`
(newName/newTag) and `patches` of strategic-merge files, each either naming its object or with a
`target` (kind, name, labelSelector of `key=value` pairs). Lists of objects with a `name` merge by
name, as Kubernetes' containers, volumes and env do; other lists are replaced. tests/test_deploy.py
checks that it renders exactly what `kubectl kustomize` renders wherever both are available.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}


def load_yaml_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as this layout needs it."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            for index, existing in enumerate(merged_list):
                if existing["name"] == item["name"]:
                    merged_list[index] = merge(existing, item)
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _matches(obj: Obj, target: dict[str, str]) -> bool:
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    if "labelSelector" in target:
        labels = obj["metadata"].get("labels", {})
        for requirement in target["labelSelector"].split(","):
            key, value = requirement.split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _set_images(obj: Obj, images: list[dict[str, str]]) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        name = container["image"].split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                tag = image.get("newTag")
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def render(directory: Path) -> list[Obj]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"{directory}: kustomize_lite does not know {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects.extend(render(path) if path.is_dir() else load_yaml_documents(path))
    for patch_spec in kustomization.get("patches", []):
        patch = load_yaml_documents(directory / patch_spec["path"])[0]
        target = patch_spec.get("target") or {"kind": patch["kind"], "name": patch["metadata"]["name"]}
        hits = [index for index, obj in enumerate(objects) if _matches(obj, target)]
        if not hits:
            raise ValueError(f"{directory}: patch {patch_spec['path']} matches nothing")
        for index in hits:
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
            patched = merge(objects[index], body)
            patched["metadata"] = merge(
                objects[index]["metadata"], {k: v for k, v in patch["metadata"].items() if k != "name"}
            )
            objects[index] = patched
    if namespace := kustomization.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    if images := kustomization.get("images"):
        for obj in objects:
            _set_images(obj, images)
    return objects
