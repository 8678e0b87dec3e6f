"""dlkit: config-driven deep learning with Keras 3.

`dlkit train recipe.yaml` builds the model a YAML recipe describes, trains it and leaves a run directory.
The library entry points are `dlkit.training.train.train` and `dlkit.evaluate.evaluate`.
"""

__version__ = "0.1.0"
