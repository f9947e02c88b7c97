"""What the verdicts say: judging sample files (:mod:`.judge`), the per-seed evaluation step
(:mod:`.evaluation`), the failure taxonomy (:mod:`.taxonomy`), delta tracing (:mod:`.delta`) and a
person's labels (:mod:`.annotate`), paired statistics (:mod:`.stats`) and the summary over seeds
(:mod:`.summary`). Nothing here draws: figures and pages are :mod:`idfu_lab.report`'s."""
