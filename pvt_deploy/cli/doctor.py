"""`pvt-deploy doctor`: what is installed and usable on this machine (library: pvt_deploy.doctor)."""

from __future__ import annotations

from typing import Annotated

import typer

from pvt_deploy.cli.tables import print_table


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the app."""

    @app.command("doctor")
    def doctor(
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False,
        encoders: Annotated[bool, typer.Option(
            "--encoders/--no-encoders", help="Open each H.264 encoder to see if it really works.")] = True,
    ) -> None:
        """Show Python, PyTorch/CUDA/GPU, ONNX Runtime providers, TensorRT, PyAV encoders, OpenCV and
        export tools: what is installed, what is usable here, and how to get what is missing."""
        from pvt_deploy.doctor import collect, render_table, to_json
        from pvt_deploy.utils.files import json_dumps

        checks = collect(probe_encoders=encoders)
        if as_json:
            typer.echo(json_dumps(to_json(checks), indent=2, default=str))
        else:
            from rich.console import Console

            print_table(Console(), render_table(checks))
