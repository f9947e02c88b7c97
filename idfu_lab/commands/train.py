"""``idfu-lab train``: DPO + LoRA for one or more seeds (``idfu_lab.training.dpo.train_seed``, as notebook 02)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the LoRA adapter of each seed with DPO (resumable; a finished seed is skipped)",
        description=(
            "Train one seed's LoRA adapter with TRL's DPOTrainer on the pairs the audit kept "
            "(audit/train_pairs.jsonl), and write the adapter, log history, per-pair margins and summary "
            "under <run-dir>/seed-<s>/train/. Seeds are independent: run one per job on a cluster. For "
            "several GPUs: accelerate launch -m idfu_lab.training.launch with the same arguments."
        ),
    )
    from idfu_lab.training.launch import build_parser

    build_parser(p)
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from idfu_lab.training.launch import run_from_args

    return run_from_args(args, echo=print)
