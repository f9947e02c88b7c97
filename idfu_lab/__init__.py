"""idfu-lab: a small-data DPO study on a code model, reproduced and taken further.

Modules, one concern each: ``config`` (typed YAML recipes), ``runs`` (run directories, manifests,
provenance), ``models`` (the tiny offline model and the real one, one loading path), ``problems``
(benchmarks), ``execution`` (the sandboxed executor), ``outcomes`` (typed verdicts), ``pairs`` /
``audit`` / ``curate`` (preference data), ``train`` (TRL DPO + LoRA), ``generate`` / ``postprocess`` /
``importers`` (from model to program), ``taxonomy`` / ``delta`` / ``stats`` (analysis), ``plots``,
``pipeline`` (papermill per seed) and ``cli``.
"""

import logging as _logging
import warnings as _warnings

__version__ = "0.1.0"

# Three messages from the libraries below us that say nothing to a reader of a run and would otherwise
# be printed into every executed notebook (and so into the book), each silenced narrowly:
# - TRL/PEFT call transformers' deprecated `is_gradient_checkpointing` alias (theirs to rename);
# - bitsandbytes logs, on import, that an optional CPU kernel package is absent (harmless; installing
#   it would fetch code from the Hub);
# - transformers warns that file mtimes may be unreliable when it sorts checkpoints (it then sorts by
#   step number, which is what resuming needs).
_warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
)
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
_logging.getLogger("transformers.trainer_utils").setLevel(_logging.ERROR)
