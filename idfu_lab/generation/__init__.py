"""From model to program: loading models (:mod:`.models`), prompts (:mod:`.prompts`), greedy or sampled
generation with a resumable cache (:mod:`.generate`), post-processing replies into programs
(:mod:`.postprocess`) and importing other harnesses' sample files (:mod:`.importers`)."""
