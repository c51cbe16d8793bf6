"""Training, evaluation and prediction: ``fit(config)``, ``evaluate(run)``, ``load(checkpoint)``.

Inside, from bottom to top: ``config``, ``env``, ``pipeline``, ``state`` (the typed training state),
``checkpoint`` (the checkpoint files and the run's lock), ``report`` and ``plots``, ``saver`` (what a run
persists), ``evaluation``, ``optim``, ``init``, ``model``, ``run`` (the run's steps), ``loop`` (``fit``), ``inference``.
"""

from convzoo.train.config import RECIPES, TrainConfig, resolve_config
from convzoo.train.evaluation import EvalResult, evaluate_batches
from convzoo.train.inference import Checkpoint, EvalReport, evaluate, load, read_image
from convzoo.train.loop import fit, train_one_epoch
from convzoo.train.run import Interrupted, RunResult
from convzoo.train.saver import CheckpointSaver
from convzoo.train.state import TrainingState

__all__ = [
    "RECIPES",
    "Checkpoint",
    "CheckpointSaver",
    "EvalReport",
    "EvalResult",
    "Interrupted",
    "RunResult",
    "TrainConfig",
    "TrainingState",
    "evaluate",
    "evaluate_batches",
    "fit",
    "load",
    "read_image",
    "resolve_config",
    "train_one_epoch",
]
