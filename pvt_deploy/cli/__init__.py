"""The ``pvt-deploy`` command line.

Thin by design: each command module parses options, calls the library and prints. Command modules
import heavy libraries (torch, onnxruntime, tensorrt) inside the command functions so that
``pvt-deploy --help`` stays fast. Errors meant for users (:class:`PvtDeployError`) become one line on
stderr and a non-zero exit code; so does an :class:`OSError`, the machine's files, disks and network failing
(``--verbose`` adds its traceback).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import traceback

import typer

from pvt_deploy.cli import spelling
from pvt_deploy.errors import BackendUnavailableError, InputError, PvtDeployError, cli_spelling
from pvt_deploy.utils import one_line
from pvt_deploy.utils.files import OutputError, command_streams, printable_streams, said
from pvt_deploy.utils.signals import sigterm_raises

app = typer.Typer(
    name="pvt-deploy",
    cls=spelling.Group,
    help="Export, optimise and run Pyramid Vision Transformer models (PVT v1/v2) with PyTorch, "
    "ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fold_option_names() -> None:
    """On an 80-column terminal Typer's help tables cut long flags to ``--allow-parity-fail…``, which
    leaves the flag impossible to type; make the option-name cells fold onto a second line instead.
    (Typer builds those cells with its module-level highlighters; a Typer without them is left as is.)"""
    try:
        from typer import rich_utils
    except ImportError:  # Typer without rich: plain Click help, which wraps
        return
    for name in ("highlighter", "negative_highlighter", "_get_parameter_help"):
        original = getattr(rich_utils, name, None)
        if original is None or getattr(original, "folds", False):
            continue

        def folded(*args: object, _original: object = original, **kwargs: object) -> object:
            text = _original(*args, **kwargs)  # type: ignore[operator]
            with contextlib.suppress(AttributeError):
                text.overflow = "fold"
            return text

        folded.folds = True  # type: ignore[attr-defined]
        setattr(rich_utils, name, folded)
    _no_type_for_flags()


def _no_type_for_flags() -> None:
    """Typer 0.2x prints a type after every option, ``<bool>`` after an on/off flag too, which reads
    as if ``--half true`` were the way to write it (it is an error). A flag shows no type."""
    try:
        from typer.core import TyperOption
    except ImportError:
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "skips_flags", False):
        return

    def display_type_rich(self: TyperOption, *args: object, **kwargs: object) -> str | None:
        if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
            return None
        return original(self, *args, **kwargs)  # type: ignore[no-any-return]

    display_type_rich.skips_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_verbose = False  # --verbose given to the command running (_root)


def _print_version(value: bool) -> None:
    if value:
        from pvt_deploy import __version__

        typer.echo(f"pvt-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
) -> None:
    """Export, optimise and run Pyramid Vision Transformer models (PVT v1/v2)."""
    import logging

    global _verbose
    _verbose = verbose

    from rich.logging import RichHandler

    class OneLine(logging.Formatter):  # a warning's file name that holds a newline: written new\nline.jpg
        def formatMessage(self, record: logging.LogRecord) -> str:
            return one_line(super().formatMessage(record))

    handler = RichHandler(show_time=False, show_path=False, markup=False,
                          console=__import__("rich.console").console.Console(stderr=True))
    handler.setFormatter(OneLine("%(message)s"))  # a --verbose traceback keeps its lines (formatException)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def _register() -> None:
    # Each module adds its commands to ``app``; order here is the order in --help.
    from pvt_deploy.cli import bench, check, doctor, export, infer, info, models, val

    for module in (export, infer, val, bench, check, info, models, doctor):
        module.register(app)
    for command in app.registered_commands:
        # ``pvt-deploy --help`` lists each command by its docstring's first paragraph, where Typer (Rich
        # markup) keeps the docstring's line breaks: "optionally with FP16 and" / "INT8 variants, ..."
        if command.short_help is None and command.callback is not None:
            first = (command.help or inspect.getdoc(command.callback) or "").split("\n\n")[0]
            command.short_help = " ".join(first.split()) or None
    spelling.answer_foreign_options(app)


_register()


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line + exit code.

    An interrupt exits 130 after Ctrl-C and 143 after SIGTERM (128 + 15: what a shell reports for a
    process SIGTERM ended, so a supervisor sees the stop it asked for, not a user's Ctrl-C)."""
    # the process's own entry (the console script, python -m pvt_deploy), not a caller that goes on
    entry = sys._getframe(1).f_globals.get("__name__") == "__main__"
    try:
        _main()
    except SystemExit as e:
        if entry:
            _leave_calls_in_flight(e.code)
        raise
    if entry:
        _leave_calls_in_flight(0)


def _leave_calls_in_flight(code: int | str | None) -> None:
    """Exit at once, outputs already finished, when a pipeline thread is still inside a call.

    A stopped run waits a few seconds for the inference call in flight (``tasks.pipeline._JOIN_S``),
    then leaves it: a PyTorch forward at a large size runs for longer. Python's own exit would then
    end that daemon thread as the call returns into the interpreter, which unwinds it through
    PyTorch's or ONNX Runtime's C++ frames: "terminate called without an active exception", SIGABRT,
    exit 134 instead of 130 / 143. Nothing is left to do by then (the main thread has finalised the
    outputs and printed the summary), so the process ends without the interpreter's teardown. Only
    where ``main`` is the process's entry point: a program (a test) that calls it in-process goes on."""
    if not any(t.daemon and t.name.startswith("pvt-deploy-") for t in threading.enumerate()):
        return
    if not isinstance(code, int):  # as Python's exit treats them: None is success, a message is printed
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main() -> None:
    printable_streams()
    if len(sys.argv) < 2 or {"-h", "--help"} & set(sys.argv[1:]):
        _fold_option_names()  # only for help: importing Typer's rich help costs every command ~0.14 s
    # SIGTERM (kill, timeout, docker stop) stops a command as Ctrl-C does: the mp4 gets its trailer,
    # the JSON Lines its name, instead of the default action leaving .part files
    with sigterm_raises(KeyboardInterrupt) as sigterm, command_streams(), cli_spelling():
        try:
            app()  # standalone mode: usage errors print and exit 2 inside, an interrupt exits 130
        except PvtDeployError as e:
            _say(f"error: {e}", typer.colors.RED)
            sys.exit(e.exit_code)
        except RuntimeError as e:  # a torch built against another NumPy major: every array it is handed
            if "Numpy is not available" not in str(e):  # fails so (the Jetson wheels for CUDA <= 12.6 under NumPy 2)
                raise
            import torch

            from pvt_deploy.doctor import torch_numpy

            check = torch_numpy(torch)  # doctor's PyTorch row, which says which NumPy mends it
            why = f"PyTorch {torch.__version__} {check.summary}" if check else str(e)
            _say(f"error: {why} ({check.hint if check else 'pvt-deploy doctor'})", typer.colors.RED)
            sys.exit(BackendUnavailableError.exit_code)
        except OSError as e:
            # the machine's files, disks and network: a name too long, a disk or a network mount failing, a
            # folder gone mid-run, the output (--json > FILE) on a full disk. The error names the file, which
            # the user can mend; the traceback only says where in pvt-deploy, for --verbose
            if _verbose:
                with contextlib.suppress(OSError):  # stderr failing too: the exit code says it
                    traceback.print_exception(e)
            why = f"cannot write the output: {said(e)}" if isinstance(e, OutputError) else said(e)
            if e.filename is None and not isinstance(e, OutputError):
                why += " (pvt-deploy --verbose COMMAND ... shows where)"
            _say(f"error: {why}", typer.colors.RED)
            sys.exit(InputError.exit_code)
        except (KeyboardInterrupt, SystemExit) as e:
            # SystemExit 130: Typer's answer to an interrupt inside a command, which says nothing
            if isinstance(e, SystemExit) and e.code != 130:
                raise
            _say("terminated" if sigterm.is_set() else "interrupted", typer.colors.YELLOW)
            sys.exit(143 if sigterm.is_set() else 130)


def _say(line: str, colour: str) -> None:
    """The command's last line on stderr (its error, or that it was stopped), which is all the failure said there.
    Where stderr itself fails (``2> FILE`` on a full or failing disk) the line is lost, not the exit code: writing
    it raised from inside the handler, Python's answer to which is exit 1 (a failure of the tool), so that
    ``pvt-deploy info missing.onnx 2> log`` on a full disk exited 1, not 2, and an interrupt 1, not 130.
    One line: a file's name in it that holds a newline is written ``new\\nline.mp4`` (utils.one_line)."""
    with contextlib.suppress(OSError):  # an OutputError (utils.files.command_streams)
        typer.secho(one_line(line), fg=colour, err=True)


if __name__ == "__main__":
    main()
