"""PVT v1/v2 models: backbones, classifiers, RetinaNet detectors, Semantic FPN segmenters."""

from pvt_deploy.manifest import TASKS
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
