"""dvc.yaml and the notebooks agree: params keys are notebook parameters with equal defaults."""

from __future__ import annotations

import ast
import inspect
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
            # None: the notebook reads the file itself (evidence.fill_parameters), so no study needs it edited
            assert default is None or default == value, f"{notebook}: default {key} = {default!r} but {file} says {value!r}"
            if default is None and value is not None:
                source = "".join("".join(c["source"]) for c in json.loads((ROOT / notebook).read_text())["cells"])
                assert f'"../{file}"' in source and "fill_parameters(" in source, (
                    f"{notebook}: {key} defaults to None but the notebook does not fill it from {file}")


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


PACKAGE = ROOT / "src" / "clinval"
ALWAYS = {"uv.lock", "src/clinval/__init__.py", "src/clinval/_launch.py", "src/clinval/numeric_env.py"}
"""Inputs of every stage: the locked environment and the code that pins numerics."""
CLI_REGISTRY = PACKAGE / "cli" / "__init__.py"
"""Only registers the commands: no stage's bytes depend on it."""


def _module_file(name: str) -> Path | None:
    rel = name.split(".")[1:]
    for candidate in (PACKAGE.joinpath(*rel).with_suffix(".py"), PACKAGE.joinpath(*rel, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def _imports_in(nodes) -> set[Path]:
    """clinval module files imported anywhere inside the given AST nodes."""
    found = set()
    for root in nodes:
        for node in ast.walk(root):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clinval"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("clinval")]
            found.update(f for f in map(_module_file, names) if f is not None)
    return found


def _library_closure(files: set[Path]) -> set[Path]:
    """Every clinval file the given files import, transitively, with package __init__ files.

    Library modules count whole (a lazy import inside a function is still run by some
    caller); the CLI is followed by reachability instead (:func:`_command_modules`)."""
    seen, todo = set(), list(files)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        parents = (p / "__init__.py" for p in f.parents if PACKAGE in (p, *p.parents))
        todo.extend(p for p in parents if p.exists() and p != CLI_REGISTRY)
        if PACKAGE / "cli" not in f.parents:
            todo.extend(_imports_in([ast.parse(f.read_text())]))
    return seen


def _command_modules(words: list[str]) -> set[Path]:
    """clinval files a `clinval <group> <command>` runs: the command's module-level imports,
    and the imports inside the command and every CLI function it calls by name."""
    from clinval.cli import main

    command = main
    for word in words:
        if not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
    function = inspect.unwrap(command.callback)
    module_file = Path(inspect.getsourcefile(function))
    tree = ast.parse(module_file.read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    reached, todo = set(), [function.__name__]
    while todo:
        name = todo.pop()
        if name in reached or name not in functions:
            continue
        reached.add(name)
        todo.extend(n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name))
    needed = {module_file} | _imports_in(top_level) | _imports_in([functions[n] for n in reached])
    return {f for f in needed if PACKAGE / "cli" not in f.parents} | {module_file}


def _stage_needs(spec: dict) -> set[str]:
    needed: set[Path] = set()
    for cmd in (spec["cmd"] if isinstance(spec["cmd"], list) else [spec["cmd"]]):
        words = shlex.split(cmd)
        assert words[0] == "clinval", f"a stage runs the clinval command, not {words[0]!r}"
        needed |= _command_modules(words[1:])
        if words[1:3] == ["notebook", "run"]:
            notebook = ROOT / words[3]
            code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
            needed |= _imports_in([ast.parse(code)])
    return {p.relative_to(ROOT).as_posix() for p in _library_closure(needed)} | ALWAYS


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_depends_on_every_file_it_runs(stage):
    """A module the stage's bytes depend on but DVC does not track would make a clean
    clone produce different outputs than dvc.lock records; so would the environment."""
    deps = STAGES[stage]["deps"]

    def covered(rel):
        return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

    missing = sorted(rel for rel in _stage_needs(STAGES[stage]) if not covered(rel))
    assert not missing, f"{stage}: add to deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_depends_on_code_it_does_not_run(stage):
    """Extra code deps re-run a stage for nothing (e.g. editing the fairness bootstrap
    re-running the drift notebook)."""
    needed = _stage_needs(STAGES[stage])
    code = [d for d in STAGES[stage]["deps"] if d.startswith("src/") and d != "src/clinval/templates"]
    extra = sorted(d for d in code if not any(n == d or n.startswith(d.rstrip("/") + "/") for n in needed))
    assert not extra, f"{stage}: deps in dvc.yaml it does not run: {extra}"
