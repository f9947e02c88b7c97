"""Post-processing and import policies: from a reply to the program that is judged."""

from __future__ import annotations

import ast
import json

import pytest

from idfu_lab.errors import IdfuError
from idfu_lab.generation.postprocess import (
    IMPORTS,
    POSTPROCESS,
    apply_policy,
    apply_rows,
    build_program,
    extract_code,
    fenced_blocks,
    header_lines,
    prompt_imports,
    sanitize_code,
)
from idfu_lab.problems import load_humaneval

CHAT = "qwen2-llama3-chat"


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval()


def test_extract_prefers_the_first_python_block():
    reply = "Here:\n```bash\npip install x\n```\nthen\n```python\ndef f():\n    return 1\n```\nand\n```python\nf()\n```"
    assert extract_code(reply) == "def f():\n    return 1\n"


def test_extract_takes_an_untagged_block_and_falls_back_to_any_block_then_text():
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```text\nhello\n```") == "hello\n"
    assert extract_code("def f():\n    return 2\n") == "def f():\n    return 2\n"


def test_extract_handles_a_reply_cut_inside_its_block():
    # max_new_tokens reached before the closing fence: the code up to the cut is still the code
    assert extract_code("Sure!\n```python\ndef f(x):\n    return x +") == "def f(x):\n    return x +"


def test_fenced_blocks_reads_tags_and_order():
    text = "a\n```Python3 title\nA\n```\nb\n```\nB\n```\n"
    assert fenced_blocks(text) == [("python3 title", "A\n"), ("", "B\n")]


def test_prompt_imports_of_a_humaneval_prompt(humaneval):
    assert prompt_imports(humaneval["HumanEval/0"].prompt) == ["from typing import List"]
    assert prompt_imports(humaneval["HumanEval/2"].prompt) == []


def test_raw_none_leaves_a_completion_row_unchanged(humaneval):
    row = {"task_id": "HumanEval/0", "completion": "    return True\n", "sample_index": 0}
    out = apply_policy(row, humaneval["HumanEval/0"])
    assert out["completion"] == row["completion"] and "solution" not in out
    assert out["raw"] == row["completion"] and out["postprocess"] == "raw" and out["imports"] == "none"
    assert out["sample_index"] == 0


def test_extract_runs_a_full_function_as_a_program_after_the_prompt_imports(humaneval):
    p = humaneval["HumanEval/0"]
    reply = f"Here you go:\n```python\n{p.reference}\n```\nIt sorts first."
    field, code = build_program(reply, p, postprocess="extract")
    assert field == "solution"
    assert code.startswith("from typing import List\n")
    assert code.count("from typing import List") == 1  # not added twice
    ast.parse(code)


def test_extract_appends_a_body_to_the_prompt(humaneval):
    p = humaneval["HumanEval/2"]
    field, code = build_program("```python\n    return number % 1.0\n```", p, postprocess="extract")
    assert (field, code) == ("completion", "    return number % 1.0\n")


def test_sanitize_drops_self_tests_prints_and_main_blocks():
    code = (
        "import math\nMOD = 10**9 + 7\n\n@staticmethod\ndef g(x):\n    return x\n\n"
        "def f(x):\n    return math.ceil(x)\n\n"
        "assert f(1.5) == 2\nprint(f(2.2))\nresult = f(3)\n"
        "if __name__ == '__main__':\n    print(f(1))\n"
        "for i in range(3):\n    f(i)\n"
    )
    out = sanitize_code(code)
    tree = ast.parse(out)
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Import", "Assign", "FunctionDef", "FunctionDef"]
    assert "@staticmethod" in out and "print" not in out and "assert" not in out


def test_sanitize_leaves_unparsable_code_alone():
    assert sanitize_code("def f(:\n") == "def f(:\n"


def test_sanitize_of_a_body_keeps_the_prompt_function(humaneval):
    p = humaneval["HumanEval/2"]
    field, code = build_program(
        "    return number % 1.0\nprint(truncate_number(3.5))\n", p, postprocess="sanitize"
    )
    assert field == "solution" and "print(" not in code and "def truncate_number" in code


def test_header_goes_before_the_prompt_and_code(humaneval):
    p = humaneval["HumanEval/2"]
    field, code = build_program("    return number % 1.0\n", p, postprocess="raw", imports="header")
    assert field == "solution"
    lines = code.splitlines()
    assert lines[: len(header_lines())] == header_lines()
    assert "from typing import *" in lines and "import math" in lines
    assert code.endswith(p.prompt + "    return number % 1.0\n")


def test_imports_prompt_adds_the_prompt_imports_to_a_solution(humaneval):
    p = humaneval["HumanEval/0"]
    solution = p.reference.replace("from typing import List\n", "")
    out = apply_policy({"task_id": p.task_id, "solution": solution}, p, imports="prompt")
    assert out["solution"].startswith("from typing import List\n")
    assert "completion" not in out
    bare = apply_policy({"task_id": p.task_id, "solution": solution}, p, imports="none")
    assert bare["solution"] == solution


def test_every_policy_yields_exactly_one_code_field_and_records_itself(humaneval):
    p = humaneval["HumanEval/0"]
    row = {"task_id": p.task_id, "completion": f"```python\n{p.reference}\n```"}
    for pp in POSTPROCESS:
        for imp in IMPORTS:
            out = apply_policy(row, p, postprocess=pp, imports=imp)
            assert ("completion" in out) != ("solution" in out)
            assert (out["postprocess"], out["imports"]) == (pp, imp)


def test_bad_policy_and_unknown_task_are_errors(humaneval):
    with pytest.raises(IdfuError, match="postprocess"):
        apply_rows([], humaneval, postprocess="strip")
    with pytest.raises(IdfuError, match="row 2: unknown task_id"):
        apply_rows(
            [{"task_id": "HumanEval/0", "completion": ""}, {"task_id": "HumanEval/999", "completion": ""}],
            humaneval,
        )
    with pytest.raises(IdfuError, match="neither"):
        apply_policy({"task_id": "HumanEval/0"}, humaneval["HumanEval/0"])


def test_mbpp_code_always_runs_as_a_program():
    from idfu_lab.problems import Problem

    p = Problem(
        task_id="11",
        prompt="Write f.\nassert f(1) == 1\n",
        test="assert f(1) == 1",
        entry_point="f",
        benchmark="mbpp",
    )
    out = apply_policy(
        {"task_id": "11", "completion": "```python\ndef f(x):\n    return x\n```"}, p, postprocess="extract"
    )
    assert out["solution"] == "def f(x):\n    return x\n"


def test_extract_reads_every_real_chat_reply(shared_data, humaneval):
    """On the real replies of four chat models, extraction always finds the function in a fence."""
    folder = shared_data / "humaneval-generations" / CHAT
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    for model in ("qwen2", "llama3"):
        with open(folder / model / "generations_python.jsonl") as fh:
            for line in fh:
                rec = json.loads(line)
                tid = rec["task_id"].replace("Python/", "HumanEval/")
                code = extract_code(rec["generation"])
                assert "```" not in code
                assert fenced_blocks(rec["generation"]), tid
