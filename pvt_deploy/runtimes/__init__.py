"""Runtimes: one protocol (:class:`Backend`), several implementations, one loader."""

from pvt_deploy.runtimes.base import Backend, BackendInfo, TensorSpec

__all__ = ["Backend", "BackendInfo", "TensorSpec"]
