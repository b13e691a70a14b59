"""The instructor kit (docs/instructors/): generated docs up to date, workshop plans timed from measured numbers only,
the pre-workshop doctor's checks, and the nbgrader release path (skipped when nbgrader is not installed)."""

import importlib.util
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_notebooks  # noqa: E402
import common_mistakes  # noqa: E402
import doctor  # noqa: E402
import nbgrader_release  # noqa: E402
import workshop_plans as W  # noqa: E402

HAS_NBGRADER = importlib.util.find_spec("nbgrader") is not None
NBGRADER_SKIP = "nbgrader is not installed: .venv/bin/pip install nbgrader (docs/instructors/nbgrader.md)"


# --- generated documents ---


def test_workshops_md_is_up_to_date():
    assert W.OUT.read_text() == W.render(), "run: python tools/workshop_plans.py"


def test_common_mistakes_md_is_up_to_date():
    assert common_mistakes.OUT.read_text() == common_mistakes.render(), "run: python tools/common_mistakes.py"


@pytest.fixture(scope="module")
def plans():
    return W.all_plans()


@pytest.fixture(scope="module")
def times():
    return build_notebooks.measured_times()


def test_every_day_fits_its_length_and_slots_follow_each_other(plans):
    assert set(plans) == {"half-day", "one-day", "three-day"}
    assert [len(days) for days in plans.values()] == [1, 1, 3]
    for slug, days in plans.items():
        for day in days:
            assert 0 < day.used_min <= day.length_min, slug
            clock = day.start_min
            for slot in day.slots:
                assert slot.start_min == clock and slot.minutes > 0
                clock += slot.minutes
    assert plans["half-day"][0].length_min == 210


def test_every_run_time_is_a_measured_number_from_the_readme_table(plans, times):
    text = W.OUT.read_text()
    for days in plans.values():
        for slot in (s for day in days for s in day.slots if s.number):
            assert slot.budget in ("smoke", "cpu")  # gpu is not measured: never planned
            assert slot.run_s == float(times[slot.number][slot.budget])
            assert slot.minutes == slot.teaching_min + sum(e.minutes for e in slot.live) + -(-slot.run_s // 60)
            assert f"| `{slot.budget}` | {W._run(slot.run_s)} |" in text


def test_live_and_homework_exercises_partition_each_notebook(plans):
    exercises = W.all_exercises()
    for days in plans.values():
        for slot in (s for day in days for s in day.slots if s.number):
            assert sorted(e.key for e in slot.live + slot.homework) == sorted(e.key for e in exercises[slot.number])


def test_exercise_scan_finds_headings_tiers_and_unheaded_regions():
    ex = {e.key: e for e in W.scan_exercises(ROOT / "solutions" / "02_noise_schedules.ipynb")}
    assert ex["Warm-up"].title == "Warm-up: log-SNR from betas"  # a region under no heading: named by its checker
    assert ex["Ex2"].tiers == ("derive",) and ex["Ex1"].tiers == ("core",)
    ex5 = {e.key: e for e in W.scan_exercises(ROOT / "solutions" / "05_sampling.ipynb")}
    assert ex5["Ex3"].tiers == ("build",) and ex5["Bug2"].tiers == ("find the bug",)
    # every solution region of every notebook belongs to exactly one listed exercise
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        cells_with_regions = sum(nbgrader_release.has_region(c.source) for c in nbformat.read(path, as_version=4).cells)
        assert len(W.scan_exercises(path)) <= cells_with_regions


def test_a_plan_that_does_not_fit_or_names_an_unknown_exercise_is_refused(times):
    exercises = W.all_exercises()
    too_long = W.PlanSpec("x", "x", "x", (W.DaySpec("09:00", 30, (W.Nb("05"),)),))
    with pytest.raises(ValueError, match="needs"):
        W.build_plan(too_long, times, exercises)
    unknown = W.PlanSpec("x", "x", "x", (W.DaySpec("09:00", 480, (W.Nb("01", ("Ex99",)),)),))
    with pytest.raises(KeyError, match="Ex99"):
        W.build_plan(unknown, times, exercises)
    unmeasured = {**times, "05": {"smoke": "not yet measured", "cpu": "not yet measured", "gpu": "not yet measured"}}
    with pytest.raises(ValueError, match="no measured"):
        W.build_plan(W.PlanSpec("x", "x", "x", (W.DaySpec("09:00", 480, (W.Nb("05"),)),)), unmeasured, exercises)


def test_common_mistakes_lists_every_catalogued_mistake_name():
    text = common_mistakes.OUT.read_text()
    for number, cats in common_mistakes.catalogues().items():
        assert f"## {number} " in text
        for name, entry in cats.items():
            assert f"`nb{number}.{name}`" in text
            for mistake in entry.get("mistakes", {}):
                assert common_mistakes.md(mistake) in text


# --- doctor ---


@pytest.mark.parametrize(
    "check",
    [
        doctor.check_python,
        doctor.check_disk,
        doctor.check_venv,
        doctor.check_dlib,
        doctor.check_torch,
        doctor.check_kernel,
        doctor.check_data,
        doctor.check_models,
    ],
    ids=lambda c: c.__name__,
)
def test_doctor_quick_checks_pass_here(check):
    if check is doctor.check_venv and Path(sys.prefix).resolve() != doctor.VENV.resolve():
        pytest.skip("the tests run outside the project's .venv")
    ok, detail, fix = check()
    assert ok, f"{detail} -> fix: {fix}"


def _data_copy(tmp_path: Path, files: list[str]) -> Path:
    """A data folder with a manifest listing only ``files``, copied from data/."""
    from dlib import data

    root = tmp_path / "data"
    manifest = data.read_manifest()
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data.data_dir() / rel, root / rel)
    (root / data.MANIFEST).write_text("".join(f"{manifest[rel]}  {rel}\n" for rel in files))
    return root


FILES = [
    "mnist/t10k-labels-idx1-ubyte.gz",
    "models/mnist-classifier.json",
    "models/mnist-classifier.safetensors",
]


def test_doctor_fails_with_a_fix_on_a_corrupted_data_file(tmp_path):
    root = _data_copy(tmp_path, FILES)
    assert doctor.check_data(root)[0] and doctor.check_models(root)[0]
    with open(root / FILES[0], "r+b") as f:  # flip one byte
        byte = f.read(1)
        f.seek(0)
        f.write(bytes([byte[0] ^ 0xFF]))
    ok, detail, fix = doctor.check_data(root)
    assert not ok and FILES[0] in detail and "sha256" in detail
    assert fix == f"git checkout -- data/{FILES[0]}*"
    line = doctor.format_line("FAIL", detail, fix)
    assert line.startswith("FAIL  data: 1 of 1 files fail") and line.endswith(
        f"-> fix: git checkout -- data/{FILES[0]}*"
    )


def test_doctor_fails_on_a_corrupted_checkpoint_and_exits_1(tmp_path, capsys):
    root = _data_copy(tmp_path, FILES)
    weights = root / FILES[2]
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    ok, detail, fix = doctor.check_models(root)
    assert not ok and "mnist-classifier" in detail and fix == "git checkout -- data/models/mnist-classifier.*"
    assert doctor.main(["--quick", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  models: 1 of 1 fail: mnist-classifier" in out and "-> fix: git checkout" in out
    assert "PASS  python" in out and "notebook" not in out  # --quick skips the notebook run


def test_doctor_reports_a_missing_kernel_a_foreign_env_and_an_old_torch():
    ok, detail, fix = doctor.check_kernel("no-such-kernel-for-doctor")
    assert not ok and detail == "kernel no-such-kernel-for-doctor not installed" and fix.startswith("make venv")
    ok, detail, fix = doctor.check_venv(prefix="/usr")
    assert not ok and "not the project's" in detail and "make venv" in fix
    ok, detail, fix = doctor.check_torch(required="1.0.0")
    assert not ok and "pins 1.0.0" in detail
    assert doctor.check_disk(min_gib=1e9)[0] is False


def test_an_optional_check_warns_and_a_crashing_check_fails():
    def boom():
        raise RuntimeError("broken")

    assert doctor.run_check(doctor.Check("x", lambda: (False, "no chromium", "apt-get install chromium"), True))[0] == (
        "WARN"
    )
    status, detail, _ = doctor.run_check(doctor.Check("y", boom))
    assert status == "FAIL" and "RuntimeError: broken" in detail


@pytest.mark.notebooks
def test_doctor_runs_notebook_02_at_smoke():
    ok, detail, fix = doctor.check_notebook()
    assert ok, f"{detail} -> fix: {fix}"
    assert "at smoke in" in detail and "reference machine" in detail


# --- nbgrader ---


def test_marking_for_nbgrader_adds_metadata_and_keeps_sources():
    nb = nbformat.read(ROOT / "solutions" / "02_noise_schedules.ipynb", as_version=4)
    marked = nbgrader_release.mark_for_nbgrader(nb, "02", grade_cells=True)
    with_regions = [c for c in nb.cells if nbgrader_release.has_region(c.source)]
    meta = [c.metadata["nbgrader"] for c in marked.cells if "nbgrader" in c.metadata]
    answers = [m for m in meta if m["solution"]]
    tests = [c for c in marked.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("02-checker")]
    assert len(answers) == len(with_regions)
    assert all(m["grade"] and m["points"] == 1 for m in answers if m["grade_id"] in _markdown_ids(marked))
    assert len(tests) == 4 and all(
        c.metadata["tags"] == ["raises-exception"] and c.metadata["nbgrader"]["locked"] for c in tests
    )
    assert [c.source for c in marked.cells if c not in tests] == [c.source for c in nb.cells]
    assert len({m["grade_id"] for m in meta}) == len(meta)
    if HAS_NBGRADER:
        from nbgrader.nbgraderformat import MetadataValidator

        MetadataValidator().validate_nb(marked)


def _markdown_ids(nb):
    return {
        c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.cell_type == "markdown" and "nbgrader" in c.metadata
    }


@pytest.mark.skipif(not HAS_NBGRADER, reason=NBGRADER_SKIP)
def test_nbgrader_generate_assignment_strips_every_solution(tmp_path):
    course = tmp_path / "course"
    assert nbgrader_release.main(["02", "--course", str(course), "--assignment", "ps1", "--no-db"]) == 0
    source = course / "source" / "ps1" / "02_noise_schedules.ipynb"
    released = course / "release" / "ps1" / "02_noise_schedules.ipynb"
    assert nbgrader_release.leaked_solutions(source, released) == []
    assert nbgrader_release.leaked_solutions(source, source)  # the detector does see solutions
    # nbgrader's code stubs are the course's own: the released code cells are the learner's notebooks/ version
    learner = build_notebooks.learner_version(nbformat.read(ROOT / "solutions" / source.name, as_version=4))
    rel = nbformat.read(released, as_version=4)
    assert [c.source for c in rel.cells if c.cell_type == "code"] == [
        c.source for c in learner.cells if c.cell_type == "code"
    ]
    assert any("parameters" in c.metadata.get("tags", []) for c in rel.cells)  # papermill still finds the knob


def test_release_problems_are_reported_without_nbgrader(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / "01_forward_process.ipynb", as_version=4)
    src, rel = tmp_path / "src.ipynb", tmp_path / "rel.ipynb"
    nbformat.write(nb, src)
    learner = build_notebooks.learner_version(nb)
    nbformat.write(learner, rel)
    assert nbgrader_release.leaked_solutions(src, rel) == []
    learner.cells[16].source = nb.cells[16].source.replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION", "")
    nbformat.write(learner, rel)
    assert any("solution line still present" in p for p in nbgrader_release.leaked_solutions(src, rel))


def test_the_nbgrader_config_sets_timeouts_and_keeps_autograding_from_hanging(tmp_path, monkeypatch):
    """nbgrader executes the config file; it must raise nbclient's timeouts and install tools/kernel_channels.py."""
    channels = pytest.importorskip("jupyter_client.channels")
    import kernel_channels
    from traitlets.config import Config

    monkeypatch.setattr(channels.AsyncZMQSocketChannel, "get_msg", None)  # as if nothing had installed it yet
    path = nbgrader_release.write_config(tmp_path)
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: c})
    assert c.CourseDirectory.course_id == "diffusion-course" and c.ExecutePreprocessor.timeout == 1800
    assert channels.AsyncZMQSocketChannel.get_msg is kernel_channels.get_msg
