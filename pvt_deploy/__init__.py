"""pvt-deploy: export, optimise and run Pyramid Vision Transformer models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers see the class itself (at run time it is imported on first use)
    from pvt_deploy.api import Model

__version__ = "0.2.0"

__all__ = ["Model", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import pvt_deploy` must not import torch/onnxruntime.
    if name == "Model":
        from pvt_deploy.api import Model

        return Model
    raise AttributeError(name)
