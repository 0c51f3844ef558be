"""`pvt-deploy doctor`: what is installed and usable on this machine (library: pvt_deploy.doctor)."""

from __future__ import annotations

from typing import Annotated

import typer

from pvt_deploy.cli.tables import print_table


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the app."""

    @app.command("doctor")
    def doctor(
        as_json: Annotated[bool, typer.Option(
            "--json", help="Print machine-readable JSON instead of a table: each component, and the verdict "
                           "(ok, and the keys of the parts broken and of those --require asks for that are lacking)."
        )] = False,
        encoders: Annotated[bool, typer.Option(
            "--encoders/--no-encoders", help="Open each H.264 encoder to see if it really works.")] = True,
        require: Annotated[list[str] | None, typer.Option(
            "--require", metavar="PARTS",
            help="Parts this machine must have, comma-separated or repeated: gpu (pvt-deploy runs on the GPU: both "
                 "cuda, PyTorch's GPU for --backend torch, and onnxruntime_cuda, ONNX Runtime's CUDA provider for "
                 "an export's model.onnx, which onnxruntime-gpu has and the CPU onnxruntime has not; a session is "
                 "started on it), cuda or onnxruntime_cuda alone, tensorrt, h264_encoders, tritonclient, cpu_int8. "
                 "Default: none (a missing one is no failure).")] = None,
    ) -> None:
        """Show Python, PyTorch/CUDA/GPU, ONNX Runtime providers, TensorRT, PyAV encoders, OpenCV and
        export tools: what is installed, what is usable here, and how to get what is missing.

        Exit 0 when every part pvt-deploy needs works (a missing GPU, TensorRT or other optional part is
        no failure), 1 when one is broken or missing (its row says why), 3 when a part --require names is
        not usable here: `docker run --gpus all IMAGE doctor --require gpu,tensorrt` as a check."""
        from pvt_deploy.doctor import collect, render_table, required_parts, shortfall, to_json, verdict
        from pvt_deploy.errors import BackendUnavailableError, PvtDeployError, renamed
        from pvt_deploy.utils.files import json_dumps

        with renamed(probe_encoders="encoders"):  # the library's probe_encoders is --encoders/--no-encoders here
            required = required_parts(require or [], probe_encoders=encoders)
        checks = collect(probe_encoders=encoders)
        if as_json:
            typer.echo(json_dumps(to_json(checks, required), indent=2, default=str))
        else:
            from rich.console import Console

            print_table(Console(), render_table(checks))
        broken, lacking = verdict(checks, required)
        if broken:  # and the parts required, by name: the table says why each is not usable
            said = [f"{what}: {', '.join(f'{c.name} {c.status}' for c in rows)}" for what, rows in (
                ("pvt-deploy needs, and this install lacks or cannot use", broken),
                ("--require asks for, and this machine cannot use", lacking)) if rows]
            raise PvtDeployError("; ".join(said))
        if lacking:  # why each is not usable and how to get it: a CPU onnxruntime under --require gpu, say
            parts, hint = shortfall(lacking, require or [])
            raise BackendUnavailableError(f"--require asks for, and this machine cannot use: {parts}", hint=hint)
