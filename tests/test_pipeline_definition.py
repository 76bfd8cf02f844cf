"""dvc.yaml and the notebooks agree: params keys are notebook parameters with equal defaults."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _command(stage: dict) -> str:
    """A stage's command(s) as one string (dvc.yaml allows a list of commands)."""
    return " && ".join(stage["cmd"]) if isinstance(stage["cmd"], list) else stage["cmd"]


NOTEBOOK_STAGES = {name: s for name, s in STAGES.items() if " notebook run " in f" {_command(s)} "}


def _notebook_and_params(cmd: str) -> tuple[str, list[str]]:
    cmd = cmd[cmd.index("notebook run"):].split(" && ")[0]
    words = shlex.split(cmd)
    notebook = words[words.index("run") + 1]
    params = [words[i + 1] for i, w in enumerate(words) if w == "--params"]
    return notebook, params


def test_every_notebook_has_a_stage():
    staged = {_notebook_and_params(_command(s))[0] for s in NOTEBOOK_STAGES.values()}
    assert staged == {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_params_keys_are_notebook_parameters_with_the_same_defaults(stage):
    notebook, params_files = _notebook_and_params(_command(NOTEBOOK_STAGES[stage]))
    parameters = papermill.inspect_notebook(str(ROOT / notebook))
    declared = {next(iter(p)) if isinstance(p, dict) else p for p in NOTEBOOK_STAGES[stage].get("params", [])}
    for file in params_files:
        assert file in declared, f"{stage}: {file} is passed to the notebook but not tracked in the stage's params"
        for key, value in yaml.safe_load((ROOT / file).read_text()).items():
            assert key in parameters, f"{file}:{key} is not a parameter of {notebook}"
            default = ast.literal_eval(parameters[key]["default"])
            assert default == value, f"{notebook}: default {key} = {default!r} but {file} says {value!r}"


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_notebook_deps_and_outs_are_declared(stage):
    notebook, _ = _notebook_and_params(_command(NOTEBOOK_STAGES[stage]))
    spec = NOTEBOOK_STAGES[stage]
    assert notebook in spec["deps"]
    stem = notebook.removeprefix("notebooks/").removesuffix(".ipynb")
    assert {f"reports/{stem}.{ext}" for ext in ("ipynb", "html", "json")} <= set(spec["outs"])
    for name, info in papermill.inspect_notebook(str(ROOT / notebook)).items():
        if name.endswith(("_dir", "_path", "_file")):
            path = (ROOT / "notebooks" / ast.literal_eval(info["default"])).resolve().relative_to(ROOT).as_posix()
            params_files = {next(iter(p)) if isinstance(p, dict) else p for p in spec.get("params", [])}
            tracked = path in spec["deps"] or path in params_files or path in spec["outs"]  # outs: written by an earlier cmd
            assert tracked, f"{stage}: notebook input {path} is tracked neither as a dep, nor as params, nor as an out"


def test_committed_notebooks_have_no_outputs():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


def test_notebooks_hold_no_function_or_class_definitions():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                tree = ast.parse("".join(cell["source"]))
                assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in ast.walk(tree)), path.name


def _clinval_imports(source: str, package_dir) -> set[str]:
    """clinval module files a piece of code imports (directly)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clinval"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("clinval")]
        for name in names:
            rel = name.split(".")[1:]
            for candidate in (package_dir.joinpath(*rel).with_suffix(".py"), package_dir.joinpath(*rel, "__init__.py")):
                if candidate.exists():
                    found.add(candidate)
    return found


def _closure(files: set, package_dir) -> set:
    seen, todo = set(), list(files)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        parents = [p / "__init__.py" for p in f.parents if p != package_dir.parent and package_dir in (p, *p.parents)]
        todo.extend(p for p in parents if p.exists())
        todo.extend(_clinval_imports(f.read_text(), package_dir))
    return seen


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_notebook_stages_depend_on_every_clinval_module_they_run(stage):
    """A module the record's bytes depend on but DVC does not track would make a clean
    clone produce different outputs than dvc.lock records."""
    notebook, _ = _notebook_and_params(_command(NOTEBOOK_STAGES[stage]))
    package = ROOT / "src" / "clinval"
    code = "\n".join("".join(c["source"]) for c in json.loads((ROOT / notebook).read_text())["cells"] if c["cell_type"] == "code")
    needed = _closure(_clinval_imports(code, package) | _clinval_imports("from clinval import evidence", package), package)
    deps = NOTEBOOK_STAGES[stage]["deps"]

    def covered(path):
        rel = path.relative_to(ROOT).as_posix()
        return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

    missing = sorted(p.relative_to(ROOT).as_posix() for p in needed if not covered(p))
    assert not missing, f"{stage}: add to deps in dvc.yaml: {missing}"
