"""Reproducible anywhere: the same bytes whatever BLAS kernel, thread count or CPU, and
every input (raw data, environment, plan keys) tracked by DVC.

The kernel and thread variations are what another x86-64 CPU would pick by itself; an
emulated CPU (qemu) goes further and changes what NumPy, glibc and OpenBLAS detect.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from studies import MONICA_RECIPE

from clinval import numeric_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
X86_64_LINUX = sys.platform.startswith("linux") and platform.machine() == "x86_64"
CPU_FLAGS = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
KERNELS = ["Prescott", "Nehalem", "Sandybridge"] + (["Haswell"] if "avx2" in CPU_FLAGS else [])
"""OpenBLAS kernels this CPU can run (each is what some other x86-64 CPU picks by itself)."""


def _outer_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in numeric_env.PINNED and k not in ("GLIBC_TUNABLES", numeric_env.OPT_OUT)}
    return {**env, **overrides}


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def prepared_and_recipe(monica, tmp_path_factory) -> tuple[Path, Path]:
    from clinval import data

    folder = tmp_path_factory.mktemp("kernels")
    data.write_prepared(monica, folder / "prepared")
    (folder / "model.yaml").write_text(yaml.safe_dump(MONICA_RECIPE))
    return folder / "prepared", folder / "model.yaml"


def _train_and_score(prepared: Path, recipe: Path, out: Path, env: dict[str, str]) -> str:
    for args in (["train", "--prepared", prepared, "--recipe", recipe, "--out", out / "model"],
                 ["score", "--prepared", prepared, "--model", out / "model", "--out", out / "scored"]):
        result = subprocess.run([str(BIN / "clinval"), *map(str, args)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    return _digest(out)


# ---------------------------------------------------------------------------- the pinned environment


def test_pinning_sets_every_library_choice_and_keeps_other_glibc_tunables():
    env = numeric_env.pinned_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "OPENBLAS_CORETYPE": "SkylakeX"})
    if not X86_64_LINUX:
        pytest.skip("pinning applies to x86-64 Linux only; elsewhere `clinval repro check` reports the differences")
    assert env["OPENBLAS_CORETYPE"] == "Prescott" and env["OPENBLAS_NUM_THREADS"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert env["NPY_ENABLE_CPU_FEATURES"] == "X86_V2"
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.cpu.hwcaps=-FMA,-FMA4"
    assert numeric_env.is_pinned(env) and not numeric_env.is_pinned({})


def test_native_opts_out():
    env = {"OPENBLAS_CORETYPE": "Haswell", numeric_env.OPT_OUT: "native"}
    assert numeric_env.pinned_environment(env) == env


@pytest.mark.e2e
@pytest.mark.skipif(not X86_64_LINUX, reason="pinning applies to x86-64 Linux only")
def test_the_command_runs_pinned_whatever_it_was_started_with():
    """`clinval` re-executes itself pinned; what it starts (notebook kernels) inherits that."""
    env = _outer_env(OPENBLAS_CORETYPE="Nehalem", OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    result = subprocess.run([str(BIN / "clinval"), "repro", "env", "--json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["pinned"] and info["numpy_dispatch_in_use"] == []
    openblas = [lib for lib in info["libraries"] if lib["internal_api"] == "openblas"]
    assert openblas and all(lib["architecture"] in ("Prescott", "Katmai") and lib["num_threads"] == 1 for lib in openblas)
    assert all(lib["num_threads"] == 1 for lib in info["libraries"])


@pytest.mark.e2e
@pytest.mark.skipif(not X86_64_LINUX, reason="the byte-for-byte promise is for x86-64 Linux")
def test_train_and_score_give_the_same_bytes_under_every_blas_kernel_and_thread_count(prepared_and_recipe, tmp_path):
    prepared, recipe = prepared_and_recipe
    variants = [("Prescott", "1"), ("Nehalem", "2"), ("Sandybridge", "1"), (KERNELS[-1], "2")]  # >= 3 kernels, 1 and 2 threads
    digests = {
        (kernel, threads): _train_and_score(prepared, recipe, tmp_path / f"{kernel}-{threads}",
                                            _outer_env(OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads))
        for kernel, threads in variants
    }
    assert len(set(digests.values())) == 1, f"model and prediction log differ between kernels: {digests}"


@pytest.mark.e2e
@pytest.mark.skipif(not X86_64_LINUX, reason="the byte-for-byte promise is for x86-64 Linux")
def test_without_pinning_the_same_variations_change_the_bytes(prepared_and_recipe, tmp_path):
    """The control: it is the pinning that makes the test above pass, not luck."""
    prepared, recipe = prepared_and_recipe
    native = {
        threads: _train_and_score(prepared, recipe, tmp_path / threads,
                                  _outer_env(**{numeric_env.OPT_OUT: "native", "OPENBLAS_CORETYPE": "Prescott",
                                                "OPENBLAS_NUM_THREADS": threads}))
        for threads in ("1", "2")
    }
    assert native["1"] != native["2"], "one and two OpenBLAS threads gave the same bytes even unpinned"


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.e2e
@pytest.mark.skipif(not X86_64_LINUX, reason="the byte-for-byte promise is for x86-64 Linux")
@pytest.mark.skipif(QEMU is None and not os.environ.get("CLINVAL_REQUIRE_QEMU"),
                    reason="qemu-user is not installed (.ci/run installs it and sets CLINVAL_REQUIRE_QEMU=1)")
def test_a_cpu_without_avx_gives_the_same_model(prepared_and_recipe, tmp_path):
    """Under qemu's emulated Nehalem (no AVX, no FMA) NumPy, glibc and OpenBLAS each
    detect another CPU; the pinned model must still have this machine's bytes."""
    assert QEMU, "qemu-x86_64 is required here (apt-get install qemu-user)"
    prepared, recipe = prepared_and_recipe
    args = ["-m", "clinval", "train", "--prepared", str(prepared), "--recipe", str(recipe)]
    here = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "here")],
                          env=numeric_env.pinned_environment(_outer_env()), capture_output=True, text=True)
    emulated = subprocess.run([QEMU, "-cpu", "Nehalem", sys.executable, *args, "--out", str(tmp_path / "nehalem")],
                              env=numeric_env.pinned_environment(_outer_env()), capture_output=True, text=True)
    assert here.returncode == 0 and emulated.returncode == 0, emulated.stderr[-2000:]
    assert _digest(tmp_path / "here") == _digest(tmp_path / "nehalem")


# ---------------------------------------------------------------------------- every input is a dependency


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clean clone with the study's raw source in place and no pipeline outputs."""
    from clinval import repro

    clone = repro.fresh_clone(ROOT, tmp_path_factory.mktemp("deps") / "clinval")
    result = subprocess.run([str(BIN / "clinval"), "study", "embed"], cwd=clone, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return clone


def _changed_inputs(clone: Path) -> dict[str, dict]:
    """Per stage, the deps and params whose recorded value differs (outputs absent are ignored)."""
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=clone, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    changed = {}
    for stage, items in json.loads(status.stdout or "{}").items():
        for item in items:
            if isinstance(item, dict) and "changed deps" in item:
                inputs = {k: v for k, v in item["changed deps"].items() if v != "deleted"}
                if inputs:
                    changed[stage] = inputs
    return changed


@pytest.mark.e2e
def test_the_raw_study_file_is_an_input_of_prepare(clone):
    source = yaml.safe_load((clone / "params" / "study.yaml").read_text())["source"]["path"]
    assert _changed_inputs(clone) == {}, "a fresh clone's inputs must match dvc.lock"
    path = clone / source
    if path.is_dir():  # a folder of Parquet files: edit one of them
        path = sorted(p for p in path.rglob("*") if p.is_file())[0]
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-2] + (b"0" if original[-2:-1] != b"0" else b"1") + original[-1:])
        assert _changed_inputs(clone) == {"prepare": {source: "modified"}}
    finally:
        path.write_bytes(original)


@pytest.mark.e2e
def test_editing_only_the_acceptance_criteria_reruns_only_revalidate(clone):
    plan_path = clone / "params" / "pccp.yaml"
    original = plan_path.read_text()
    plan = yaml.safe_load(original)
    plan["acceptance_criteria"]["auroc_noninferiority"]["edited_by_test"] = 1
    try:
        plan_path.write_text(yaml.safe_dump(plan))
        assert set(_changed_inputs(clone)) == {"revalidate"}
        # record 01 holds the locked model to the plan's calibration criteria, and to nothing else of the plan
        plan = yaml.safe_load(original)
        plan["acceptance_criteria"]["calibration_slope"]["edited_by_test"] = 1
        plan_path.write_text(yaml.safe_dump(plan))
        assert set(_changed_inputs(clone)) == {"profile", "revalidate"}
        plan = yaml.safe_load(original)
        next(iter(plan["triggers"].values()))["description"] = "edited by a test"
        plan_path.write_text(yaml.safe_dump(plan))
        assert set(_changed_inputs(clone)) == {"drift", "fairness", "revalidate"}
    finally:
        plan_path.write_text(original)


@pytest.mark.e2e
def test_a_new_production_period_refits_nothing_and_leaves_record_01_alone(clone):
    """The study one production period shorter than committed: prepare writes the reference
    files with the bytes dvc.lock holds, so DVC re-runs score and the production records
    but neither train nor profile (tests/test_prepared_files.py checks the bytes of every
    file, the hold-out's predictions included, for a shorter and a later-starting study)."""
    from clinval import data

    study_path = clone / "params" / "study.yaml"
    original, lock = study_path.read_text(), (clone / "dvc.lock").read_text()
    study = yaml.safe_load(original)
    labels = data.prepare(data.study_from_params(study, params_path=str(study_path)), root=clone).periods
    study["periods"]["production"]["to"] = type(study["periods"]["production"]["to"])(labels[-2])
    try:
        study_path.write_text(yaml.safe_dump(study, sort_keys=False))
        done = subprocess.run([str(BIN / "dvc"), "repro", "prepare"], cwd=clone, capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
        assert done.returncode == 0, done.stdout + done.stderr
        changed = _changed_inputs(clone)
        assert changed["score"] == {"data/prepared": "modified"}, changed
        assert {"train", "profile"}.isdisjoint(changed) and {"drift", "fairness"} <= set(changed), changed
    finally:
        study_path.write_text(original)
        (clone / "dvc.lock").write_text(lock)
        shutil.rmtree(clone / "data" / "prepared", ignore_errors=True)


def test_the_drift_and_fairness_records_read_only_the_plans_triggers():
    """What DVC tracks for them (`params/pccp.yaml: [triggers]`) is all they read."""
    from clinval import pccp

    plan = yaml.safe_load((ROOT / "params" / "pccp.yaml").read_text())
    assert pccp.triggers_from_params({"triggers": plan["triggers"]}) == pccp.plan_from_params(plan).triggers
    for stage in ("drift", "fairness"):
        tracked = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["params"]
                   if isinstance(p, dict) and "params/pccp.yaml" in p]
        assert tracked == [{"params/pccp.yaml": ["triggers"]}], stage


# ---------------------------------------------------------------------------- clinval repro check


def _check(clone: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "clinval"), "repro", "check", "--in", str(clone), *args], cwd=ROOT,
                          env=env or _outer_env(), capture_output=True, text=True)


@pytest.mark.e2e
@pytest.mark.skipif(not X86_64_LINUX, reason="the byte-for-byte promise is for x86-64 Linux")
def test_repro_check_names_the_output_and_the_number_that_moved_on_another_kernel(tmp_path):
    from clinval import repro

    lock = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    scored = repro.lock_outputs(lock)["score"]["data/scored"]
    assert repro._committed_files(ROOT, "data/scored", scored), "the committed outputs must be here: `make run` first"
    clone = repro.fresh_clone(ROOT, tmp_path / "clone")
    other_cpu = _outer_env(**{numeric_env.OPT_OUT: "native", "OPENBLAS_CORETYPE": "Nehalem", "OPENBLAS_NUM_THREADS": "2"})
    result = _check(clone, "--target", "score", env=other_cpu)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "identical   data/prepared" in result.stdout
    assert re.search(r"data/scored/(holdout|production)\.parquet: largest change", result.stdout)
    assert "(at predicted_risk)" in result.stdout
    assert "no decision differs" in result.stdout


@pytest.mark.e2e
def test_repro_check_fails_when_an_input_differs(tmp_path):
    from clinval import repro

    clone = repro.fresh_clone(ROOT, tmp_path / "clone")
    study = yaml.safe_load((clone / "params" / "study.yaml").read_text())
    study["name"] = "edited by a test"
    (clone / "params" / "study.yaml").write_text(yaml.safe_dump(study))
    result = _check(clone, "--target", "prepare")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "input changed: params/study.yaml: name" in result.stdout
    assert "data/prepared/reference.json: 1 sentence(s) changed" in result.stdout


# ---------------------------------------------------------------------------- comparing records


def test_numbers_within_the_tolerance_and_no_decision_moved():
    from clinval import repro

    a = {"values": {"performance": [{"metric": "AUROC", "value": 0.75, "lower": 0.70, "status": "ok"}]}, "alerts": []}
    b = json.loads(json.dumps(a))
    b["values"]["performance"][0]["value"] = 0.75 * (1 + 1e-9)
    diff = repro.compare_json(a, b)
    assert not diff.decisions and diff.beyond == 0 and diff.where == "values.performance[0].value"
    assert diff.max_rel == pytest.approx(1e-9, rel=1e-3)


def test_a_number_beyond_the_tolerance_counts():
    from clinval import repro

    diff = repro.compare_json({"x": [1.0, 2.0]}, {"x": [1.0, 2.001]}, rtol=1e-6)
    assert diff.beyond == 1 and diff.max_abs == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("committed", "fresh", "expected"),
    [
        ({"feature_drift": [{"drifted": False}]}, {"feature_drift": [{"drifted": True}]}, "feature_drift[0].drifted: False -> True"),
        ({"alerts": [{"id": "a"}]}, {"alerts": [{"id": "a"}, {"id": "b"}]}, "alerts has 2 items instead of 1"),
        ({"c": [{"decision": "promote"}]}, {"c": [{"decision": "reject"}]}, "c[0].decision: 'promote' -> 'reject'"),
        ({"r": [{"status": "ok"}]}, {"r": [{"status": "insufficient data"}]}, "r[0].status: 'ok' -> 'insufficient data'"),
        ({"v": 0.5}, {"v": None}, "v: 0.5 -> None"),
    ],
)
def test_a_decision_that_moved_is_named(committed, fresh, expected):
    from clinval import repro

    assert expected in repro.compare_json(committed, fresh).decisions


@pytest.mark.e2e
def test_the_folder_digest_is_dvcs(tmp_path):
    """repro check finds committed folders by DVC's own digest; it must compute it the same way."""
    from clinval import repro

    work = tmp_path / "repo"
    (work / "out").mkdir(parents=True)
    (work / "out" / "a.txt").write_text("a\n")
    (work / "out" / "sub").mkdir()
    (work / "out" / "sub" / "b.bin").write_bytes(bytes(range(256)))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=work, check=True)
    subprocess.run([str(BIN / "dvc"), "add", "-q", "out"], cwd=work, check=True)
    recorded = yaml.safe_load((work / "out.dvc").read_text())["outs"][0]["md5"]
    assert repro._dir_md5(repro._dir_manifest(work / "out")) == recorded
