"""idfu-lab: a small-data DPO study on a code model, reproduced and taken further.

Modules, one concern each: ``config`` (typed YAML recipes), ``runs`` (run directories, manifests,
provenance), ``models`` (the tiny offline model and the real one, one loading path), ``problems``
(benchmarks), ``execution`` (the sandboxed executor), ``outcomes`` (typed verdicts), ``pairs`` /
``audit`` / ``curate`` (preference data), ``train`` (TRL DPO + LoRA), ``generate`` / ``postprocess`` /
``importers`` (from model to program), ``taxonomy`` / ``delta`` / ``stats`` (analysis), ``plots``,
``pipeline`` (papermill per seed) and ``cli``.
"""

__version__ = "0.1.0"
