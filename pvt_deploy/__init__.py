"""pvt-deploy: export, optimise and run Pyramid Vision Transformer models."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["Model", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import pvt_deploy` must not import torch/onnxruntime.
    if name == "Model":
        from pvt_deploy.api import Model

        return Model
    raise AttributeError(name)
