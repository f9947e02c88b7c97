"""Prompt templates: how a benchmark problem becomes what the model reads.

One module so that training, pair curation and evaluation ask the model the same question in the
same words — a template mismatch between the pairs and the evaluation is one of the quiet ways a
preference-training result stops meaning what it says. The template is configuration
(``generation.template``) and is recorded with every generation.

- ``instruct``: the study's set-up for an instruct model: the problem in a fenced block, asked for a
  complete function in one Python code block.
- ``qwen_eval``: the wording of the Qwen2.5-Coder evaluation suite's instruct prompt ("complete the
  function and return all code in a code block").
- ``completion``: a base model continues the prompt itself; no chat template.
"""

from __future__ import annotations

from typing import Any

TEMPLATES = ("instruct", "qwen_eval", "completion")

INSTRUCT_TEMPLATE = (
    "Complete the following Python function. Return the complete function, with any imports it needs, "
    "in a single ```python code block.\n\n```python\n{prompt}\n```"
)

QWEN_EVAL_TEMPLATE = (
    "Complete the following python code and return all code in a code block:\n```python\n{prompt}\n```"
)


def user_message(problem_prompt: str, template: str) -> str:
    """The user turn for a chat model."""
    if template == "instruct":
        return INSTRUCT_TEMPLATE.format(prompt=problem_prompt.strip("\n"))
    if template == "qwen_eval":
        return QWEN_EVAL_TEMPLATE.format(prompt=problem_prompt.strip("\n"))
    raise ValueError(f"template {template!r} has no chat form (templates: {', '.join(TEMPLATES)})")


def messages(problem_prompt: str, template: str) -> list[dict[str, Any]]:
    """Conversational form (TRL's and the chat template's): a single user turn."""
    return [{"role": "user", "content": user_message(problem_prompt, template)}]


def render(tokenizer: Any, problem_prompt: str, template: str, *, chat: bool = True) -> str:
    """The exact text fed to the model: the chat template with a generation prompt, or the raw prompt."""
    if template == "completion" or not chat:
        return problem_prompt
    return tokenizer.apply_chat_template(
        messages(problem_prompt, template), tokenize=False, add_generation_prompt=True
    )
