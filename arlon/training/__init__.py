"""Training recipes for every ARLON stage: video VAE (tiny), latent VQ-VAEs, AR model,
base backbone (tiny) and injector; one readable loop per stage over a shared resumable loop, with
checkpoints cached by what determines them."""

from arlon.training.cache import TrainedStage, TrainingSession, cache_root, ensure_trained
from arlon.training.common import EMA, Checkpointer, TrainConfig, learning_rate, run_training
from arlon.training.data import DataConfig, TrainingData
from arlon.training.stages import STAGES, default_train_config, stages_for

__all__ = [
    "EMA",
    "STAGES",
    "Checkpointer",
    "DataConfig",
    "TrainConfig",
    "TrainedStage",
    "TrainingData",
    "TrainingSession",
    "cache_root",
    "default_train_config",
    "ensure_trained",
    "learning_rate",
    "run_training",
    "stages_for",
]
