"""Training: a seeded trainer, fine-tuning under masks, LR schedules, evaluation, checkpoints.

>>> from dtmm.train import train, evaluate, fine_tune, FineTuneConfig, save_checkpoint
"""

from dtmm.train.augment import Compose, RandomHFlip, RandomShift
from dtmm.train.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from dtmm.train.finetune import (DatasetLoader, Distillation, FineTuneConfig, FineTuneContext, FineTuneFn,
                                 FineTuneResult, GradualPruning, MaskError, default_fine_tune, fine_tune)
from dtmm.train.lr import LRSchedule
from dtmm.train.progress import Progress
from dtmm.train.trainer import EpochStats, TrainError, TrainResult, cosine_lr, evaluate, train

__all__ = [
    "train", "evaluate", "TrainResult", "EpochStats", "TrainError", "cosine_lr",
    "save_checkpoint", "load_checkpoint", "CheckpointMeta",
    "RandomShift", "RandomHFlip", "Compose",
    "fine_tune", "default_fine_tune", "FineTuneFn", "FineTuneContext", "FineTuneResult", "FineTuneConfig",
    "Distillation", "GradualPruning", "MaskError", "DatasetLoader", "LRSchedule", "Progress",
]
