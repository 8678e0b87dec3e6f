"""Recipes: YAML files loaded safely, merged through `extends`, overridden by `--set`, then validated.

Code above the task layer loads recipes through `dlkit.tasks.load_recipe`, which knows each task's sections.
"""

from dlkit.recipe.loader import load_raw, load_recipe, located, parse_override, recipe_file
from dlkit.recipe.schema import Recipe

__all__ = ["Recipe", "load_raw", "load_recipe", "located", "parse_override", "recipe_file"]
