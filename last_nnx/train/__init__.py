"""Training: the loop, optimizers, CLU metrics and orbax checkpoints."""
