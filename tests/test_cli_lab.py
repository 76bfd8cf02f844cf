"""``clinval lab`` / ``make lab``: JupyterLab that starts as root and never rewrites a committed notebook."""

from __future__ import annotations

import copy
import io
import subprocess
from pathlib import Path

import nbformat
import pytest
from ipykernel.ipkernel import IPythonKernel
from jupyter_client.kernelspec import KernelSpecManager
from traitlets.utils.importstring import import_item

from clinval.cli.lab import NOTEBOOK_METADATA, PRE_SAVE_HOOK, keep_notebook_metadata, lab_argv

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _opened_in_jupyterlab(path: Path) -> dict:
    """The contents model JupyterLab sends back on autosave after merely opening ``path``.

    On connecting a kernel JupyterLab sets ``kernelspec`` from the kernel's spec and
    ``language_info`` from the kernel's ``kernel_info_reply`` (ipykernel's, with this
    machine's Python version).
    """
    notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT)
    spec = KernelSpecManager().get_kernel_spec(notebook.metadata.kernelspec.name)
    notebook.metadata.kernelspec = {"name": notebook.metadata.kernelspec.name, "display_name": spec.display_name,
                                    "language": spec.language}
    notebook.metadata.language_info = copy.deepcopy(IPythonKernel.language_info)
    return {"type": "notebook", "format": "json", "content": dict(notebook)}


def _saved_bytes(model: dict) -> bytes:
    """What jupyter_server's FileContentsManager.save writes: nbformat.from_dict, then nbformat.write."""
    out = io.StringIO()
    nbformat.write(nbformat.from_dict(model["content"]), out, version=nbformat.NO_CONVERT)
    return out.getvalue().encode("utf-8")


def test_the_notebooks_are_found():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_save_after_opening_writes_the_committed_bytes(path):
    model = _opened_in_jupyterlab(path)
    keep_notebook_metadata(model=model, path=path.name, contents_manager=None)
    assert _saved_bytes(model) == path.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_without_the_hook_opening_would_change_the_notebook(path):
    """The kernel's own metadata differs from the committed one: the hook is what keeps the bytes."""
    assert _saved_bytes(_opened_in_jupyterlab(path)) != path.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_the_metadata_a_save_writes(path):
    metadata = nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT).metadata
    assert {key: metadata.get(key) for key in NOTEBOOK_METADATA} == NOTEBOOK_METADATA


def test_the_hook_leaves_cells_and_other_kernels_alone():
    cells = [{"cell_type": "code", "id": "x", "metadata": {}, "source": "1 + 1", "outputs": [], "execution_count": None}]
    model = {"type": "notebook", "content": {"cells": copy.deepcopy(cells), "metadata": {
        "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}}}}
    keep_notebook_metadata(model=model, path="r.ipynb", contents_manager=None)
    assert model["content"]["metadata"]["kernelspec"]["name"] == "ir" and model["content"]["cells"] == cells
    text = {"type": "file", "content": "hello"}
    keep_notebook_metadata(model=text, path="a.txt", contents_manager=None)
    assert text == {"type": "file", "content": "hello"}


def test_the_server_setting_names_the_hook():
    """jupyter_server resolves ContentsManager.pre_save_hook with traitlets' import_item."""
    assert import_item(PRE_SAVE_HOOK) is keep_notebook_metadata
    argv = lab_argv(notebooks=Path("notebooks"), as_root=False)
    assert f"--ContentsManager.pre_save_hook={PRE_SAVE_HOOK}" in argv and argv[-1] == "notebooks"


def test_allow_root_only_as_root():
    assert "--allow-root" in lab_argv(notebooks=Path("notebooks"), as_root=True)
    assert "--allow-root" not in lab_argv(notebooks=Path("notebooks"), as_root=False)


def test_jupyter_checkpoints_are_ignored_by_git():
    checked = subprocess.run(["git", "check-ignore", "-q", "notebooks/.ipynb_checkpoints/01_reference_profile-checkpoint.ipynb"],
                             cwd=ROOT, check=False)
    assert checked.returncode == 0


@pytest.mark.e2e
def test_a_real_server_saves_an_opened_notebook_with_the_committed_bytes(tmp_path):
    """`clinval lab` starts JupyterLab (as root too); a save carrying this kernel's metadata writes the committed bytes."""
    import os
    import signal
    import socket
    import sys
    import time

    import httpx

    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = NOTEBOOKS[0]
    (folder / notebook.name).write_bytes(notebook.read_bytes())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "clinval", "lab", str(folder), "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.disable_check_xsrf=True"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                model = client.get(f"/api/contents/{notebook.name}", params={"content": 1})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 2 minutes"
                time.sleep(0.5)
        assert model.status_code == 200
        opened = _opened_in_jupyterlab(notebook)  # what JupyterLab sends after connecting a kernel
        saved = client.put(f"/api/contents/{notebook.name}", json=opened)
        assert saved.status_code == 200, saved.text
        assert (folder / notebook.name).read_bytes() == notebook.read_bytes()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
