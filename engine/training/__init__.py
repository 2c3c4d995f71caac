"""Training of the learned methods (ACTNET, DARAC) on cached features of a frozen backbone.

* :mod:`.data`: labelled groups (``ground_truth.json`` or folder-per-group), group splits,
  strong augmentation for self-supervised positives.
* :mod:`.losses`: triplet loss with hardest-negative mining, NRA loss.
* :mod:`.trainer`: seeded SGD trainer with atomic checkpoints, resume, progress/ETA, cancel.
* :mod:`.pipeline`: encode images once, train a method's head, build its catalog state.
"""
from engine.training.data import LabelledImages, load_labelled, split_groups, strong_augment
from engine.training.losses import nra_loss, triplet_hardest_negative
from engine.training.trainer import TrainConfig, Trainer, TrainProgress, TrainResult

__all__ = ["LabelledImages", "load_labelled", "split_groups", "strong_augment", "nra_loss",
           "triplet_hardest_negative", "TrainConfig", "Trainer", "TrainProgress", "TrainResult"]
