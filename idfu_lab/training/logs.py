"""Where a training run's log goes besides ``log_history.csv``: the recipe's ``dpo.report_to``.

* ``tensorboard`` (the default): event files under the seed's ``train/logs/``, written offline; view
  them with ``tensorboard --logdir runs/<name>`` (every seed's curves side by side).
* ``wandb``: where the package is installed *and* configured (``WANDB_API_KEY``, a ``wandb login``
  in ``~/.netrc``, or ``WANDB_MODE=offline``); otherwise it would stop to ask for a key.
* ``mlflow``: where the package is installed; without ``MLFLOW_TRACKING_URI`` the run is logged to a
  file store under the seed's ``train/mlruns`` (not the working directory).

A logger that cannot be used is named in a warning with the reason and left out; the ones used are
recorded in the seed's ``summary.json`` (``report_to``), so a missing log is never a surprise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

#: Loggers the recipe may name.
KNOWN_LOGGERS = ("tensorboard", "wandb", "mlflow")


def _wandb_configured() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return True
    netrc = Path.home() / ".netrc"
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def unavailable_reason(name: str) -> str | None:
    """Why logger ``name`` cannot be used here (None when it can)."""
    if name == "tensorboard":
        if (
            importlib.util.find_spec("tensorboard") is None
            and importlib.util.find_spec("tensorboardX") is None
        ):
            return "neither tensorboard nor tensorboardX is installed (pip install tensorboard)"
        return None
    if name == "wandb":
        if importlib.util.find_spec("wandb") is None:
            return "wandb is not installed (pip install wandb)"
        if not _wandb_configured():
            return "wandb is not configured (set WANDB_API_KEY, run `wandb login`, or WANDB_MODE=offline)"
        return None
    if name == "mlflow":
        if importlib.util.find_spec("mlflow") is None:
            return "mlflow is not installed (pip install mlflow)"
        return None
    raise IdfuError(f"dpo.report_to: unknown logger '{name}' (known: {', '.join(KNOWN_LOGGERS)})")


def resolve_report_to(names: Sequence[str], logs_dir: str | Path | None = None) -> list[str]:
    """The recipe's loggers that can be used here, in order; each one left out is named in a warning."""
    used = []
    for name in names:
        reason = unavailable_reason(name)
        if reason is not None:
            logger.warning("dpo.report_to: %s left out: %s", name, reason)
            continue
        if name == "mlflow" and logs_dir is not None and not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = (Path(logs_dir).parent / "mlruns").resolve().as_uri()
        used.append(name)
    return used


def tensorboard_callback(logs_dir: str | Path) -> Any:
    """transformers' TensorBoard callback, writing into ``logs_dir`` (not under the checkpoints, which go)."""
    from transformers.integrations import TensorBoardCallback

    Path(logs_dir).mkdir(parents=True, exist_ok=True)
    callback = TensorBoardCallback()
    callback.logging_dir = str(logs_dir)
    return callback


def read_scalars(logs_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard log folder, as ``{tag: [(step, value), ...]}`` (for checks and notebooks)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(logs_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out
