"""DPO training on the tiny model, on a CPU: what changes, what does not, and what is written.

Every test trains for real (TRL's DPOTrainer, PEFT LoRA, the tiny Qwen2 model) for a few optimizer
steps; the pairs are the shipped fixture, labelled by running each rejected reply against its tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from idfu_lab import runs
from idfu_lab.config import load_config, repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.outcomes import outcome_for_exception
from idfu_lab.report.plots.training import save_figures
from idfu_lab.training import dpo as train
from idfu_lab.training import launch, memory

FIXTURE = repo_root() / "idfu_lab" / "data" / "fixture_pairs.jsonl"
#: A short, fast schedule: 5 optimizer steps of 4 pairs, a checkpoint every 2.
FAST = {"dpo.max_steps": 5, "dpo.save_steps": 2}


def _rejected_verdict(row: dict) -> tuple[str, str | None]:
    """Run a fixture pair's rejected code, then its asserts: (outcome, phase), as the audit records them."""
    m = re.search(r"```python\n(.*?)```", row["rejected"], re.S)
    code = m.group(1) if m else row["rejected"]
    namespace: dict = {}
    try:
        exec(compile(row.get("test_setup_code", "") + "\n" + code, "<rejected>", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - any failure is a verdict
        return str(outcome_for_exception(e)), "definition"
    try:
        exec("\n".join(row["test_list"]), namespace)
    except BaseException as e:  # noqa: BLE001
        return str(outcome_for_exception(e)), "test"
    return "PASS", None


def write_train_pairs(path: Path, limit: int | None = None) -> list[dict]:
    """audit/train_pairs.jsonl from the fixture: only pairs whose rejected side really fails."""
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    out = []
    for row in rows:
        outcome, phase = _rejected_verdict(row)
        if outcome == "PASS":
            continue
        out.append(
            {
                "id": row["id"],
                "prompt": row["prompt"],
                "chosen": row["chosen"],
                "rejected": row["rejected"],
                "problem_id": row["id"],
                "chosen_outcome": "PASS",
                "rejected_outcome": outcome,
                "rejected_phase": phase,
            }
        )
    out = out[:limit] if limit else out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return out


def _open(
    run_dir: Path,
    seed: int = 42,
    overrides: dict | None = None,
    write_pairs: bool = True,
    pairs: int | None = None,
) -> runs.Run:
    """A seed of tiny-humaneval with the fixture's pairs (the first ``pairs`` of them, or all)."""
    run = runs.open("tiny-humaneval", seed=seed, run_dir=run_dir, overrides={**FAST, **(overrides or {})})
    if write_pairs:
        write_train_pairs(run.layout.train_pairs, limit=pairs)
    return run


def _adapter(run: runs.Run) -> dict[str, torch.Tensor]:
    return load_file(train.TrainPaths.for_run(run).adapter / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> runs.Run:
    """Seed 42, 5 steps: the run most tests read."""
    run = _open(tmp_path_factory.mktemp("runs") / "a")
    result = train.train_seed(run, progress=False)
    assert not result.skipped
    save_figures(run)
    return run


# --------------------------------------------------------------------------- pairs and the prompt filter


def test_missing_pairs_says_to_run_the_audit(tmp_path: Path) -> None:
    run = _open(tmp_path / "r", write_pairs=False)
    with pytest.raises(IdfuError, match="notebook 01|idfu-lab audit"):
        train.train_seed(run, progress=False)


def test_bad_pairs_files_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "pairs.jsonl"
    good = {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}
    p.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(IdfuError, match=r"pairs.jsonl:2: malformed JSON"):
        train.read_train_pairs(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(IdfuError, match=r":2: pair lacks 'rejected'"):
        train.read_train_pairs(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(IdfuError, match=r":2: duplicate pair id 'a' \(first on line 1\)"):
        train.read_train_pairs(p)


def test_prompt_length_filter_counts_as_trl_tokenises(tmp_path: Path) -> None:
    """Pairs over max_prompt_length are dropped and counted; the lengths are the ones TRL's trainer sees."""
    from idfu_lab.generation import models

    cfg = load_config("tiny-humaneval")
    tok = models.load_tokenizer(cfg.model)
    words = "compute the running total of the values "
    pairs = [
        {
            "id": f"p{i}",
            "prompt": words * (i + 1),
            "chosen": "```python\nx = 1\n```",
            "rejected": "y" * (40 * i),
        }
        for i in range(8)
    ]
    lengths = [
        len(
            tok.apply_chat_template(
                [{"role": "user", "content": p["prompt"]}],
                tokenize=True,
                return_dict=True,
                add_generation_prompt=True,
            )["input_ids"]
        )
        for p in pairs
    ]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    limit = lengths[4]  # pairs 0-4 have prompts of at most `limit` tokens: 5 kept, 3 dropped
    report = train.filter_pairs(pairs, tok, chat=True, max_prompt_length=limit, max_length=limit + 30)
    assert report.n_in == 8 and len(report.kept) == 5 and report.n_filtered == 3
    assert [d["id"] for d in report.dropped] == ["p5", "p6", "p7"]
    assert report.prompt_tokens_max == max(lengths)
    over = [
        p for p in report.kept if max(p["chosen_sequence_tokens"], p["rejected_sequence_tokens"]) > limit + 30
    ]
    assert report.n_over_max_length == len(over) > 0  # long rejected replies are counted, not dropped
    assert report.as_dict()["filtered_ids"] == ["p5", "p6", "p7"]

    # TRL's own tokenisation of the kept pairs gives the same prompt lengths
    trainer = train.build_trainer(
        cfg,
        report.kept,
        output_dir=tmp_path / "out",
        seed=0,
        precision=train.training_precision(cfg.model),
        tokenizer=tok,
        progress=False,
    )
    trl_lengths = [len(ids) for ids in trainer.train_dataset["prompt_ids"]]
    assert trl_lengths == [p["prompt_tokens"] for p in report.kept]
    trl_chosen = [len(ids) for ids in trainer.train_dataset["chosen_ids"]]
    assert trl_chosen == [p["chosen_tokens"] for p in report.kept]


def test_non_chat_examples_are_plain_strings() -> None:
    pair = {"id": "x", "prompt": "def f():", "chosen": " return 1", "rejected": " return x"}
    assert train.to_trl_example(pair, chat=False) == {
        "prompt": "def f():",
        "chosen": " return 1",
        "rejected": " return x",
    }
    conv = train.to_trl_example(pair, chat=True)
    assert conv["prompt"] == [{"role": "user", "content": "def f():"}]
    assert conv["chosen"] == [{"role": "assistant", "content": " return 1"}]


# --------------------------------------------------------------------------- what training changes


def test_lora_weights_change_base_weights_do_not_and_loss_falls(tmp_path: Path) -> None:
    cfg = load_config(
        "tiny-humaneval",
        overrides={"dpo.max_steps": 8, "dpo.gradient_accumulation_steps": 1, "dpo.learning_rate": 5e-3},
    )
    pairs = write_train_pairs(tmp_path / "pairs.jsonl", limit=4)  # a fixed tiny set, seen twice per epoch
    trainer = train.build_trainer(
        cfg,
        pairs,
        output_dir=tmp_path / "out",
        seed=3,
        precision=train.training_precision(cfg.model),
        progress=False,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert any("lora_B" in n for n in before) and all(
        torch.count_nonzero(p) == 0 for n, p in before.items() if "lora_B" in n
    )
    with train._cpu_threads(cfg.model, train.training_precision(cfg.model)):
        trainer.train()
    after = dict(trainer.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base
    assert all(not torch.equal(before[n], after[n]) for n in lora), "every LoRA matrix must move"
    assert all(torch.equal(before[n], after[n]) for n in base), "the frozen base must not move"
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 8
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # adapter starts at zero: policy == reference
    assert sum(losses[-3:]) / 3 < losses[0] - 0.01


def test_artefacts_and_summary(trained: runs.Run) -> None:
    paths = train.TrainPaths.for_run(trained)
    for p in (paths.adapter / "adapter_model.safetensors", paths.adapter / "tokenizer.json", paths.curves):
        assert p.exists(), p
    assert not paths.checkpoints.exists()  # removed once the adapter is saved
    s = train.load_summary(trained)
    pairs = train.read_train_pairs(trained.layout.train_pairs)
    assert (
        s["n_pairs_in"] == len(pairs) and s["n_filtered_prompt_too_long"] == 0 and s["n_train"] == len(pairs)
    )
    assert s["global_steps"] == 5 and s["resumed_from"] is None
    assert s["precision"]["device"] == "cpu" and s["precision"]["bf16"] is False
    assert s["precision"]["torch_dtype"] == "float32" and s["precision"]["use_cpu"] is True
    assert s["wall_time_s"] > 0 and s["peak_rss_bytes"] > 100 * 2**20 and s["peak_cuda_bytes"] is None
    history = train.load_log_history(trained)
    assert list(history["step"]) == [1, 2, 3, 4, 5]
    for col in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert col in history.columns
    assert s["final_loss"] == pytest.approx(history["loss"].iloc[-1])
    seed_manifest = trained.manifest()
    assert seed_manifest["training"]["precision"]["device"] == "cpu"
    assert trained.is_done("train")
    # the TensorBoard log (dpo.report_to's default) is under the seed's train/, with every logged step
    assert s["report_to"] == ["tensorboard"] and s["logs_dir"] == str(paths.logs)
    from idfu_lab.training.logs import read_scalars

    scalars = read_scalars(paths.logs)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5]
    assert scalars["train/loss"][-1][1] == pytest.approx(history["loss"].iloc[-1], rel=1e-5)
    assert "train/rewards/margins" in scalars
    assert s["numerics"]["trainable_dtypes"] == ["float32"] and s["dropout"]["lora_dropout"] == 0.0


def test_margins_are_the_implicit_reward_margin(trained: runs.Run) -> None:
    """margins.jsonl agrees with a plain forward pass of base and base+adapter, and carries the audit's labels."""
    from peft import PeftModel

    from idfu_lab.generation import models

    cfg = trained.config
    margins = train.load_margins(trained)
    pairs = {p["id"]: p for p in train.read_train_pairs(trained.layout.train_pairs)}
    assert set(margins["id"]) == set(pairs)
    for _, m in margins.iterrows():
        assert m["rejected_outcome"] == pairs[m["id"]]["rejected_outcome"]
        assert m["rejected_phase"] == pairs[m["id"]]["rejected_phase"]
    assert train.load_summary(trained)["mean_margin"] == pytest.approx(margins["margin"].mean())

    tok = models.load_tokenizer(cfg.model)
    base = models.load_model(cfg.model)
    model = PeftModel.from_pretrained(base, str(train.TrainPaths.for_run(trained).adapter)).eval()

    def logp(pair: dict, side: str) -> float:
        conv = train.to_trl_example(pair, chat=True)
        prompt = tok.apply_chat_template(
            conv["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        full = tok.apply_chat_template(conv["prompt"] + conv[side], tokenize=True, return_dict=True)[
            "input_ids"
        ]
        ids = torch.tensor([full])
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        per_token = logprobs.gather(1, targets[:, None])[:, 0]
        return float(per_token[len(prompt) - 1 :].sum())

    beta = cfg.dpo.beta
    for _, m in margins.head(3).iterrows():
        pair = pairs[m["id"]]
        with torch.no_grad():
            pc, pr = logp(pair, "chosen"), logp(pair, "rejected")
            with model.disable_adapter():
                rc, rr = logp(pair, "chosen"), logp(pair, "rejected")
        assert m["policy_chosen_logp"] == pytest.approx(pc, abs=1e-3)
        assert m["ref_rejected_logp"] == pytest.approx(rr, abs=1e-3)
        assert m["margin"] == pytest.approx(beta * ((pc - rc) - (pr - rr)), abs=1e-4)
    table = train.margins_by_category(margins)
    assert table["pairs"].sum() == len(margins)
    assert list(table.index[:2]) == ["NAME_ERROR", "ASSERTION_FAIL"]  # the study's order first


def test_adapter_reloads_and_merged_model_gives_same_logits(trained: runs.Run) -> None:
    from peft import PeftModel

    from idfu_lab.generation import models

    cfg = trained.config
    adapter = train.TrainPaths.for_run(trained).adapter
    tok = models.load_tokenizer(cfg.model)
    ids = tok("def add(a, b):\n    return a + b\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base_logits = models.load_model(cfg.model)(input_ids=ids).logits
        peft = PeftModel.from_pretrained(models.load_model(cfg.model), str(adapter)).eval()
        peft_logits = peft(input_ids=ids).logits
        merged_logits = peft.merge_and_unload()(input_ids=ids).logits
        via_loader = models.load_model(cfg.model, adapter=adapter)(input_ids=ids).logits
    assert not torch.allclose(base_logits, peft_logits, atol=1e-6)  # the adapter does something
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(via_loader, peft_logits, atol=0, rtol=0)


# --------------------------------------------------------------------------- seeds, resume, skip


@pytest.mark.slow  # trains two or three times
def test_same_seed_same_adapter_other_seed_different(trained: runs.Run, tmp_path: Path) -> None:
    again = _open(tmp_path / "again", seed=42)
    train.train_seed(again, progress=False)
    other = _open(tmp_path / "other", seed=7)
    train.train_seed(other, progress=False)
    a, b, c = _adapter(trained), _adapter(again), _adapter(other)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed on a CPU: identical adapters"
    assert not all(torch.equal(a[k], c[k]) for k in a), "another seed: another adapter"
    assert train.load_margins(again)["margin"].tolist() == train.load_margins(trained)["margin"].tolist()


class _Interrupt(TrainerCallback):
    """Raises at the end of optimizer step ``at``, after the checkpoint of step ``at - 1``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"interrupted at step {self.at}")


@pytest.mark.slow  # trains two or three times
def test_interrupted_run_resumes_from_its_last_checkpoint(trained: runs.Run, tmp_path: Path) -> None:
    run = _open(tmp_path / "r", seed=42)
    with pytest.raises(KeyboardInterrupt):
        train.train_seed(run, progress=False, callbacks=[_Interrupt(3)])
    paths = train.TrainPaths.for_run(run)
    assert (paths.checkpoints / "checkpoint-2").is_dir() and not paths.summary.exists()
    assert not run.is_done("train")

    result = train.train_seed(run, progress=False)
    assert result.summary["resumed_from"] == "checkpoint-2" and result.summary["global_steps"] == 5
    assert list(train.load_log_history(run)["step"]) == [1, 2, 3, 4, 5]
    # optimizer, scheduler, RNG and data position restored: the same adapter as the uninterrupted run
    a, b = _adapter(trained), _adapter(run)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


@pytest.mark.slow  # trains two or three times
def test_finished_seed_is_skipped_unless_forced(tmp_path: Path) -> None:
    # 8 pairs: what is tested is when a seed trains, and each training scores every pair's margin
    run = _open(tmp_path / "r", seed=5, overrides={"dpo.max_steps": 1}, pairs=8)
    first = train.train_seed(run, progress=False)
    assert not first.skipped
    again = train.train_seed(run, progress=False)
    assert again.skipped and again.summary == first.summary
    forced = train.train_seed(run, force=True, progress=False)
    assert not forced.skipped and forced.summary["wall_time_s"] != first.summary["wall_time_s"]
    # new pairs make the finished seed stale
    pairs_file = run.layout.train_pairs
    lines = pairs_file.read_text().splitlines()
    pairs_file.write_text("\n".join(lines[:-1]) + "\n")
    retrained = train.train_seed(run, progress=False)
    assert not retrained.skipped and retrained.summary["n_pairs_in"] == len(lines) - 1


@pytest.mark.slow  # trains two or three times
def test_stale_checkpoints_of_another_recipe_are_discarded(tmp_path: Path) -> None:
    run = _open(tmp_path / "r", seed=42, overrides={"dpo.max_steps": 3}, pairs=8)
    with pytest.raises(KeyboardInterrupt):
        train.train_seed(run, progress=False, callbacks=[_Interrupt(3)])
    assert (train.TrainPaths.for_run(run).checkpoints / "checkpoint-2").is_dir()
    changed = runs.open(
        "tiny-humaneval", seed=42, run_dir=tmp_path / "r", overrides={**FAST, "dpo.max_steps": 1}
    )
    result = train.train_seed(changed, progress=False)
    assert result.summary["resumed_from"] is None and result.summary["global_steps"] == 1


# --------------------------------------------------------------------------- precision and configs


def test_cpu_precision_and_trainer_arguments(tmp_path: Path) -> None:
    cfg = load_config("paper")  # asks for 4-bit + bf16: without CUDA both are declined, by choice
    precision = train.training_precision(cfg.model)
    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    assert precision["device"] == "cpu" and precision["load_in_4bit"] is False
    assert precision["bf16"] is False and precision["fp16"] is False and precision["use_cpu"] is True
    args = train.dpo_config(cfg.dpo, output_dir=tmp_path, seed=123, precision=precision)
    assert (args.seed, args.data_seed) == (123, 123)
    assert args.bf16 is False and args.use_cpu is True
    assert args.disable_dropout is True  # as TRL 0.x, which the study ran: LoRA dropout zeroed
    assert args.beta == 0.1 and args.learning_rate == 5e-5 and args.max_length == 2048
    assert args.per_device_train_batch_size == 1 and args.gradient_accumulation_steps == 4
    assert args.num_train_epochs == 3 and args.gradient_checkpointing is True
    assert args.loss_type == ["sigmoid"] and args.save_steps == 25
    assert memory.check_cuda_memory(cfg, precision) is None  # no estimate to check on a CPU


# --------------------------------------------------------------------------- the memory estimate


def test_shape_of_qwen25_coder_3b() -> None:
    s = memory.QWEN25_CODER_3B
    assert s.head_dim == 128 and s.kv_dim == 256
    assert s.num_parameters() == 3_085_938_688  # Qwen2.5-3B's published parameter count
    assert s.lora_parameters(16, load_config("paper").lora.target_modules) == 29_933_568  # PEFT's count, r=16
    with pytest.raises(IdfuError, match="lm_head"):
        s.lora_parameters(16, ["lm_head"])


def test_memory_estimate_matches_the_studys_card() -> None:
    """The study trained on an 8 GB RTX 4060: 4-bit + checkpointing fits it, nothing else does."""
    s = memory.QWEN25_CODER_3B
    paper = dict(max_length=2048, per_device_train_batch_size=1, lora_r=16)
    q_ckpt = memory.estimate_training_memory(s, load_in_4bit=True, gradient_checkpointing=True, **paper)
    q_full = memory.estimate_training_memory(s, load_in_4bit=True, gradient_checkpointing=False, **paper)
    bf16_ckpt = memory.estimate_training_memory(s, load_in_4bit=False, gradient_checkpointing=True, **paper)
    assert 3 * memory.GIB < q_ckpt.total < 8 * memory.GIB
    assert q_full.total > 8 * memory.GIB and bf16_ckpt.total > 8 * memory.GIB
    assert 1.4 * memory.GIB < q_ckpt.weights < 3.0 * memory.GIB  # 2.77e9 x 0.5625 B + bf16 embeddings
    assert bf16_ckpt.weights == s.num_parameters() * 2
    assert q_ckpt.lora == 29_933_568 * 4 and q_ckpt.optimizer == 2 * q_ckpt.lora  # fp32, as TRL 0.x kept them
    shorter = memory.estimate_training_memory(
        s, load_in_4bit=True, gradient_checkpointing=True, max_length=1024
    )
    assert shorter.activations < q_ckpt.activations and shorter.weights == q_ckpt.weights
    assert q_ckpt.total == q_ckpt.as_dict()["total"] and "GiB" in q_ckpt.describe()


def test_a_card_too_small_gets_a_clear_error() -> None:
    cfg = load_config("paper")
    est = memory.estimate_for_config(cfg)
    card = {"total": 8 * memory.GIB, "device_name": "NVIDIA GeForce RTX 4060", "load_in_4bit": True}
    memory.require_memory(cfg, est, free=int(7.6 * memory.GIB), **card)  # the study's card: fits
    with pytest.raises(
        IdfuError, match=r"not enough GPU memory .* RTX 4060 has 4\.0 GiB free .* dpo\.max_length"
    ):
        memory.require_memory(cfg, est, free=4 * memory.GIB, **card)
    no_ckpt = load_config("paper", overrides={"dpo.gradient_checkpointing": False})
    with pytest.raises(IdfuError, match="dpo.gradient_checkpointing: true"):
        memory.require_memory(
            no_ckpt, memory.estimate_for_config(no_ckpt), free=int(7.6 * memory.GIB), **card
        )


def test_estimate_for_the_paper_recipe_needs_no_download() -> None:
    cfg = load_config("paper")
    est = memory.estimate_for_config(cfg)
    assert est.total < 8 * memory.GIB
    rows = launch.memory_table(cfg)
    assert len(rows) == 4 and {(r["load_in_4bit"], r["gradient_checkpointing"]) for r in rows} == {
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    }


def test_throughput_benchmark_skips_cleanly_without_cuda(capsys) -> None:
    from helpers import load_script

    if torch.cuda.is_available():
        pytest.skip("with CUDA the benchmark really runs (make bench)")
    script = load_script(repo_root() / "benchmarks" / "train_throughput.py")
    # its own main, in this process: torch is imported here already, a second interpreter would import it again
    assert script.main([]) == 0 and "skipped: no CUDA" in capsys.readouterr().out


# --------------------------------------------------------------------------- the model card and publishing


def test_every_trained_adapter_has_a_model_card_from_the_run(trained: runs.Run) -> None:
    card = (train.TrainPaths.for_run(trained).adapter / "README.md").read_text()
    s = train.load_summary(trained)
    assert card.startswith("---\nbase_model: tiny\nlibrary_name: peft")
    assert f"| config hash | {trained.config_hash} |" in card and s["pairs_sha256"] in card
    assert "| dropout in effect | 0.0 |" in card and "| trainable dtype | float32 |" in card
    assert "## Audit" in card and "## Results" in card and "Not evaluated yet" in card
    assert trained.manifest()["published"]["pushed"] is False  # dpo.push_to_hub is false in tiny


def test_publishing_offline_writes_the_card_and_says_why_nothing_was_uploaded(
    trained: runs.Run, monkeypatch
) -> None:
    from idfu_lab.training.publish import publish_seed

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = trained.config
    cfg.dpo.push_to_hub, cfg.dpo.hub_model_id = True, None
    try:
        with pytest.raises(IdfuError, match="needs dpo.hub_model_id"):
            publish_seed(trained)
        cfg.dpo.hub_model_id = "someone/idfu-adapter"
        done = publish_seed(trained)
    finally:
        cfg.dpo.push_to_hub, cfg.dpo.hub_model_id = False, None
    assert done["pushed"] is False and done["reason"] == "HF_HUB_OFFLINE is set"
    assert done["repo_id"] == "someone/idfu-adapter-seed42" and Path(done["card"]).exists()
