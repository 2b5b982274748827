"""The whole Constitutional AI pipeline (``cai run``): recipe in, trained models and evidence out.

Owns: recipes, the stage order, wiring workflows together, the run directory's event log and
resume logic, the pool of models per run, progress display and the pipeline's report sections.
Must not know: how any single workflow works inside, or the CLI.
"""

from cai.pipeline._context import OUTPUTS, STAGES, RunContext, StageSkipped
from cai.pipeline._events import EventLog, RunEvent
from cai.pipeline._models import ModelPool
from cai.pipeline._progress import console, library_output_to, request_progress
from cai.pipeline._recipe import Recipe, load_recipe, recipe_fields
from cai.pipeline._report import evaluator_status
from cai.pipeline._run import StageOutcome, run_pipeline

__all__ = [
    "OUTPUTS",
    "STAGES",
    "EventLog",
    "ModelPool",
    "Recipe",
    "RunContext",
    "RunEvent",
    "StageOutcome",
    "StageSkipped",
    "console",
    "evaluator_status",
    "library_output_to",
    "load_recipe",
    "recipe_fields",
    "request_progress",
    "run_pipeline",
]
