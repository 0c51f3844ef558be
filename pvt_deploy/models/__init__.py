"""PVT v1/v2 models: backbones, classifiers, RetinaNet detectors, Semantic FPN segmenters.

Attributes are imported lazily: the zoo's names, sizes and parameter counts (:mod:`pvt_deploy.models.zoo`)
must not pay for torch, which the models and checkpoints import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pvt_deploy.manifest import TASKS

if TYPE_CHECKING:
    from pvt_deploy.models.checkpoints import LoadReport, infer_architecture, load_weights, read_checkpoint
    from pvt_deploy.models.deploy import DeployModule, build_deploy_module
    from pvt_deploy.models.zoo import (
        BACKBONES,
        RANDOM_INIT_SEED,
        ZooEntry,
        build_model,
        count_parameters,
        create_model,
        resolve_name,
        zoo_entries,
    )

__all__ = [
    "BACKBONES", "RANDOM_INIT_SEED", "TASKS", "DeployModule", "LoadReport", "ZooEntry", "build_deploy_module", "build_model",
    "count_parameters", "create_model", "infer_architecture", "load_weights", "read_checkpoint",
    "resolve_name", "zoo_entries",
]

_LAZY = {
    **dict.fromkeys(("LoadReport", "infer_architecture", "load_weights", "read_checkpoint"),
                    "pvt_deploy.models.checkpoints"),
    **dict.fromkeys(("DeployModule", "build_deploy_module"), "pvt_deploy.models.deploy"),
    **dict.fromkeys(("BACKBONES", "RANDOM_INIT_SEED", "ZooEntry", "build_model", "count_parameters", "create_model",
                     "resolve_name", "zoo_entries"), "pvt_deploy.models.zoo"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
