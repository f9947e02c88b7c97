"""DPO training: the study's recipe through TRL + PEFT (:mod:`.dpo`), the GPU memory estimate
(:mod:`.memory`), and the command-line / ``accelerate launch`` entry point (:mod:`.launch`)."""
