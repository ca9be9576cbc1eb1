"""How a run spends its compute: the paper's recipe, and a recipe that learns per second on a CPU.

A step of the paper's objective (:mod:`.objective`) runs each object through the mask decoder ten
times (a box start, a point start, 8 correction sub-iterations). On a GPU that is cheap, since the
small decoder's steps are bound by kernel launches; on a CPU the decoder's arithmetic is 77-85% of a
step, about a teraflop on LiteMedSAM (docs/benchmarks.md, "Where a step's time goes"), and a default
run of 200 steps took an hour on 2 cores. The CPU recipe spends the same seconds on more objects
and fewer corrections, at a larger learning rate, and validates often, so the first adapter worth
reloading arrives in the first minute (measured: docs/finetune_results.md, "Learning per CPU-minute").

``auto`` (every job's default) picks the CPU recipe where the run's device is a CPU and the paper's
everywhere else; ``--recipe paper`` keeps the paper's on a CPU. A job's own ``objects_per_image``,
``sub_iterations``, ``validate_every``, ``lr`` or ``steps`` override the recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SamPeftError


@dataclass(frozen=True)
class Recipe:
    """What each step trains on and how often a run validates; the learning rate as a multiple of the
    recommended one (``..peft.recommend.recommended_lr``) and the run's length in passes over the objects."""

    name: str
    objects_per_image: int
    sub_iterations: int
    validate_every: int
    lr_factor: float
    passes_over_objects: int
    summary: str

    def rate(self, recommended: float) -> float:
        """The learning rate this recipe trains at where ``recommended`` is the model's and method's: times
        :attr:`lr_factor`, never above :data:`MAX_SCALED_LR` (unless the recommended rate is already)."""
        return min(recommended * self.lr_factor, max(recommended, MAX_SCALED_LR))


#: the largest rate a recipe's factor leads to: the small demo model's recommended 1e-3, the largest that
#: learns without the loss jumping (docs/finetune_results.md)
MAX_SCALED_LR = 1e-3

#: the paper's training recipe (micro_sam's): 8 objects, 8 correction sub-iterations per step
PAPER = Recipe(
    name="paper",
    objects_per_image=8,
    sub_iterations=8,
    validate_every=25,
    lr_factor=1.0,
    passes_over_objects=25,
    summary="the paper's recipe: 8 objects and 8 correction passes per step, validation every 25 steps, 25 "
    "passes over the objects",
)

#: a CPU's recipe: half the objects and half the corrections of the paper's (a step costs 3.3 times less),
#: three times the rate, validation every 5 steps, a run of 10 passes over the objects
CPU = Recipe(
    name="cpu",
    objects_per_image=4,
    sub_iterations=4,
    validate_every=5,
    lr_factor=3.0,
    passes_over_objects=10,
    summary="the CPU recipe: 4 objects and 4 correction passes per step at 3x the rate, validation every 5 "
    "steps, 10 passes over the objects",
)

RECIPES = {recipe.name: recipe for recipe in (PAPER, CPU)}
#: what a job may name: a recipe, or ``auto`` (by the device, :func:`recipe_for`)
RECIPE_CHOICES = ("auto", *RECIPES)


def recipe_named(name: str) -> Recipe:
    """The recipe called ``name`` (``paper``, ``cpu``).

    Raises
    ------
    SamPeftError
        For another name.
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise SamPeftError(f"Unknown recipe {name!r}: choose one of {', '.join(RECIPE_CHOICES)}.") from None


def recipe_for(name: str, device_type: str) -> Recipe:
    """The recipe a job naming ``name`` runs on a device of ``device_type`` (``cpu``, ``cuda``, ``mps``):
    ``auto`` is the CPU recipe on a CPU and the paper's elsewhere."""
    if name == "auto":
        return CPU if device_type == "cpu" else PAPER
    return recipe_named(name)
