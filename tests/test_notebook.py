"""The example notebook runs top to bottom on a bundled capture, and is committed clean."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install .[test])")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install .[test])")
pytest.importorskip("ipykernel", reason="ipykernel not installed (pip install .[test])")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "explore_stalls.ipynb"


def kernel_name() -> str:
    """The python3 kernel; register this interpreter's if none is installed."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user"], check=True,
                       capture_output=True)
    return "python3"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    before = sorted(NOTEBOOKS.iterdir())
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name(), timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()      # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3          # the flow, the keepalive flow and the overview
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "# capanalyze report" in text
    assert "silent_middlebox_eviction" in text
    assert "bytes" in text           # the exported chart
    # the exported chart went to a temp dir, not next to the committed notebook
    assert sorted(NOTEBOOKS.iterdir()) == before
