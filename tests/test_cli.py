"""The command line: options spelt alike everywhere, unusable outputs refused before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idfu_lab.cli import build_parser, main


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--config", "tiny", "--out", "{tmp}"], "is a folder; give a file name"),
        (["import", "x.jsonl", "--format", "humaneval", "--out", "{file}/g.jsonl"], "which is a file"),
        (["audit", "pairs.jsonl", "--out", "{file}"], "is a file; give a folder"),
        (["delta", "a.jsonl", "b.jsonl", "--out", "{file}/sub/dir"], "which is a file"),
        (["curate", "--config", "tiny", "--problems", "p", "--out", "{tmp}"], "is a folder"),
        (["run", "--run-dir", "{file}"], "is a file; give a folder"),
        (["evaluate", "samples.jsonl", "--out", "{tmp}"], "is a folder; give a file name"),
        (["evaluate-merge", "a.jsonl", "--out", "{file}/merged.jsonl"], "which is a file"),
    ],
)
def test_an_unusable_out_is_an_argument_error(tmp_path, capsys, argv, message) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    argv = [a.format(tmp=tmp_path, file=file) for a in argv]
    err = _error(capsys, argv)
    assert message in err and "argument" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused(tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in _error(capsys, ["audit", "p.jsonl", "--out", str(locked / "out")])


def test_options_are_spelt_alike_across_commands() -> None:
    """--config for a recipe, --seeds for training seeds, --seed for one sampling seed, --no-progress."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public walk
    for name, sub in commands.items():
        options = {o for a in sub._actions for o in a.option_strings}  # noqa: SLF001
        positionals = [a.dest for a in sub._actions if not a.option_strings]  # noqa: SLF001
        assert "config" not in positionals or name == "config", f"{name}: the recipe is --config"
        if "--seeds" in options:
            seeds = next(a for a in sub._actions if "--seeds" in a.option_strings)  # noqa: SLF001
            assert seeds.nargs == "+", name
        assert "--quiet" not in options or "--no-progress" in options, name
    for name in ("run", "train", "generate", "curate", "audit"):
        options = {o for a in commands[name]._actions for o in a.option_strings}  # noqa: SLF001
        assert "--config" in options, name
    assert {"--seeds"} <= {o for a in commands["train"]._actions for o in a.option_strings}  # noqa: SLF001


def test_every_command_has_a_description() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, sub in commands.items():
        assert sub.description, f"`idfu-lab {name} --help` has no description"


def test_config_accepts_the_recipe_either_way(capsys) -> None:
    assert main(["config", "tiny"]) == 0
    by_position = capsys.readouterr().out
    assert main(["config", "--config", "tiny"]) == 0
    assert capsys.readouterr().out == by_position


def test_a_summary_is_printed_once(tmp_path, repo: Path) -> None:
    """The command prints its result; the package does not log the same line again (a real process)."""
    fixture = repo / "idfu_lab" / "data" / "fixture_pairs.jsonl"
    argv = ["audit", str(fixture), "--problems", "humaneval", "--out", str(tmp_path / "a")]
    proc = subprocess.run(
        [sys.executable, "-m", "idfu_lab.cli", *argv], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "parity violation" in line]
    assert len(lines) == 1, lines


def test_a_command_reads_notebooks_without_the_iri_checks(repo: Path) -> None:
    """As in the kernels (``pipeline.WITHOUT_IRI_CHECKS``): a command's process, which reads notebooks
    through nbformat, leaves jsonschema's IRI format checks out; every other format check is kept."""
    code = (
        "import sys\n"
        "from idfu_lab.cli import main\n"
        "assert main(['config', 'tiny']) == 0\n"
        "import jsonschema, nbformat\n"
        "checked = jsonschema.FormatChecker().checkers\n"
        "print(sys.modules['rfc3987_syntax'] is None, 'iri' in checked, 'date-time' in checked)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "True False True"
