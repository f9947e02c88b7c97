"""Manual delta labels: the CSV's rules, merging with the automatic labels, and the widget writing the file."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from helpers import result_row as _row

from idfu_lab.analysis import annotate, delta
from idfu_lab.errors import IdfuError
from idfu_lab.problems import load_humaneval

GCD_SIG = "def greatest_common_divisor(a: int, b: int) -> int:\n"
GCD_OK = GCD_SIG + "    while b:\n        a, b = b, a % b\n    return a\n"
GCD_BAD = GCD_SIG + "    return min(a, b)\n"
GCD_MATH = GCD_SIG + "    return math.gcd(a, b)\n"
HEADER = "task_id,transition,auto_labels,human_label,note,annotator,date\n"


@pytest.fixture(scope="module")
def data():
    base = [
        _row("GCD/1", "ASSERTION_FAIL", "test", solution=GCD_BAD),
        _row("GCD/2", "NAME_ERROR", "test", "name 'math' is not defined", solution=GCD_MATH),
        _row("GCD/3", "PASS", solution=GCD_OK),
    ]
    tuned = [
        _row("GCD/1", "PASS", solution=GCD_OK),
        _row("GCD/2", "PASS", solution="import math\n" + GCD_MATH),
        _row("GCD/3", "PASS", solution=GCD_OK),
    ]
    he = load_humaneval()
    problems = {f"GCD/{i}": dataclasses.replace(he["HumanEval/13"], task_id=f"GCD/{i}") for i in (1, 2, 3)}
    return delta.trace(base, tuned, problems).to_dict()


def test_paths(tmp_path, monkeypatch):
    assert annotate.annotations_path("tiny", 42, tmp_path) == tmp_path / "tiny" / "seed-42.csv"
    monkeypatch.setenv(annotate.ENV_DIR, str(tmp_path / "elsewhere"))
    assert annotate.annotations_path("tiny", 7) == tmp_path / "elsewhere" / "tiny" / "seed-7.csv"
    monkeypatch.delenv(annotate.ENV_DIR)
    assert annotate.annotations_path("tiny", 7).parts[-3:] == ("annotations", "tiny", "seed-7.csv")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("task_id,human_label\nA/1,logic_changed\n", r"<t>:1: missing column\(s\) transition"),
        (HEADER + ",fail_to_pass,,,,,\n", "<t>:2: empty task_id"),
        (HEADER + "A/1,,,,,,\nA/1,,,,,,\n", "<t>:3: task A/1 already annotated on line 2"),
        (HEADER + "A/1,fail_to_win,,,,,\n", "<t>:2: unknown transition 'fail_to_win'"),
        (HEADER + "A/1,,,cosmic_rays,,me,2025-01-01\n", "<t>:2: unknown human_label 'cosmic_rays'"),
        (
            HEADER + "A/1,,,logic_changed,,,2025-01-01\n",
            "<t>:2: human_label 'logic_changed' without an annotator",
        ),
        (HEADER + "A/1,,,logic_changed,,me,\n", "without a date"),
        (HEADER + "A/1,,,logic_changed,,me,01/02/2025\n", "<t>:2: date must be YYYY-MM-DD"),
    ],
)
def test_parse_rejects_bad_files(text, error):
    with pytest.raises(IdfuError, match=error):
        annotate.parse_annotations(text, "<t>")


def test_round_trip_keeps_extra_columns_and_sorts(tmp_path):
    rows = [
        {
            "task_id": "HumanEval/10",
            "transition": "fail_to_pass",
            "auto_labels": "logic_changed",
            "human_label": "",
            "note": "",
            "annotator": "",
            "date": "",
            "reviewer": "b",
        },
        {
            "task_id": "HumanEval/9",
            "transition": "pass_to_fail",
            "auto_labels": "self_test_added",
            "human_label": "self_test_added",
            "note": 'a note, with "quotes"',
            "annotator": "a",
            "date": "2025-03-01",
        },
    ]
    path = annotate.write_annotations(tmp_path / "x" / "seed-1.csv", rows)
    back = annotate.read_annotations(path)
    assert [r["task_id"] for r in back] == ["HumanEval/9", "HumanEval/10"]
    assert back[0]["note"] == 'a note, with "quotes"' and back[1]["reviewer"] == "b"
    assert annotate.read_annotations(tmp_path / "absent.csv") == []
    with pytest.raises(IdfuError):
        annotate.write_annotations(tmp_path / "bad.csv", [{"task_id": "A/1", "human_label": "nonsense"}])
    assert not (tmp_path / "bad.csv").exists()


def test_merge_agreement_and_validate(data):
    p1, p2 = data["problems"]
    rows = [
        annotate.record(p1, "logic_changed", "real fix", "ana", "2025-02-01"),
        annotate.record(p2, "format_only", "", "ana", "2025-02-01"),
        {
            **annotate.record(
                {"task_id": "HumanEval/99", "transition": "fail_to_pass", "labels": []}, "", ""
            ),
            "date": "",
        },
    ]
    merged = annotate.merge(data, rows).set_index("task_id")
    assert merged.loc["GCD/1", "label"] == "logic_changed" and merged.loc["GCD/1", "source"] == "human"
    assert bool(merged.loc["GCD/1", "agree"]) and bool(merged.loc["GCD/1", "kind_agree"])
    assert not bool(merged.loc["GCD/2", "agree"])  # the person saw formatting, the machine an import
    assert bool(merged.loc["GCD/2", "kind_agree"])  # both behavioural
    assert "HumanEval/99" not in merged.index
    stats = annotate.agreement(merged.reset_index())
    assert stats == {"changed": 2, "judged": 2, "unclear": 0, "agree": 1, "kind_agree": 2, "agree_rate": 0.5}
    warnings = annotate.validate(rows, data)
    assert warnings == ["HumanEval/99: annotated but not a changed problem of this delta"]
    stale = [{**rows[0], "auto_labels": "format_only"}]
    assert "automatic labels were format_only, now logic_changed" in annotate.validate(stale, data)[0]
    # nothing judged: the book shows the automatic labels, marked as such
    merged = annotate.merge(data)
    assert merged["label"].tolist() == ["logic_changed (automatic)", "import_added (automatic)"]
    assert merged["agree"].isna().all()


def test_widget_steps_and_writes_the_file(data, tmp_path):
    pytest.importorskip("ipywidgets")
    path = tmp_path / "annotations" / "demo" / "seed-42.csv"
    view = annotate.AnnotationView(data, path, annotator="")
    assert "GCD/1" in view.header.value and "logic_changed" in view.labels_html.value
    assert "<table" in view.diff_html.value
    view.choice.value = "logic_changed"
    assert view.save() is None and "annotator" in view.status.value  # who judged is required
    view.annotator.value = "ana"
    view.note.value = "min() is not Euclid"
    assert view.save() == path
    view.next_button.click()
    assert view.index == 1 and view.choice.value == ""
    view.choice.value = "import_added"
    view.save_button.click()
    view.next_button.click()  # clamped at the last problem
    assert view.index == 1
    view.prev_button.click()
    assert view.choice.value == "logic_changed" and view.note.value == "min() is not Euclid"
    rows = annotate.read_annotations(path)
    assert [(r["task_id"], r["human_label"], r["annotator"]) for r in rows] == [
        ("GCD/1", "logic_changed", "ana"),
        ("GCD/2", "import_added", "ana"),
    ]
    assert rows[0]["auto_labels"] == "logic_changed" and rows[0]["date"] == dt.date.today().isoformat()
    # saving again replaces the row instead of adding one
    view.choice.value = "unclear"
    view.save()
    assert len(annotate.read_annotations(path)) == 2
    empty = annotate.AnnotationView({"n": 0, "tasks": {}, "problems": []}, tmp_path / "e.csv")
    assert "nothing to annotate" in empty.header.value and empty.save() is None


def test_a_persons_label_on_judged_samples_reaches_the_split(tmp_path):
    """Notebook 05's path on samples judged by the real executor: trace the seed, read the person's
    file, then the split and the agreement use the person's label where there is one."""
    from helpers import write_story_run

    run_dir = tmp_path / "tiny"
    write_story_run(run_dir, {42: "tuned"})
    results = run_dir / "seed-42" / "results"
    d = delta.trace_files(
        results / "base.jsonl", results / "tuned.jsonl", out_dir=run_dir / "seed-42" / "delta"
    )
    assert (d["fail_to_pass"], d["pass_to_fail"]) == (3, 1)
    judged_problem = next(p for p in d["problems"] if p["task_id"] == "HumanEval/23")
    path = annotate.annotations_path("tiny", 42, tmp_path / "annotations")
    annotate.write_annotations(
        path,
        [annotate.record(judged_problem, "self_test_removed", "the assert expected 4", "ana", "2025-05-01")],
    )
    judged = annotate.read_annotations(path)
    human = annotate.human_labels(judged)
    assert human == {"HumanEval/23": "self_test_removed"}
    split = delta.split(d, human)
    assert split.net_pp == pytest.approx(100 * 2 / 6)
    stats = annotate.agreement(annotate.merge(d, judged))
    assert stats["judged"] == 1 and stats["agree"] == 1
    changed = annotate.changed_table(d, judged)
    assert "the assert expected 4" in changed.to_string()
