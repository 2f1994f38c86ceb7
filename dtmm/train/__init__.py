"""Training: a seeded trainer with cosine LR, evaluation, checkpoints, augmentations, tasks.

>>> from dtmm.train import train, evaluate, save_checkpoint, load_checkpoint
"""

from dtmm.train.augment import Compose, RandomHFlip, RandomShift
from dtmm.train.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from dtmm.train.task import CLASSIFICATION, ClassificationTask, Task
from dtmm.train.trainer import EpochStats, TrainError, TrainResult, cosine_lr, evaluate, train

__all__ = [
    "train", "evaluate", "TrainResult", "EpochStats", "TrainError", "cosine_lr",
    "save_checkpoint", "load_checkpoint", "CheckpointMeta",
    "RandomShift", "RandomHFlip", "Compose", "Task", "ClassificationTask", "CLASSIFICATION",
]
