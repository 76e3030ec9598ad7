"""What the pages use of the model: the backbones offered and their costs, training settings and stages, the
advice and timings the Train page shows, the suspects check of the Review page, and a run's novelty settings.
Pages import the model from here only; nothing here imports TensorFlow (Keras loads inside the worker)."""

from core.model.advice import (DEPTHS, MEASURED_SETS, TRAIN_SHARE, UNLIKE_SET, Advice, Cost, advice, costs, most_alike,
                               suggested_depth, unlike_everyday, with_joined_speeds)
from core.model.backbones import DEFAULT_BACKBONE, REGISTRY, BackboneSpec, backbone_label, get_backbone
from core.model.compare import same_stages
from core.model.freeze_depths import freeze_options
from core.model.head import STRENGTHS
from core.model.joined import OFFERED, RECOMMENDED
from core.model.novelty import MEASURED_ELSEWHERE, NoveltySettings, set_threshold
from core.model.preembed import readiness
from core.model.schedule import automatic_epochs, automatic_rate
from core.model.speed import cached_speeds, relative_speeds
from core.model.suspects import (MIN_PHOTOS_PER_CLASS, NEIGHBOURS, Suspect, current_check, forget_check, remembered,
                                 start_check, too_small)
from core.model.train import STAGE_EMBED, STAGE_FINETUNE, STAGE_HEAD, STAGE_REFIT, TrainConfig, planned_stages

__all__ = ["DEFAULT_BACKBONE", "DEPTHS", "MEASURED_ELSEWHERE", "MEASURED_SETS", "MIN_PHOTOS_PER_CLASS", "NEIGHBOURS",
           "OFFERED", "RECOMMENDED", "REGISTRY", "STAGE_EMBED", "STAGE_FINETUNE", "STAGE_HEAD", "STAGE_REFIT",
           "STRENGTHS", "Advice", "TRAIN_SHARE", "UNLIKE_SET", "BackboneSpec", "Cost", "NoveltySettings", "Suspect",
           "TrainConfig", "advice", "automatic_epochs", "automatic_rate", "backbone_label",
           "cached_speeds", "costs", "current_check", "forget_check", "freeze_options",
           "get_backbone", "most_alike", "planned_stages", "readiness", "relative_speeds", "remembered", "same_stages",
           "set_threshold", "start_check", "suggested_depth", "too_small", "unlike_everyday",
           "with_joined_speeds"]
