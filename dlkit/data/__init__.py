"""Data: where examples come from (`sources`) and how they reach the model (`pipeline`)."""
