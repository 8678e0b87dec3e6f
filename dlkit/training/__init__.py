"""Training: optimizers and schedules from the recipe, callbacks, and the `train()` entry point."""
