"""The manifest (contents, hashes, weights record), reusing an export folder, and atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from export_fixtures import Artifact

from pvt_deploy.manifest import read_manifest, verify_file
from pvt_deploy.tasks.preprocess import preprocess_spec
from pvt_deploy.utils.files import sha256_file

pytest_plugins = ["export_fixtures"]


def test_manifest_contents(det_artifact) -> None:
    m = read_manifest(det_artifact.folder)
    assert m["format_version"] == 1
    assert (m["model"], m["backbone"], m["task"]) == ("pvt_v2_b0", "pvt_v2_b0", "detect")
    assert len(m["classes"]) == 80 and m["classes"][0] == "person"
    assert m["weights"] == {"source": str(det_artifact.weights), "sha256": sha256_file(det_artifact.weights),
                            "random_init": False, "load_report": m["weights"]["load_report"]}
    assert m["inputs"] == [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}]
    assert m["outputs"] == [{"name": "boxes", "dtype": "float32", "shape": ["batch", "num_boxes", 4]},
                            {"name": "scores", "dtype": "float32", "shape": ["batch", "num_boxes", 80]}]
    module = det_artifact.module
    assert m["preprocess"] == preprocess_spec("detect", (160, 160), dynamic=True, mean=module.mean_values,
                                              std=module.std_values)
    assert m["postprocess"] == {"nms": "host", "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100,
                                "pre_nms_topk": 1000}
    assert m["dynamic"] == {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]}
    assert m["export"]["exporter"] == "torchscript" and m["export"]["opset"] == 17
    assert m["export"]["nodes_after"] < m["export"]["nodes_before"]
    assert {"torch", "onnx", "onnxruntime", "onnxslim"} <= set(m["versions"])
    precisions = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8",
                  "model.int8.trt.onnx": "int8"}
    assert {k: v["precision"] for k, v in m["files"].items()} == precisions
    for name, entry in m["files"].items():
        path = det_artifact.folder / name
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
        verify_file(det_artifact.folder, m, name)
    assert set(m["parity"]) == set(m["files"])


def test_random_weights_are_recorded_loudly(cls_artifact) -> None:
    m = read_manifest(cls_artifact.folder)
    assert m["weights"] == {"source": None, "sha256": None, "random_init": True}
    assert m["task"] == "classify" and len(m["classes"]) == 1000
    assert m["parity"]["model.onnx"]["passed"] and not m["parity"]["model.onnx"]["agreement_gated"]


@pytest.mark.parametrize("entry", ["export", "export_onnx"])
def test_one_export_reads_each_graph_once_to_hash_it(cls_artifact, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """Adding --half to an export hashed model.onnx twice (its manifest check, then the parity session's
    cache key) and model.fp16.onnx twice (its manifest entry, then that key): two full reads of each
    100-250 MB graph. One export reads each once, through export() and through export_onnx() called
    from Python (which still read each twice)."""
    import hashlib

    import pvt_deploy.export

    export = getattr(pvt_deploy.export, entry)
    real, digests = hashlib.sha256, []

    class Counting:  # every digest taken during the export
        def __init__(self, *args: bytes) -> None:
            self._h = real(*args)

        def update(self, data: bytes) -> None:
            self._h.update(data)

        def hexdigest(self) -> str:
            digests.append(self._h.hexdigest())
            return digests[-1]

    folder = tmp_path / "reuse"
    shutil.copytree(cls_artifact.folder, folder)
    monkeypatch.setattr(hashlib, "sha256", Counting)
    assert export(folder, half=True) == folder
    monkeypatch.undo()
    files = read_manifest(folder)["files"]
    for name in ("model.onnx", "model.fp16.onnx"):
        assert files[name]["sha256"] == sha256_file(folder / name)
        assert digests.count(files[name]["sha256"]) == 1, name


def test_reusing_an_export_folder_adds_variants(cls_artifact, tmp_path: Path) -> None:
    from pvt_deploy.export import export_onnx

    folder = tmp_path / "reuse"
    shutil.copytree(cls_artifact.folder, folder)
    before = read_manifest(folder)
    assert export_onnx(folder, half=True) == folder
    after = read_manifest(folder)
    assert after["files"]["model.onnx"] == before["files"]["model.onnx"]  # reused, not re-exported
    assert after["files"]["model.fp16.onnx"]["sha256"] == sha256_file(folder / "model.fp16.onnx")
    report = after["parity"]["model.fp16.onnx"]
    assert report["reference"] == "model.onnx (onnxruntime)" and report["passed"]
    assert report["outputs"]["logits"]["cosine"] > 0.9999
    assert after["parity"]["model.onnx"] == before["parity"]["model.onnx"]
    meta = {p.key: p.value for p in onnx.load(str(folder / "model.fp16.onnx")).metadata_props}
    assert json.loads(meta["pvt_deploy"])["task"] == "classify"


def test_crash_while_writing_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the middle of writing model.onnx leaves neither it, a temp file, nor a manifest."""
    from pvt_deploy.export import export_onnx

    def half_written(model: onnx.ModelProto, path: str, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(model.SerializeToString()[:1000])
        raise OSError(28, "No space left on device")

    out = tmp_path / "crash"
    out.mkdir()
    old = '{"task": "classify", "format_version": 1}'
    (out / "manifest.json").write_text(old)  # an older export
    monkeypatch.setattr(onnx, "save_model", half_written)
    with pytest.raises(OSError, match="No space left"):
        export_onnx("pvt_v2_b0-cls", out, imgsz=64, simplify=False, parity=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] and (out / "manifest.json").read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["crash"]  # no build folder left beside it


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (caches included) -> sha256."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _previous_export(cls_artifact: Artifact, tmp_path: Path) -> Path:
    """A full earlier export (model, manifest, parity cache) plus an engine and a file of the user's."""
    folder = tmp_path / "prev"
    shutil.copytree(cls_artifact.folder, folder)
    (folder / "model.engine").write_bytes(b"an engine built on a GPU")
    (folder / "notes.txt").write_text("my notes\n")
    return folder


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_reexport_keeps_the_previous_export(failure: BaseException, cls_artifact: Artifact, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure (or Ctrl-C) late in a re-export, after the new model.onnx exists, leaves every file of
    the export that was there byte for byte, and no build folder."""
    from pvt_deploy.export import export_onnx, precision

    folder = _previous_export(cls_artifact, tmp_path)
    before = _snapshot(folder)
    reached: list[Path] = []

    def fail(model: onnx.ModelProto) -> object:
        reached.extend(tmp_path.glob(".prev.pvt-new-*/model.onnx"))  # the new graph was written, beside
        raise failure

    monkeypatch.setattr(precision, "convert_fp16", fail)
    with pytest.raises(type(failure)):
        export_onnx("pvt_v2_b0-cls", folder, imgsz=32, half=True, simplify=False, parity=False)
    assert reached, "the failure came before the new model.onnx was written"
    assert _snapshot(folder) == before
    assert read_manifest(folder)["model"] == "pvt_tiny-cls"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]


def test_reexport_replaces_the_export_and_keeps_the_users_files(cls_artifact: Artifact, tmp_path: Path) -> None:
    from pvt_deploy.export import export_onnx

    folder = _previous_export(cls_artifact, tmp_path)
    (folder / "calib").mkdir()
    (folder / "calib" / "a.txt").write_text("x")
    assert export_onnx("pvt_v2_b0-cls", folder, imgsz=32, simplify=False, parity=False) == folder
    m = read_manifest(folder)
    assert m["model"] == "pvt_v2_b0-cls" and set(m["files"]) == {"model.onnx"}
    verify_file(folder, m, "model.onnx")
    # the old pvt_tiny-cls variants and engine are gone; the user's files came along
    assert sorted(p.name for p in folder.iterdir()) == ["calib", "manifest.json", "model.onnx", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "my notes\n" and (folder / "calib" / "a.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]


def test_reexport_that_fails_parity_keeps_the_previous_export(cls_artifact: Artifact, tmp_path: Path) -> None:
    from pvt_deploy.errors import ParityError
    from pvt_deploy.export import export_onnx

    folder = _previous_export(cls_artifact, tmp_path)
    before = _snapshot(folder)
    with pytest.raises(ParityError):
        export_onnx("pvt_v2_b0-cls", folder, imgsz=32, simplify=False, parity_tolerance=1e-12)
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]


def test_ctrl_c_during_the_swap_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between the renames of the swap is held until the new folder is in place."""
    import os
    import signal

    from pvt_deploy.export import onnx as export_onnx_module

    old, new = tmp_path / "out", tmp_path / ".out.pvt-new-x"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / "manifest.json").write_text(text)
    (old / "notes.txt").write_text("mine")
    rename = os.rename

    def interrupted_rename(src: str, dst: str) -> None:
        rename(src, dst)
        signal.raise_signal(signal.SIGINT)  # to this thread, synchronously: a process-wide kill may land later

    # as in a terminal: a job started in the background of a script (CI) inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(os, "rename", interrupted_rename)
    try:
        with pytest.raises(KeyboardInterrupt):
            export_onnx_module._export_folder(old).swap_in(new)
    finally:
        monkeypatch.setattr(os, "rename", rename)
        signal.signal(signal.SIGINT, previous)
    assert (old / "manifest.json").read_text() == "new" and (old / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_extend_removes_only_what_it_added(cls_artifact: Artifact, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.export import export_onnx
    from pvt_deploy.export import onnx as export_onnx_module

    folder = _previous_export(cls_artifact, tmp_path)
    before = _snapshot(folder)

    def fail(folder: Path, *args: object, **kwargs: object) -> object:
        assert (folder / "model.fp16.onnx").is_file()  # written, not yet gated
        raise RuntimeError("parity crashed")

    monkeypatch.setattr(export_onnx_module, "_extend_parity", fail)
    with pytest.raises(RuntimeError, match="parity crashed"):
        export_onnx(folder, half=True)
    after = _snapshot(folder)
    assert not (folder / "model.fp16.onnx").exists()
    assert {k: v for k, v in after.items() if not k.startswith(".ort-cache")} == \
        {k: v for k, v in before.items() if not k.startswith(".ort-cache")}  # the cache may gain an entry


def test_an_extension_killed_while_making_a_variant_again_leaves_every_file_as_it_was(
        cls_artifact: Artifact, tmp_path: Path) -> None:
    """``export --model FOLDER --int8 --int8-cpu static`` on an export whose CPU INT8 file is dynamic makes
    that file again. SIGKILLed while it did (out of memory, ``kill -9``), it left the good INT8 file moved
    aside under a hidden name and the manifest listing a ``model.int8.onnx`` that was gone, so
    ``infer --precision int8`` failed, and 240 MB of scratch files in the folder that no later run removed.
    Now every file is as it was, and the next run clears what the killed one left."""
    import os

    from pvt_deploy.export import export_onnx

    folder = tmp_path / "ext"
    shutil.copytree(cls_artifact.folder, folder)
    export_onnx(folder, int8=True, int8_flavour="cpu", parity=False)  # a classifier's auto: dynamic
    assert read_manifest(folder)["precision"]["int8"]["cpu"]["method"] == "dynamic"
    before = {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}

    # killed once the new INT8 file is written into its temporary file, before that is renamed
    _kill_where_held(CLI_HELD_WRITING_INT8, "export", "--model", str(folder), "--int8", "--int8-flavour", "cpu",
                     "--int8-cpu", "static", "--no-parity")
    assert [name for _, _, names in os.walk(folder) for name in names  # where it was killed: mid-write
            if ".part" in name and name.startswith(".model.int8.onnx.")]

    assert {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()} == before
    manifest = read_manifest(folder)
    for name in manifest["files"]:
        verify_file(folder, manifest, name)
    export_onnx(folder, int8=True, int8_flavour="cpu", int8_cpu="static", parity=False)  # the next run
    manifest = read_manifest(folder)
    assert manifest["precision"]["int8"]["cpu"]["method"] == "static"
    verify_file(folder, manifest, "model.int8.onnx")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".ort-cache"]


def test_an_extension_whose_folder_is_exported_again_meanwhile_adds_nothing(
        cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh export into the folder while ``export --model FOLDER --half`` makes its variant replaces the
    folder, the extension's build folder inside it included. The same export made again gives the same
    model.onnx, so the extension went on to move files that were gone (a traceback, FileNotFoundError);
    now it says in one line that nothing was added, and the new export is left as it is."""
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.export import export_onnx
    from pvt_deploy.export import onnx as export_onnx_module

    folder = tmp_path / "ext"
    shutil.copytree(cls_artifact.folder, folder)
    make_variants = export_onnx_module._make_variants

    def exported_again_meanwhile(staging: Path, *args: object, **kwargs: object) -> object:
        made = make_variants(staging, *args, **kwargs)
        with export_onnx_module._replacing(folder) as new:  # the other export's swap, same model.onnx
            for name in ("model.onnx", "manifest.json"):
                shutil.copy(folder / name, new / name)
        return made

    monkeypatch.setattr(export_onnx_module, "_make_variants", exported_again_meanwhile)
    with pytest.raises(PvtDeployError, match="nothing was added"):
        export_onnx(folder, half=True, parity=False)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx"]
    assert "model.fp16.onnx" not in read_manifest(folder)["files"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names locked files through /proc")
@pytest.mark.parametrize("lock", [1, 2], ids=["to-make-the-variants", "to-move-them-in"])
def test_an_extension_whose_folder_cannot_be_locked_adds_nothing(
        lock: int, cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any OSError of the export folder's lock read as 'no locks on this file system', and the extension went
    on unlocked, where another extension of the folder may list its variants in the manifest at the same
    time and one of them lose the other's. Another error than no locks (EIO) of the lock taken to make the
    variants' build folder, or of the one to move them in, is one line saying so, and the folder is as it was."""
    import errno
    import fcntl
    import os

    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.export import export_onnx

    folder = tmp_path / "ext"
    shutil.copytree(cls_artifact.folder, folder)
    before = _snapshot(folder)
    real, times = fcntl.flock, [0]

    def flock(fd: int, operation: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")) == folder:
            times[0] += 1
            if times[0] == lock:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    error = (f"cannot write to {folder} (Input/output error)" if lock == 1 else
             f"{folder}: cannot lock it to add the variants (Input/output error); nothing was added")
    with pytest.raises(PvtDeployError) as refused:
        export_onnx(folder, half=True, parity=False)
    assert str(refused.value) == error
    assert _snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in cls_artifact.folder.iterdir())


def test_an_extension_whose_manifest_cannot_be_written_puts_every_file_back(
        cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk when the extension's manifest is written, after its variants were moved in: the files
    they replaced come back and the new ones go, so the folder is byte for byte as it was."""
    import errno

    from pvt_deploy.export import export_onnx
    from pvt_deploy.export import onnx as export_onnx_module

    folder = tmp_path / "ext"
    shutil.copytree(cls_artifact.folder, folder)
    export_onnx(folder, half=True, parity=False)
    manifest = read_manifest(folder)
    manifest["parity"]["model.fp16.onnx"] = {"passed": False}  # as --allow-parity-failure keeps it: made again
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}
    fp16_inode = (folder / "model.fp16.onnx").stat().st_ino

    def full_disk(where: Path, manifest: dict) -> Path:
        assert (where / "model.int8.onnx").is_file()  # the new files are in place ...
        assert (where / "model.fp16.onnx").stat().st_ino != fp16_inode  # ... the FP16 one made again too
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_onnx_module, "write_manifest", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_onnx(folder, half=True, int8=True, int8_flavour="cpu", parity=False)
    assert {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()} == before
    assert (folder / "model.fp16.onnx").stat().st_ino == fp16_inode  # the file that was there, not a copy
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".ort-cache"]


def test_lone_onnx_of_a_random_weights_export_says_so(cls_artifact: Artifact, tmp_path: Path) -> None:
    """The weights provenance travels in the ONNX metadata: a copied-out model.onnx still says RANDOM."""
    from pvt_deploy.api import Model
    from pvt_deploy.runtimes.loader import describe_artifact

    lone = tmp_path / "lone.onnx"
    shutil.copy(cls_artifact.folder / "model.onnx", lone)
    meta = {p.key: p.value for p in onnx.load(str(lone)).metadata_props}
    assert json.loads(meta["pvt_deploy"])["weights"] == {"source": None, "sha256": None, "random_init": True}
    facts = describe_artifact(lone)
    assert facts["kind"] == "ONNX file (manifest from its metadata)"
    assert facts["weights"] == {"source": None, "random_init": True, "seed": None}  # a module's init: no seed
    assert Model(lone).random_weights


def test_lone_onnx_of_a_real_weights_export_names_them(det_artifact: Artifact, tmp_path: Path) -> None:
    from pvt_deploy.runtimes.loader import describe_artifact

    lone = tmp_path / "lone.onnx"
    shutil.copy(det_artifact.folder / "model.onnx", lone)
    assert describe_artifact(lone)["weights"] == {"source": str(det_artifact.weights), "random_init": False,
                                                  "seed": None}


#: The start of a child Python that a test SIGKILLs at a point of its own choosing, not at a moment found by
#: polling (a file that lives 70 ms is missed on a loaded machine): the script calls ``held()`` there, which says
#: so on the pipe whose write end is ``argv[1]`` and waits for the kill (it ends, with 3, if the test is gone).
HELD = """
import os, sys
_said = int(sys.argv[1])
def held():
    os.write(_said, b"held\\n")
    sys.stdin.read()
    os._exit(3)
"""

#: ``pvt-deploy argv[2:]``, held as the temporary file of model.int8.onnx is written, before it is renamed.
CLI_HELD_WRITING_INT8 = HELD + """
import onnx
save_model = onnx.save_model
def writes_int8(model, f, *args, **kwargs):
    save_model(model, f, *args, **kwargs)
    name = os.path.basename(str(f))
    if name.startswith(".model.int8.onnx.") and ".part" in name:
        held()
onnx.save_model = writes_int8
sys.argv = ["pvt-deploy", *sys.argv[2:]]
from pvt_deploy.cli import main
main()
"""


def _kill_where_held(script: str, *args: str) -> None:
    """Run ``script`` (one of :data:`HELD`) with ``args`` in a child Python and SIGKILL it once it is held:
    a real ``kill -9`` of a real process, at the point the script chose."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import tempfile

    read, write = os.pipe()
    with tempfile.TemporaryFile() as err:  # a file: a pipe the child filled would block it before the point
        try:
            child = subprocess.Popen([sys.executable, "-c", script, str(write), *args], pass_fds=(write,),
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        finally:
            os.close(write)  # the child's copy alone: the pipe ends (EOF) when the child does
        held = False
        try:
            with os.fdopen(read, "rb") as said:
                held = bool(select.select([said], [], [], 240)[0]) and said.readline() == b"held\n"
            if held:
                child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate()  # closes its stdin: a child not killed (not held) cannot wait for ever
        err.seek(0)
        assert held, f"the child ended ({child.returncode}) before it was held: {err.read().decode(errors='replace')}"
    assert child.returncode == -signal.SIGKILL


LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)  # as a running export holds its staging folder
print("locked", flush=True)
sys.stdin.read()
"""


def test_export_removes_staging_folders_of_killed_exports(tmp_path: Path) -> None:
    """A SIGKILL in mid-export leaves its hidden build folder; the next export into the same folder
    deletes it, whatever host, container or PID made it (the lock a running export holds on it is free),
    but not one whose export still runs, nor one of another folder."""
    import os
    import subprocess
    import sys

    from pvt_deploy.export import onnx as export_onnx_module
    from pvt_deploy.export.swap import owner

    host = owner().split("-")[0]
    child = subprocess.Popen(["true"])  # noqa: S607
    child.wait()
    gone_pid = child.pid  # reaped: no such process any more
    killed = tmp_path / f".out.pvt-new-{host}-{gone_pid}-ab12"
    reused = tmp_path / f".out.pvt-new-{host}-{os.getpid()}-cd34"  # its PID now runs something else
    elsewhere = tmp_path / f".out.pvt-new-0badf00d-{gone_pid}-ef56"  # another host name: a killed container's
    running = tmp_path / f".out.pvt-new-0badf00d-{gone_pid}-9a9b"
    other_target = tmp_path / f".other.pvt-new-{host}-{gone_pid}-0a0b"
    for folder in (killed, reused, elsewhere, running, other_target):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(running)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with export_onnx_module._replacing(tmp_path / "out") as staging:
            assert staging.name.startswith(f".out.pvt-new-{host}-{os.getpid()}-")
            (staging / "manifest.json").write_text("{}")
    finally:
        holder.communicate(timeout=30)
    assert not any(f.exists() for f in (killed, reused, elsewhere))
    assert all((f / "model.onnx").is_file() for f in (running, other_target))
    assert (tmp_path / "out" / "manifest.json").read_text() == "{}"


#: An export into ``argv[2]`` in a container, held once its build folder holds the new model.onnx.
CONTAINER_EXPORT = HELD + """
import socket
socket.gethostname = lambda: "3f2a9c81d0e4"  # in `docker run`, the container's id: new in every container
from pvt_deploy.export import export_onnx, graph
save_model = graph.save_model
def saves(model, path):
    save_model(model, path)
    if os.path.basename(path) == "model.onnx" and os.path.basename(os.path.dirname(path)).startswith(".out.pvt-new-"):
        held()
graph.save_model = saves
export_onnx("pvt_v2_b0-cls", sys.argv[2], imgsz=32, simplify=False, parity=False)
"""


def test_the_build_folder_of_an_export_killed_in_a_container_is_cleared(tmp_path: Path) -> None:
    """An export killed by ``kill -9`` or the OOM killer inside ``docker run`` left its build folder
    (hundreds of MB for a real model) beside the output for ever: it was named by a host that no later
    container has, so every next export took it for a live export of another machine. Now the next
    export finds that no live export holds it, and deletes it."""
    from pvt_deploy.export import onnx as export_onnx_module

    out = tmp_path / "out"
    _kill_where_held(CONTAINER_EXPORT, str(out))  # killed once its build folder holds the new model.onnx
    left = list(tmp_path.glob(".out.pvt-new-*"))
    assert len(left) == 1 and (left[0] / "model.onnx").is_file() and not out.exists()
    with export_onnx_module._replacing(out) as staging:  # the next export, in the next container
        (staging / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_changed_file_names_the_command_that_rebuilds_this_export(cls_artifact: Artifact, tmp_path: Path) -> None:
    """The hint re-exports into the user's folder at the export's size, not a default one elsewhere."""
    from pvt_deploy.errors import InputError

    folder = tmp_path / "my export"
    shutil.copytree(cls_artifact.folder, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    manifest = read_manifest(folder)
    with pytest.raises(InputError, match="sha256 differs") as e:
        verify_file(folder, manifest, "model.onnx")
    size = manifest["export"]["imgsz"]
    assert e.value.hint.startswith(f"pvt-deploy export --model {manifest['model']} --imgsz {size[0]}")
    assert e.value.hint.endswith(f"-o '{folder}'")
    assert ("--int8" in e.value.hint) == any(".int8." in name for name in manifest["files"])


def _reexport_params(command: str) -> dict:
    """The options ``pvt-deploy export`` would run with for a suggested command line (parsed by the CLI)."""
    import shlex

    import typer

    from pvt_deploy.cli import app

    argv = shlex.split(command)
    assert argv[:2] == ["pvt-deploy", "export"], command
    export = typer.main.get_command(app).commands["export"]  # type: ignore[attr-defined]
    return export.make_context("export", argv[2:]).params


def test_the_rebuild_command_keeps_the_options_that_shape_the_graph(cls_artifact: Artifact, tmp_path: Path) -> None:
    """Graph NMS, the segmentation output, batch, size range, static shapes, opset, exporter and task
    come back as the export used them (a default is left out, so the usual command stays short)."""
    from pvt_deploy.export import onnx as exporter
    from pvt_deploy.manifest import _EXPORT_DEFAULTS, reexport_command

    assert _EXPORT_DEFAULTS == {"exporter": "torchscript", "opset": exporter.MIN_OPSET,
                                "dynamo_opset": exporter.DYNAMO_MIN_OPSET, "max_batch": exporter.DEFAULT_MAX_BATCH,
                                "min_size": exporter.DEFAULT_MIN_SIZE, "max_size": exporter.DEFAULT_MAX_SIZE,
                                "nms": "host", "seg_output": "logits"}
    base = read_manifest(cls_artifact.folder)
    usual = reexport_command(tmp_path, base)
    for option in ("--batch", "--min-size", "--max-size", "--static", "--opset", "--exporter", "--task", "--nms",
                   "--seg-output", "--no-simplify"):
        assert option not in usual, usual
    det = {**base, "model": "pvt_v2_b0", "task": "detect", "export": {**base["export"], "imgsz": [320, 320]},
           "postprocess": {"nms": "graph", "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}}
    seg = {**base, "model": "pvt_v2_b0-seg", "task": "segment", "postprocess": {"seg_output": "argmax"}}
    static = {**base, "dynamic": None, "export": {**base["export"], "imgsz": [320, 256]},
              "inputs": [{"name": "images", "dtype": "float32", "shape": [2, 3, 320, 256]}]}
    ranged = {**base, "dynamic": {"batch": [1, 4], "height": [64, 320], "width": [64, 320]},
              "export": {**base["export"], "imgsz": [128, 128]}}
    dynamo = {**base, "export": {**base["export"], "exporter": "dynamo", "opset": 18}}
    opset = {**base, "export": {**base["export"], "opset": 19, "simplified": False}}
    task = {**base, "model": "pvt_v2_b0", "task": "segment"}
    cases = [(det, {"nms": "graph", "imgsz": "320"}), (seg, {"seg_output": "argmax"}),
             (static, {"dynamic": False, "batch": 2, "imgsz": "320,256"}),
             (ranged, {"batch": 4, "min_size": 64, "max_size": 320, "dynamic": True}),
             (dynamo, {"exporter": "dynamo", "opset": None}),  # no --opset: dynamo's own lowest, 18
             (opset, {"opset": 19, "simplify": False}), (task, {"task": "segment"})]
    for manifest, expected in cases:
        params = _reexport_params(reexport_command(tmp_path, manifest))
        assert {k: params[k] for k in expected} == expected, (expected, params)
        assert params["output"] == tmp_path
    # the range the rebuilt graph declares is the one recorded (the exporter's own rule)
    params = _reexport_params(reexport_command(tmp_path, ranged))
    assert list(exporter._size_range(params["min_size"], params["max_size"], (128, 128))) == [64, 320]
    default_range = {**ranged, "dynamic": {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]}}
    assert "size" not in reexport_command(tmp_path, default_range)
    grown = {**ranged, "dynamic": {"batch": [1, 8], "height": [32, 1600], "width": [32, 1600]},
             "export": {**base["export"], "imgsz": [1600, 1600]}}  # the default maximum grows to hold --imgsz
    assert "--max-size" not in reexport_command(tmp_path, grown)


def test_the_rebuild_command_keeps_the_int8_method_where_the_task_changes(cls_artifact: Artifact,
                                                                        tmp_path: Path) -> None:
    """``--int8-cpu auto`` is static for detectors and segmenters, dynamic for the others; the rebuild line
    names the method where auto would give another one. It judged that by the recorded task, not the one
    rebuilt: a detector's static INT8 rebuilt with ``--task features`` left the option out, and the
    features export made a dynamic graph; a classifier's dynamic one rebuilt as a detector got no option
    and a static graph."""
    from pvt_deploy.manifest import reexport_command

    base = read_manifest(cls_artifact.folder)
    files = {**(base.get("files") or {}), "model.int8.onnx": {}}

    def method(task: str, recorded: str, given: dict[str, str]) -> str:
        model = {"detect": "pvt_v2_b0", "classify": "pvt_v2_b0-cls"}[task]
        manifest = {**base, "model": model, "task": task, "files": files,
                    "precision": {"int8": {"cpu": {"method": recorded}}}}
        params = _reexport_params(reexport_command(tmp_path, manifest, given))
        return str(params["int8_cpu"])

    assert method("detect", "static", {}) == "auto"  # auto gives it again
    assert method("detect", "static", {"--task": "features"}) == "static"
    assert method("classify", "dynamic", {}) == "auto"
    assert method("classify", "dynamic", {"--task": "detect"}) == "dynamic"
    assert method("detect", "dynamic", {"--task": "segment"}) == "dynamic"


def test_the_rebuild_command_names_a_downloaded_checkpoint_by_its_url(cls_artifact: Artifact, tmp_path: Path) -> None:
    """An export made from a URL (``--weights official`` too) records the cached file and the URL. The line that
    exports it again (``export --model exports/NAME`` with nothing to add, a folder without model.onnx, graph
    options it ignores) gave the cache's path, ``--weights ~/.cache/pvt-deploy/weights/pvt_v2_b0.pth``, which
    fails once the file has left the cache (or on another machine), where the URL fetches it again."""
    from pvt_deploy.manifest import reexport_command

    base = read_manifest(cls_artifact.folder)
    url = "https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth"
    weights = {**base["weights"], "random_init": False, "sha256": "0" * 64}
    cached = {**base, "weights": {**weights, "source": str(tmp_path / "cache" / "pvt_tiny.pth"), "url": url}}
    assert _reexport_params(reexport_command(tmp_path, cached))["weights"] == url
    local = {**base, "weights": {**weights, "source": "ckpt.pth"}}
    assert _reexport_params(reexport_command(tmp_path, local))["weights"] == "ckpt.pth"


def test_export_recovers_the_old_export_a_killed_swap_left_aside(tmp_path: Path) -> None:
    """Killed between the renames of a swap, an export leaves the previous one in a hidden ``pvt-old``
    folder with the user's files in it. The next export gets them back: into the folder it replaces,
    or, where the kill came before the new folder was in place, by putting the old one back first."""
    import subprocess

    from pvt_deploy.export import onnx as export_onnx_module
    from pvt_deploy.export.swap import owner

    host = owner().split("-")[0]
    child = subprocess.Popen(["true"])  # noqa: S607
    child.wait()
    for name, target_there in (("a", True), ("b", False)):
        target = tmp_path / name
        aside = tmp_path / f".{name}.pvt-old-{host}-{child.pid}-ab12"
        aside.mkdir()
        (aside / "manifest.json").write_text("old")
        (aside / "notes.txt").write_text("mine")
        if target_there:
            target.mkdir()
            (target / "manifest.json").write_text("newer")
        with export_onnx_module._replacing(target) as staging:
            (staging / "manifest.json").write_text("new")
        assert (target / "manifest.json").read_text() == "new"
        assert (target / "notes.txt").read_text() == "mine"
        assert not aside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_concurrent_swaps_into_one_folder_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second export finishing while the first is between the renames of its swap waits for it,
    instead of swapping into the gap: that stranded the first one's old folder (with the user's
    files) in a hidden ``pvt-old`` folder and failed it."""
    import os
    import threading

    from pvt_deploy.export import onnx as export_onnx_module

    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    folder = export_onnx_module._export_folder(target)
    stagings = []
    for n in range(2):
        stagings.append(folder.new_staging())
        (stagings[n] / "manifest.json").write_text(str(n))
    errors: list[BaseException] = []

    def second() -> None:
        try:
            folder.swap_in(stagings[1])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    other = threading.Thread(target=second)
    rename = os.rename

    def rename_then_let_the_other_run(src: str, dst: str) -> None:
        rename(src, dst)
        if threading.current_thread() is threading.main_thread() and not other.is_alive() and ".pvt-old-" in str(dst):
            other.start()
            other.join(timeout=1.0)  # it runs to its end here unless it waits for this swap

    monkeypatch.setattr(os, "rename", rename_then_let_the_other_run)
    folder.swap_in(stagings[0])
    other.join()
    assert not errors, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "notes.txt"]
    assert (target / "manifest.json").read_text() == "1" and (target / "notes.txt").read_text() == "mine"


def test_bench_the_predictor_and_the_rebuild_command_read_one_batch_limit(tmp_path: Path) -> None:
    """The largest batch an export takes was read from its manifest in three places, each with a fallback
    of its own: bench (before loading) put no bound on a static manifest that records no input shape, which
    the Predictor then refused above 1 and the rebuild command rebuilt at batch 1. All three read
    ``batch_limit`` now: a fixed input batch, else the dynamic range's top, else 1 for a static export,
    else (a dynamic manifest with no batch range) no bound, for which the rebuild command leaves ``--batch``
    to the export's default."""
    from collections.abc import Mapping
    from typing import Any

    import numpy as np

    from pvt_deploy.bench import _refuse_size_outside
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.manifest import batch_limit, reexport_command, write_manifest
    from pvt_deploy.runtimes.base import Backend, BackendInfo, TensorSpec
    from pvt_deploy.tasks.pipeline import Predictor

    class Graph(Backend):
        """A loaded graph as the manifest declares it, with a TensorRT engine's profile where given."""

        def __init__(self, manifest: Mapping[str, Any], profiles: list[dict[str, Any]] | None = None,
                     max_batch_size: int = 0) -> None:
            self._inputs = [TensorSpec.from_json(t) for t in manifest["inputs"]]
            self.info = BackendInfo("tensorrt" if profiles else "onnxruntime", "cpu", "fp32")
            if profiles is not None:
                self.profiles = profiles
            if max_batch_size:  # a Triton model's: it sends a larger batch in pieces
                self.max_batch_size = max_batch_size

        @property
        def inputs(self) -> list[TensorSpec]:
            return self._inputs

        @property
        def outputs(self) -> list[TensorSpec]:
            return []

        def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            raise AssertionError("not run")

    def bench_most(manifest: dict[str, Any], name: str) -> int | None:
        folder = tmp_path / name
        folder.mkdir()
        write_manifest(folder, manifest)
        written = read_manifest(folder)  # as bench reads it, once (6773efe)
        for batch in range(2, 40):
            try:
                _refuse_size_outside(written, None, batch)
            except ShapeError:
                return batch - 1
        return None

    def predictor_most(backend: Backend, manifest: dict[str, Any]) -> int | None:
        most = Predictor(backend, manifest).max_batch
        return None if most == 1 << 20 else most

    symbolic = [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}]
    base = {"model": "pvt_v2_b0-cls", "task": "classify", "classes": ["a", "b"], "inputs": symbolic,
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
            "preprocess": preprocess_spec("classify", (64, 64), dynamic=True, mean=(0, 0, 0), std=(1, 1, 1)),
            "postprocess": {}, "export": {"imgsz": [64, 64]},
            "dynamic": {"batch": [1, 4], "height": [32, 1344], "width": [32, 1344]}}
    static_pre = preprocess_spec("classify", (64, 64), dynamic=False, mean=(0, 0, 0), std=(1, 1, 1))
    cases = {
        "ranged": (base, 4),
        "no batch range": ({**base, "dynamic": {"height": [32, 1344], "width": [32, 1344]}}, None),
        "static": ({**base, "dynamic": None, "preprocess": static_pre,
                    "inputs": [{"name": "images", "dtype": "float32", "shape": [2, 3, 64, 64]}]}, 2),
        "static, no shape": ({**base, "dynamic": None, "preprocess": static_pre}, 1),
    }
    for name, (manifest, expected) in cases.items():
        command = reexport_command(tmp_path, manifest)
        rebuilt = _reexport_params(command)["batch"] if "--batch" in command else None
        got = {"batch_limit": batch_limit(manifest), "bench": bench_most(manifest, name),
               "predictor": predictor_most(Graph(manifest), manifest), "rebuild": rebuilt}
        default = 1 if manifest["dynamic"] is None else 8  # the export's, which the command leaves out
        want = {"batch_limit": expected, "bench": expected, "predictor": expected,
                "rebuild": None if expected in (None, default) else expected}
        assert got == want, name

    # A TensorRT engine (built with --shapes max batch 2) runs no larger batch than its profile: the
    # Predictor refused --batch 4 only when the engine did, on the first batch, and a video on the GPU
    # ran in batches of 4. A Triton model sends a batch larger than its max_batch_size in pieces.
    profile = [{"input": "images", "min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 640, 640]}]
    engine = Predictor(Graph(base, profile), base)
    assert engine.max_batch == 2 and engine.auto_batch("video") == 2
    with pytest.raises(ShapeError, match=r"batch 4 is more than this graph takes \(2\)"):
        engine.check_batch(4)
    assert batch_limit(base, profile) == 2 and batch_limit(base, [{"input": "images"}]) == 4
    assert Predictor(Graph(base, profile, max_batch_size=2), base).max_batch == 4
