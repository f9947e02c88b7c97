"""The training entry point: ``idfu-lab train`` and ``accelerate launch -m idfu_lab.training.launch``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from idfu_lab.commands._common import add_config, add_no_progress, add_seeds, out_dir
from idfu_lab.config import Config
from idfu_lab.errors import IdfuError
from idfu_lab.training.dpo import train_seed
from idfu_lab.training.memory import GIB, estimate_for_config

logger = logging.getLogger(__name__)


def _parse_override(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise IdfuError(f"--set expects KEY=VALUE (e.g. dpo.max_steps=3), got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments shared by ``python -m idfu_lab.training.launch`` and ``idfu-lab train``."""
    p = parser or argparse.ArgumentParser(
        prog="python -m idfu_lab.training.launch",
        description="Train one seed's LoRA adapter with DPO (also an `accelerate launch -m` entry point).",
    )
    add_config(p, default="configs/tiny.yaml")
    add_seeds(p, "training seed(s), one after another (default: the recipe's)")
    p.add_argument("--run-dir", type=out_dir, help="run directory (default: runs/<config stem>)")
    p.add_argument(
        "--force", action="store_true", help="retrain even when the seed is done; drop its checkpoints"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set dpo.max_steps=3 (YAML value; repeatable)",
    )
    add_no_progress(p)
    p.add_argument(
        "--publish",
        action="store_true",
        help="after training (or for seeds already trained): rewrite the model card with the run's results and "
        "upload the adapter to <dpo.hub_model_id>-seed<s> (skipped, with the reason, when offline)",
    )
    p.add_argument(
        "--estimate-memory",
        action="store_true",
        help="print the GPU memory the recipe needs (4-bit and not, with and without checkpointing) and exit",
    )
    plan = p.add_argument_group("plan (offline, no weights, no GPU)")
    plan.add_argument(
        "--plan",
        action="store_true",
        help="print what the run will do (trainable parameters and dtypes, activations, dropout, loss, lengths, "
        "steps, memory, decoding) and exit",
    )
    plan.add_argument(
        "--pairs", help="pairs JSONL whose lengths the plan checks (default: the run's audited pairs)"
    )
    plan.add_argument("--card-gib", type=float, help="GPU memory of the card to plan for, in GiB (e.g. 8)")
    plan.add_argument(
        "--device", choices=("cuda", "cpu"), help="plan for this device (default: cuda for a GPU recipe)"
    )
    plan.add_argument("--processes", type=int, default=1, help="data-parallel processes (accelerate launch)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    return p


def _open_run(config: str, seed: int, run_dir: str | None, overrides: dict[str, Any]) -> Any:
    """The seed's run: the main process writes provenance, the others only read (no racing writes)."""
    from accelerate import PartialState

    from idfu_lab import runs
    from idfu_lab.config import load_config

    state = PartialState()
    if state.is_main_process:
        run = runs.open(config, seed=seed, run_dir=run_dir, overrides=overrides)
    state.wait_for_everyone()
    if not state.is_main_process:
        cfg = load_config(config, overrides=overrides)
        run = runs.Run(config=cfg, dir=Path(run_dir) if run_dir else runs.default_run_dir(cfg), seed=seed)
        runs.seed_everything(seed)
    return run


def launcher_problem(
    device_count: int, env: Mapping[str, str], *, config: str = "configs/paper.yaml"
) -> str | None:
    """Why this process must not train as it was started (None: it may), with how to run instead (pure).

    One process that sees several GPUs makes the Trainer wrap the model in ``nn.DataParallel``,
    which TRL's DPOTrainer refuses deep inside its first step ("does not support nn.DataParallel").
    Said here, before anything is loaded.
    """
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if device_count <= 1 or world > 1:
        return None
    accumulation = max(1, 4 // device_count)
    return (
        f"{device_count} GPUs are visible to a single training process; the trainer would wrap the model in "
        "nn.DataParallel, which TRL's DPOTrainer does not support. Either train on one GPU "
        f"(CUDA_VISIBLE_DEVICES=0 idfu-lab train --config {config} --seed 42; other seeds on the other GPUs, "
        f"CUDA_VISIBLE_DEVICES=1 ... --seed 123), or train one seed data-parallel on all of them: "
        f"accelerate launch --config_file configs/accelerate/multi_gpu_ddp.yaml --num_processes {device_count} "
        f"-m idfu_lab.training.launch --config {config} --seed 42 --set dpo.gradient_accumulation_steps={accumulation} "
        f"(keeps the study's effective batch of 4 with {device_count} processes)."
    )


def check_launcher(config: str = "configs/paper.yaml") -> None:
    """Raise :class:`IdfuError` with :func:`launcher_problem`'s advice when it applies to this process."""
    import torch

    if not torch.cuda.is_available():
        return
    problem = launcher_problem(torch.cuda.device_count(), os.environ, config=config)
    if problem:
        raise IdfuError(problem)


def _is_main() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def memory_table(cfg: Config) -> list[dict[str, Any]]:
    """The estimate for the recipe's model under the four combinations of 4-bit and checkpointing."""
    rows = []
    for q in (True, False):
        for ckpt in (True, False):
            c = dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, gradient_checkpointing=ckpt))
            est = estimate_for_config(c, load_in_4bit=q)
            rows.append({"load_in_4bit": q, "gradient_checkpointing": ckpt, **est.as_dict()})
    return rows


def run_from_args(args: argparse.Namespace, echo: Any = None) -> int:
    """Run the parsed arguments; ``echo`` prints a line (the CLI passes ``print``; the module logs)."""
    from idfu_lab.config import load_config

    say = echo or logger.info
    overrides = dict(_parse_override(o) for o in args.overrides)
    if getattr(args, "plan", False):
        return _print_plan(args, overrides, say)
    if args.estimate_memory:
        cfg = load_config(args.config, overrides=overrides)
        say(f"GPU memory for one DPO step of {cfg.model.name_or_path} at max_length {cfg.dpo.max_length}:")
        for r in memory_table(cfg):
            say(
                f"  4-bit {'yes' if r['load_in_4bit'] else 'no ':3s}  checkpointing {'yes' if r['gradient_checkpointing'] else 'no ':3s}"
                f"  {r['total'] / GIB:6.2f} GiB  (weights {r['weights'] / GIB:.2f}, activations {r['activations'] / GIB:.2f})"
            )
        from idfu_lab.training.memory import ASSUMPTIONS

        say("Assumptions: " + "; ".join(ASSUMPTIONS) + ".")
        return 0
    seeds = args.seeds or load_config(args.config, overrides=overrides).seeds
    for seed in seeds:
        run = _open_run(args.config, seed, args.run_dir, overrides)
        result = train_seed(run, force=args.force, progress=not args.no_progress)
        s = result.summary
        if not result.skipped:
            from idfu_lab.report.plots.training import save_figures

            save_figures(run)
        if args.publish:
            from idfu_lab.training.publish import publish_seed

            if _is_main():
                done = publish_seed(run, force=True)
                run.update_manifest(published=done)
                say(
                    f"seed {seed}: published to {done['repo_id']}"
                    if done["pushed"]
                    else f"seed {seed}: not published ({done['reason']}); model card: {done['card']}"
                )
        if result.skipped:
            say(f"seed {seed}: already trained (skipped; --force retrains): {result.paths.dir}")
        else:
            say(
                f"seed {seed}: {s['global_steps']} steps on {s['n_train']} pairs "
                f"({s['n_filtered_prompt_too_long']} filtered) in {s['wall_time_s']:.1f} s; final loss "
                f"{s['final_loss']:.4f}, mean margin {s['mean_margin']:.4f}; adapter: {result.adapter_dir}"
            )
    return 0


def _print_plan(args: argparse.Namespace, overrides: dict[str, Any], say: Any) -> int:
    import json

    from idfu_lab import runs
    from idfu_lab.config import load_config
    from idfu_lab.training.plan import build_plan, plan_markdown

    cfg = load_config(args.config, overrides=overrides)
    pairs = args.pairs
    if pairs is None:
        default = runs.RunLayout(
            Path(args.run_dir) if args.run_dir else runs.default_run_dir(cfg)
        ).train_pairs
        pairs = default if default.exists() else None
    elif not Path(pairs).exists():
        raise IdfuError(f"--pairs {pairs}: no such file")
    plan = build_plan(
        cfg, device=args.device, pairs_path=pairs, card_gib=args.card_gib, processes=args.processes
    )
    say(json.dumps(plan, indent=2, default=str) if args.json else plan_markdown(plan))
    return 0


def _without_unused_bitsandbytes(args: argparse.Namespace) -> None:
    """A recipe that never uses bitsandbytes trains without importing it, as its notebook kernels do
    (:data:`idfu_lab.pipeline.WITHOUT_BITSANDBYTES`). Only for a process of its own: the mark holds
    for everything the process does afterwards."""
    from idfu_lab.config import load_config

    try:
        cfg = load_config(args.config, overrides=dict(_parse_override(o) for o in args.overrides))
    except IdfuError:
        return  # run_from_args reports it
    if not cfg.uses_bitsandbytes:
        sys.modules.setdefault("bitsandbytes", None)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """``python -m idfu_lab.training.launch`` / ``accelerate launch -m idfu_lab.training.launch``
    (``own_process``: nothing else runs in this interpreter)."""

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if own_process:
            _without_unused_bitsandbytes(args)
        return run_from_args(args)
    except IdfuError as e:
        logger.error("%s", e)
        return 2


if __name__ == "__main__":
    # `python -m` runs this file as __main__; delegate to the imported module so there is one copy of it
    from idfu_lab.training.launch import main as _main

    sys.exit(_main(own_process=True))
