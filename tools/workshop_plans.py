"""Generate docs/instructors/workshops.md: half-day, one-day and three-day workshop plans.

Two kinds of numbers go into a plan, and the generated file keeps them apart:

- **measured**: each notebook's run time at a budget, read from README.md's "Measured run times" table (the one
  source, parsed by ``tools/build_notebooks.py``'s ``measured_times``); only ``smoke`` and ``cpu`` are planned
  (``gpu`` is measured for a few notebooks only);
- **planned**: the minutes of teaching and discussion per notebook, of each live exercise by tier, of breaks.
  These are choices, set below in ``TEACHING_MIN``, ``EXERCISE_MIN`` and the plans themselves; change them here.

A slot's length is its teaching time + its live exercises + the notebook's measured run time at the slot's budget
(rounded up to whole minutes). A notebook runs live at ``cpu`` when its measured cpu run takes at most
``LIVE_CPU_LIMIT_S``, otherwise at ``smoke`` (the committed outputs of notebooks/ show the cpu results).

    python tools/workshop_plans.py           # rewrite docs/instructors/workshops.md
    python tools/workshop_plans.py --check   # exit 1 if it is out of date (README's table or solutions/ changed)
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_notebooks import measured_times  # noqa: E402  (the README table's one parser)

SOLUTIONS = ROOT / "solutions"
OUT = ROOT / "docs" / "instructors" / "workshops.md"

# --- planning choices (not measured) ---------------------------------------------------------------------------------

TEACHING_MIN = {  # minutes of teaching and discussion per notebook: derivations, figures, questions
    "01": 30,
    "02": 20,
    "03": 25,
    "04": 30,
    "05": 35,
    "06": 35,
    "07": 35,
    "08": 30,
    "09": 30,
    "10": 30,
    "11": 40,
    "12": 35,
}
EXERCISE_MIN = {"core": 10, "build": 20, "derive": 15, "find the bug": 10}  # one live exercise, by tier
LIVE_CPU_LIMIT_S = 300  # a notebook runs live at cpu when its measured cpu run takes at most this long
TIERS = ("core", "build", "derive")


# --- exercises, read from solutions/ ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    notebook: str  # "01"
    key: str  # "Ex3", "Bug1", "Warm-up"
    title: str  # as the notebook's heading has it
    tiers: tuple[str, ...]  # ("core",), ("derive", "build"), ("find the bug",)
    section: str

    @property
    def minutes(self) -> int:
        return max(EXERCISE_MIN[t] for t in self.tiers)

    @property
    def tier(self) -> str:
        return " + ".join(self.tiers)

    @property
    def short(self) -> str:
        """The title without its "Exercise N (tier):" or "Find the bug:" prefix and a trailing "(tier)"."""
        t = re.sub(r"^(Exercise \d+|Find the bugs?|Warm-up)\s*(\([^)]*\))?\s*:?\s*", "", self.title)
        t = re.sub(r"\s*\((?:core|build|derive)[^)]*\)$|\s*\([^)]*\)$", "", t)
        return (t[:1].lower() + t[1:]) if t[:2] != t[:2].upper() else t


_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_BOLD_EXERCISE = re.compile(r"^\*\*((?:Exercise \d+|Find the bugs?)\b[^*]*)\*\*")
_CHECK_NAME = re.compile(r"check_(?:function|value)\(\s*\"([^\"]+)\"")
_SECTION = re.compile(r"^\d+\.\s")


def _tiers(title: str) -> tuple[str, ...]:
    lower = title.lower()
    if "find the bug" in lower:
        return ("find the bug",)
    named = [t for group in re.findall(r"\(([^)]*)\)", lower) for t in TIERS if re.search(rf"\b{t}\b", group)]
    return tuple(dict.fromkeys(named)) or ("core",)  # an exercise whose heading names no tier implements one piece


def _bugs_title(section: str) -> str:
    return "Find the bugs: " + re.sub(r"^\d+\.\s*", "", section)


def _is_exercise(title: str) -> bool:
    return bool(re.match(r"(Exercise \d+|Find the bugs?)\b", title))


def scan_exercises(path: Path) -> list[Exercise]:
    """The exercises of one solutions/ notebook: every heading ("Exercise N ...", "Find the bug ...", or a bold
    "**Exercise N.**") that owns a solution region, plus regions under no such heading, named after their checker
    (notebook 02's warm-up) or as a find-the-bugs item of their section."""
    nb = nbformat.read(path, as_version=4)
    found: list[tuple[str, str]] = []  # (title, section), in order
    section, current, owned = "", None, False
    for i, cell in enumerate(nb.cells):
        for line in cell.source.split("\n"):
            m = _MARKER.match(line)
            if m:
                if m.group(1) == "BEGIN" and not owned:
                    if current is None:  # a region under no exercise heading
                        later = "\n".join(c.source for c in nb.cells[i : i + 4] if c.cell_type == "code")
                        name = _CHECK_NAME.search(later)
                        current = name.group(1) if name else _bugs_title(section)
                    found.append((current, section))
                    owned = True
                continue
            if cell.cell_type != "markdown":
                continue
            h, b = _HEADING.match(line), _BOLD_EXERCISE.match(line)
            if h:
                if len(h.group(1)) == 2:
                    section = h.group(2)
                current, owned = (h.group(2) if _is_exercise(h.group(2)) else None), False
            elif b:
                title, rest = b.group(1).strip().rstrip("."), line[b.end() :].strip()
                if title.lower().startswith("find the bug"):
                    title = _bugs_title(section)
                elif ":" not in title and rest:  # "**Exercise 1.** Implement the cosine schedule's betas. ..."
                    title = f"{title}: {rest.split('. ')[0].rstrip('.')}"
                current, owned = title, False
    out, counts = [], {"Bug": 0, "Other": 0}
    for title, sec in found:
        title = title.rstrip(". ")
        m = re.match(r"Exercise (\d+)", title)
        if m:
            key = f"Ex{m.group(1)}"
        elif title.startswith("Warm-up"):
            key = "Warm-up"
        else:
            kind = "Bug" if title.lower().startswith("find the bug") else "Other"
            counts[kind] += 1
            key = f"{kind}{counts[kind]}"
        out.append(Exercise(path.name[:2], key, title, _tiers(title), sec))
    return out


def sections(path: Path) -> list[str]:
    """The numbered ``## N. ...`` sections of a notebook (set-up, summary and questions left out)."""
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.split("\n"):
                h = _HEADING.match(line)
                if h and len(h.group(1)) == 2 and _SECTION.match(h.group(2)) and not h.group(2).startswith("0."):
                    out.append(h.group(2))
    return out


def notebook_paths() -> dict[str, Path]:
    return {p.name[:2]: p for p in sorted(SOLUTIONS.glob("*.ipynb"))}


def notebook_title(path: Path) -> str:
    return path.stem[3:].replace("_", " ")


# --- plans -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nb:
    number: str
    live: tuple[str, ...] = ()  # exercise keys done in the room; the rest of the notebook's exercises are homework


@dataclass(frozen=True)
class Pause:
    label: str  # "break", "lunch", "welcome and environment check", "wrap-up and questions"
    minutes: int


@dataclass(frozen=True)
class DaySpec:
    start: str  # "09:00"
    length_min: int
    items: tuple[Nb | Pause, ...]


@dataclass(frozen=True)
class PlanSpec:
    slug: str
    title: str
    audience: str
    days: tuple[DaySpec, ...]


WELCOME, WRAP = "welcome; `make doctor` results; the budget knob", "wrap-up and questions"
LAB = "exercise lab: the day's homework exercises, with the instructor in the room"
PLANS = (
    PlanSpec(
        "half-day",
        "Half-day (3.5 hours): from noise to samples",
        "a first contact: the forward process, schedules, training and fast sampling, on the shipped models",
        (
            DaySpec(
                "09:00",
                210,
                (
                    Pause(WELCOME, 10),
                    Nb("01", ("Ex1", "Ex3")),
                    Nb("02", ("Ex1",)),
                    Pause("break", 15),
                    Nb("04", ("Ex1",)),
                    Nb("05", ("Ex2",)),
                    Pause(WRAP, 5),
                ),
            ),
        ),
    ),
    PlanSpec(
        "one-day",
        "One day (8 hours with lunch): the DDPM pipeline to guided and latent generation",
        "engineers who want the whole pipeline once: every stage run live, one or two exercises per notebook",
        (
            DaySpec(
                "09:00",
                480,
                (
                    Pause(WELCOME, 10),
                    Nb("01", ("Ex1", "Ex3")),
                    Nb("02", ("Ex1",)),
                    Pause("break", 15),
                    Nb("03", ("Ex1",)),
                    Nb("04", ("Ex1", "Ex2")),
                    Pause("lunch", 60),
                    Nb("05", ("Ex2", "Ex3")),
                    Pause("break", 15),
                    Nb("06", ("Ex1",)),
                    Nb("07", ("Ex2",)),
                    Pause(WRAP, 10),
                ),
            ),
        ),
    ),
    PlanSpec(
        "three-day",
        "Three days (8 hours each with lunch): the whole course",
        "a course cohort: every notebook, most exercises live, derivations discussed in the room",
        (
            DaySpec(
                "09:00",
                480,
                (
                    Pause(WELCOME, 15),
                    Nb("01", ("Ex1", "Ex2", "Ex3", "Ex5")),
                    Pause("break", 15),
                    Nb("02", ("Warm-up", "Ex1", "Ex3")),
                    Nb("03", ("Ex1", "Ex3", "Ex4")),
                    Pause("lunch", 60),
                    Nb("04", ("Ex1", "Ex2", "Ex3", "Ex4")),
                    Pause("break", 15),
                    Pause(LAB, 60),
                    Pause(WRAP, 10),
                ),
            ),
            DaySpec(
                "09:00",
                480,
                (
                    Pause("questions on day 1's homework", 15),
                    Nb("05", ("Ex1", "Ex2", "Ex3")),
                    Pause("break", 15),
                    Nb("06", ("Ex1", "Ex3")),
                    Pause("lunch", 60),
                    Nb("07", ("Ex1", "Ex2", "Ex3")),
                    Pause("break", 15),
                    Nb("08", ("Ex1", "Ex2")),
                    Pause(LAB, 60),
                    Pause(WRAP, 10),
                ),
            ),
            DaySpec(
                "09:00",
                480,
                (
                    Pause("questions on day 2's homework", 15),
                    Nb("09", ("Ex1", "Ex3")),
                    Pause("break", 15),
                    Nb("10", ("Ex1", "Ex2")),
                    Nb("11", ("Ex1", "Ex3", "Ex4")),
                    Pause("lunch", 60),
                    Nb("12", ("Ex1", "Ex2")),
                    Pause("break", 15),
                    Pause(LAB, 60),
                    Pause(WRAP, 15),
                ),
            ),
        ),
    ),
)


@dataclass
class Slot:
    start_min: int  # minutes after midnight
    minutes: int
    label: str
    number: str | None = None  # a notebook slot's notebook
    budget: str | None = None
    run_s: float | None = None  # measured, from the README's table
    teaching_min: int = 0
    live: list[Exercise] = field(default_factory=list)
    homework: list[Exercise] = field(default_factory=list)


@dataclass
class Day:
    start_min: int
    length_min: int
    slots: list[Slot]

    @property
    def used_min(self) -> int:
        return sum(s.minutes for s in self.slots)


def budget_for(number: str, times: dict[str, dict[str, str]]) -> str:
    """``cpu`` if its measured cpu run is short enough to run live, else ``smoke``."""
    cpu = _seconds(times[number].get("cpu", ""))
    return "cpu" if cpu is not None and cpu <= LIVE_CPU_LIMIT_S else "smoke"


def _seconds(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None  # "not yet measured (...)"


def build_plan(spec: PlanSpec, times: dict[str, dict[str, str]], exercises: dict[str, list[Exercise]]) -> list[Day]:
    days = []
    for d in spec.days:
        clock = _minutes(d.start)
        slots = []
        for item in d.items:
            if isinstance(item, Pause):
                slots.append(Slot(clock, item.minutes, item.label))
            else:
                if item.number not in times:
                    raise KeyError(f"{spec.slug}: README.md's measured table has no row for notebook {item.number}")
                budget = budget_for(item.number, times)
                run_s = _seconds(times[item.number][budget])
                if run_s is None:
                    raise ValueError(f"{spec.slug}: notebook {item.number} has no measured {budget} run time")
                by_key = {e.key: e for e in exercises[item.number]}
                unknown = sorted(set(item.live) - set(by_key))
                if unknown:
                    raise KeyError(f"{spec.slug}: notebook {item.number} has no exercise {unknown}; has {list(by_key)}")
                live = [by_key[k] for k in item.live]
                homework = [e for e in exercises[item.number] if e.key not in item.live]
                minutes = TEACHING_MIN[item.number] + sum(e.minutes for e in live) + math.ceil(run_s / 60)
                slots.append(
                    Slot(clock, minutes, "", item.number, budget, run_s, TEACHING_MIN[item.number], live, homework)
                )
            clock += slots[-1].minutes
        day = Day(_minutes(d.start), d.length_min, slots)
        if day.used_min > d.length_min:
            raise ValueError(f"{spec.slug}: day {len(days) + 1} needs {day.used_min} min, more than {d.length_min}")
        days.append(day)
    return days


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def all_exercises() -> dict[str, list[Exercise]]:
    return {n: scan_exercises(p) for n, p in notebook_paths().items()}


def all_plans(readme: str | None = None) -> dict[str, list[Day]]:
    times, exercises = measured_times(readme), all_exercises()
    return {spec.slug: build_plan(spec, times, exercises) for spec in PLANS}


# --- rendering -------------------------------------------------------------------------------------------------------


def _run(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 100 else f"{seconds:g} s ({seconds / 60:.1f} min)"


def _ex(e: Exercise, with_minutes: bool = False) -> str:
    text = f"{e.key} {e.short} ({e.tier}"
    return text + (f", {e.minutes} min)" if with_minutes else ")")


def render(readme: str | None = None) -> str:
    times, exercises, paths = measured_times(readme), all_exercises(), notebook_paths()
    plans = {spec.slug: build_plan(spec, times, exercises) for spec in PLANS}
    out = [
        "# Workshop plans",
        "",
        "<!-- generated by tools/workshop_plans.py from README.md's measured run times and solutions/; "
        "edit the script, not this file -->",
        "",
        "Three timed agendas: a [half day](#half-day), [one day](#one-day) and [three days](#three-day). Two kinds of "
        "numbers are in them, and they are not alike:",
        "",
        "- **Run time (measured)**: the whole notebook executed end to end on the course's reference machine (2 CPU "
        "cores, no GPU), copied from README.md's \"Measured run times\" table at the budget the slot uses. A learner's "
        "laptop differs: `make doctor` times notebook 02 and prints how much slower or faster the machine is than the "
        "reference.",
        "- **Teaching, exercise and break minutes (planned)**: planning choices, not measurements. They are set in "
        "`tools/workshop_plans.py` (`TEACHING_MIN`, `EXERCISE_MIN`, the plans' breaks); change them there and "
        "regenerate with `python tools/workshop_plans.py`.",
        "",
        "A slot's minutes = teaching + its live exercises + the measured run time rounded up to the minute.",
        "",
        "## Which budget",
        "",
        f"A notebook runs live at `cpu` when its measured cpu run takes at most {LIVE_CPU_LIMIT_S} s "
        f"({LIVE_CPU_LIMIT_S / 60:g} min); otherwise at `smoke` (every check still runs, the figures are rougher). "
        "Learners set it for the whole session by starting JupyterLab as `DLIB_BUDGET=smoke make lab`, or per "
        'notebook in the first code cell (`BUDGET = "cpu"`). The `gpu` budget is measured for a few notebooks only '
        "(README.md's table), so no plan uses it; on a GPU machine `auto` picks it, and the times below do not apply.",
        "",
        "| notebook | smoke (measured) | cpu (measured) | live budget |",
        "|---|---|---|---|",
    ]
    for n in paths:
        if n in times:
            row = times[n]
            smoke, cpu = (f"{row[b]} s" if _seconds(row[b]) is not None else row[b] for b in ("smoke", "cpu"))
            live = f"`{budget_for(n, times)}`" if _seconds(row[budget_for(n, times)]) is not None else "not planned"
            out.append(f"| {n} {notebook_title(paths[n])} | {smoke} | {cpu} | {live} |")
    out += [
        "",
        "## What to pre-run",
        "",
        "- A week before: every learner runs `make doctor` (it installs nothing; `make venv` does) and sends you the "
        "output. A FAIL line names its fix.",
        "- The notebooks in `notebooks/` ship executed at the `cpu` budget: for a notebook run live at `smoke`, show "
        "the committed cpu figures on the projector (open the notebook before running it) and let learners run "
        "the smoke version.",
        "- Notebook 10 caches the Inception features of the test images on disk (`~/.cache/dlib/features`, or "
        "`$DLIB_CACHE`); its measured times assume that cache is already there. Have each learner run notebook 10 "
        "once at the workshop's budget before the day (`DLIB_BUDGET=smoke .venv/bin/jupyter nbconvert --to notebook "
        "--execute notebooks/10_metrics.ipynb --output-dir /tmp`); its first run was not measured.",
        "",
    ]
    for spec in PLANS:
        days = plans[spec.slug]
        out += [f"## {spec.slug}", "", f"**{spec.title}.** For {spec.audience}.", ""]
        for k, day in enumerate(days, 1):
            if len(days) > 1:
                out += [f"### Day {k}", ""]
            out += [
                "| start | slot | budget | run time (measured) | teaching (planned) | live exercises (planned) | minutes |",
                "|---|---|---|---|---|---|---|",
            ]
            for s in day.slots:
                if s.number is None:
                    out.append(f"| {_clock(s.start_min)} | *{s.label}* | | | | | {s.minutes} |")
                    continue
                secs = sections(paths[s.number])
                span = f"sections {secs[0].split('.')[0]}-{secs[-1].split('.')[0]}" if secs else "all"
                live = "; ".join(_ex(e, True) for e in s.live) or "none"
                out.append(
                    f"| {_clock(s.start_min)} | **{s.number} {notebook_title(paths[s.number])}** ({span}) "
                    f"| `{s.budget}` | {_run(s.run_s)} | {s.teaching_min} min | {live} | {s.minutes} |"
                )
            end = day.start_min + day.length_min
            out += [
                f"| {_clock(day.start_min + day.used_min)} | *end* ({day.length_min - day.used_min} min spare "
                f"before {_clock(end)}) | | | | | |",
                "",
            ]
        homework = [(s.number, s.homework) for day in days for s in day.slots if s.number and s.homework]
        covered = {s.number for day in days for s in day.slots if s.number}
        out += ["**Homework** (the exercises of the notebooks covered, not done live):", ""]
        out += [f"- {n}: " + "; ".join(_ex(e) for e in exs) for n, exs in homework] or ["- none"]
        rest = [n for n in paths if n not in covered]
        if rest:
            out += [
                "",
                "**After the workshop**: notebooks " + ", ".join(rest) + " (self-study; `solutions/` has "
                "the worked answers).",
            ]
        out.append("")
    out += [
        "## Every notebook's sections and exercises",
        "",
        "Exercise keys (`Ex3`, `Bug1`, `Warm-up`) are the ones the plans above use. An exercise whose heading names no "
        "tier is counted as core. Live minutes per tier (planned): "
        + ", ".join(f"{t} {m}" for t, m in EXERCISE_MIN.items())
        + ".",
        "",
    ]
    for n, p in paths.items():
        out += [f"### {n} {notebook_title(p)}", "", "Sections: " + "; ".join(sections(p)) + ".", ""]
        out += [f"- {e.key} ({e.tier}): {e.short}; in {e.section}" for e in exercises[n]] or ["- no exercises"]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/instructors/workshops.md is stale")
    args = parser.parse_args(argv)
    return write_or_check(OUT, render(), args.check, "python tools/workshop_plans.py")


def write_or_check(out: Path, text: str, check: bool, command: str) -> int:
    """Write a generated page, or with ``check`` only compare: 1 (and say which command regenerates it) if stale."""
    if check:
        if (out.read_text() if out.exists() else "") != text:
            print(f"{out.relative_to(ROOT)} is out of date: run {command}")
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
