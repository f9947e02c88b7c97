"""Publishing a seed's adapter: a model card generated from the run, and an optional push to the Hub.

The card (``seed-<s>/train/adapter/README.md``, written after every training and rewritten when the
seed is published) is made from the run's own files, never typed: the resolved recipe and its hash,
the data hashes from the manifests, the audit's summary (``audit/audit.json``), the training summary
(steps, loss, margins, the numerics and dropout in effect) and, once the seed is evaluated
(``results/evaluation.json``), pass@1 of base and tuned with their intervals and the paired test.

With ``dpo.push_to_hub: true`` and ``dpo.hub_model_id: <user>/<name>`` the adapter folder is uploaded
to ``<user>/<name>-seed<s>`` after training; ``idfu-lab train ... --publish`` (re)publishes seeds
already trained, e.g. once they are evaluated, so the card carries the results. Offline
(``HF_HUB_OFFLINE``) or without a token, nothing is uploaded and the reason is said; the card is
written anyway.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, int | float) else f"{100 * x:.2f} %"


def repo_id(hub_model_id: str, seed: int) -> str:
    """The Hub repository of one seed's adapter."""
    return f"{hub_model_id}-seed{seed}"


def model_card(run: Any) -> str:
    """The adapter's model card (Markdown with Hugging Face metadata) from the run's files."""
    from idfu_lab.training.dpo import TrainPaths

    cfg = run.config
    paths = TrainPaths.for_run(run)
    summary = _read_json(paths.summary) or {}
    manifest = run.manifest()
    run_manifest = _read_json(run.layout.manifest) or {}
    audit = _read_json(run.layout.audit_json)
    evaluation = _read_json(run.layout.results_dir(run.seed) / "evaluation.json")
    meta = {
        "base_model": cfg.model.name_or_path,
        "library_name": "peft",
        "tags": ["dpo", "lora", "trl", "idfu-lab", f"seed-{run.seed}"],
        "pipeline_tag": "text-generation",
    }
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", ""]
    lines += [
        f"# LoRA adapter: {cfg.model.name_or_path}, DPO, seed {run.seed}",
        "",
        f"{cfg.description}".strip(),
        "",
        "Trained with idfu-lab's `"
        + (cfg.profile or "custom")
        + "` recipe (TRL DPOTrainer + PEFT LoRA). Everything below is generated from the run directory.",
        "",
        "## Recipe",
        "",
        "| key | value |",
        "|---|---|",
    ]
    recipe = {
        "config hash": run.config_hash,
        "LoRA": f"r {cfg.lora.r}, alpha {cfg.lora.lora_alpha}, on {', '.join(cfg.lora.target_modules)}",
        "dropout in effect": (summary.get("dropout") or {}).get("lora_dropout", "n/a"),
        "DPO": f"beta {cfg.dpo.beta}, loss {cfg.dpo.loss_type}, lr {cfg.dpo.learning_rate}",
        "batch": f"{cfg.dpo.per_device_train_batch_size} x {cfg.dpo.gradient_accumulation_steps} accumulation",
        "epochs / steps": f"{cfg.dpo.num_train_epochs} / {summary.get('global_steps', 'n/a')}",
        "lengths": f"max_length {cfg.dpo.max_length}, max_prompt_length {cfg.dpo.max_prompt_length}",
        "base weights": (
            f"4-bit {cfg.model.bnb_4bit_quant_type}, {cfg.model.bnb_4bit_compute_dtype} compute"
            if (summary.get("precision") or {}).get("load_in_4bit")
            else f"{(summary.get('precision') or {}).get('torch_dtype', 'n/a')} (not quantised)"
        ),
        "trainable dtype": ", ".join((summary.get("numerics") or {}).get("trainable_dtypes", [])) or "n/a",
        "seed": run.seed,
    }
    lines += [f"| {k} | {v} |" for k, v in recipe.items()]
    lines += ["", "<details><summary>the resolved recipe</summary>", "", "```yaml"]
    lines += [yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip(), "```", "", "</details>", ""]

    lines += ["## Data", "", "| file | sha256 |", "|---|---|"]
    hashes = {run.layout.relative(run.layout.train_pairs): summary.get("pairs_sha256")}
    for name, value in (run_manifest.get("data_hashes") or manifest.get("data_hashes") or {}).items():
        hashes.setdefault(name, value)
    lines += [f"| {k} | `{v}` |" for k, v in hashes.items() if v]
    lines += [
        "",
        f"Pairs: {summary.get('n_pairs_in', 'n/a')} read, {summary.get('n_train', 'n/a')} trained, "
        f"{summary.get('n_filtered_prompt_too_long', 'n/a')} dropped (prompt over max_prompt_length).",
        "",
    ]

    lines += ["## Audit", ""]
    if audit is None:
        lines += ["No audit summary in this run.", ""]
    else:
        scalars = {k: v for k, v in audit.items() if isinstance(v, int | float | str | bool)}
        lines += ["| item | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in list(scalars.items())[:25]]
        lines.append("")

    lines += ["## Training", ""]
    if summary:
        lines += [
            f"Final loss {summary.get('final_loss')}, reward accuracy {summary.get('final_reward_accuracy')}, "
            f"mean implicit reward margin {summary.get('mean_margin')}, share of pairs with a positive "
            f"margin {_pct(summary.get('share_margin_positive'))}; {summary.get('global_steps')} optimizer steps "
            f"in {summary.get('train_time_s', 0):.0f} s.",
            "",
        ]
    lines += ["## Results", ""]
    if evaluation is None:
        lines += [
            "Not evaluated yet (run notebook 03, then `idfu-lab train ... --publish` to update this card).",
            "",
        ]
    else:
        c = evaluation.get("comparison") or {}
        level = 100 * (1 - c.get("alpha", 0.05))
        lines += [
            f"{evaluation.get('benchmark')}, {evaluation.get('n_problems')} problems, greedy pass@1 "
            f"({level:.0f} % intervals):",
            "",
            "| model | pass@1 | interval |",
            "|---|---|---|",
        ]
        for m in ("base", "tuned"):
            iv = c.get(m) or {}
            lines.append(
                f"| {m} | {_pct(iv.get('pass1', (evaluation.get('pass1') or {}).get(m)))} | "
                f"{_pct(iv.get('low'))} to {_pct(iv.get('high'))} ({iv.get('method', 'n/a')}) |"
            )
        lines += [
            "",
            f"Difference {_pct(c.get('diff'))}: paired bootstrap {_pct(c.get('boot_low'))} to "
            f"{_pct(c.get('boot_high'))}, Newcombe {_pct(c.get('newcombe_low'))} to {_pct(c.get('newcombe_high'))}; "
            f"McNemar p = {c.get('mcnemar_p')}; {len(c.get('gained', []))} problems gained, "
            f"{len(c.get('lost', []))} lost.",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{cfg.model.name_or_path}")',
        'model = PeftModel.from_pretrained(base, "<this repository>")',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(run: Any) -> Path:
    """Write the card into the seed's adapter folder (``README.md``, what the Hub shows)."""
    from idfu_lab.training.dpo import TrainPaths

    adapter = TrainPaths.for_run(run).adapter
    if not adapter.is_dir():
        raise IdfuError(f"{adapter}: seed {run.seed} has no adapter (train it first)")
    card = adapter / "README.md"
    card.write_text(model_card(run), encoding="utf-8")
    return card


def offline_reason() -> str | None:
    """Why nothing can be uploaded from here (None: the Hub may be reachable with a token)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return "huggingface_hub is not installed"
    if not get_token():
        return "no Hugging Face token (huggingface-cli login, or HF_TOKEN)"
    return None


def publish_seed(run: Any, *, force: bool = False) -> dict[str, Any]:
    """Write the card and, where the recipe asks and the Hub is reachable, upload the adapter folder.

    Returns what happened (``card``, ``pushed``, ``repo_id``, ``reason``); nothing is raised for being
    offline, which is the common case: the reason is logged and returned.
    """
    from idfu_lab.training.dpo import TrainPaths

    cfg = run.config
    card = write_model_card(run)
    result: dict[str, Any] = {"card": str(card), "pushed": False, "repo_id": None, "reason": None}
    if not (cfg.dpo.push_to_hub or force):
        result["reason"] = "dpo.push_to_hub is false"
        return result
    if not cfg.dpo.hub_model_id:
        raise IdfuError(
            f"{cfg.source or 'the recipe'}: dpo.push_to_hub needs dpo.hub_model_id (<user>/<name>)"
        )
    rid = repo_id(cfg.dpo.hub_model_id, run.seed)
    result["repo_id"] = rid
    reason = offline_reason()
    if reason is not None:
        result["reason"] = reason
        logger.warning(
            "adapter of seed %s not published to %s: %s (the model card is in %s)",
            run.seed,
            rid,
            reason,
            card,
        )
        return result
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(rid, exist_ok=True)
        api.upload_folder(
            repo_id=rid,
            folder_path=str(TrainPaths.for_run(run).adapter),
            commit_message=f"idfu-lab: seed {run.seed}, recipe {run.config_hash[:12]}",
        )
    except Exception as e:  # noqa: BLE001 - network and permission errors all mean "not published"
        result["reason"] = f"upload failed: {e}"
        logger.warning("adapter of seed %s not published to %s: %s", run.seed, rid, e)
        return result
    result["pushed"] = True
    logger.info("published seed %s's adapter to %s", run.seed, rid)
    return result
