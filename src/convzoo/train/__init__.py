"""Training, evaluation and prediction: ``fit(config)``, ``evaluate(run)``, ``load(checkpoint)``."""

from convzoo.train.config import RECIPES, TrainConfig, resolve_config
from convzoo.train.inference import Checkpoint, EvalReport, evaluate, load, read_image
from convzoo.train.loop import EvalResult, Interrupted, RunResult, evaluate_batches, fit, train_one_epoch

__all__ = [
    "RECIPES",
    "Checkpoint",
    "EvalReport",
    "EvalResult",
    "Interrupted",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "evaluate_batches",
    "fit",
    "load",
    "read_image",
    "resolve_config",
    "train_one_epoch",
]
