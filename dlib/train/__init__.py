"""Training: the loop (``train``), its schedules and EMA, and the configuration it runs.

    python -m dlib.train --recipe mnist-unet                  # train (resumes if runs/mnist-unet exists)
    python -m dlib.train --recipe mnist-unet --steps 20000    # any TrainConfig field can be overridden
    python -m dlib.train --recipe mnist-unet --export         # write the EMA weights to data/models/
    torchrun --nproc_per_node=2 -m dlib.train --recipe mnist-unet    # the same run on 2 processes (DDP)

    loop          train, lr_at, resolution_at, ema_update
    distributed   the process group under torchrun, DistributedDataParallel, the rank-0 rule
    __main__      the command line (on top of dlib.recipes; imported by nothing else)

The pieces a run is built from live lower down and are re-exported here: ``TrainConfig`` and
``build_model`` (``dlib.config``), the losses (``dlib.losses``), the batch conditioning
(``dlib.conditioning``: ``drop_labels``, ``drop_context``, ``TextCondition``). The named
recipes are ``dlib.recipes.RECIPES``; training state I/O and ``load_pretrained`` are in
``dlib.checkpoint``.
"""

from dlib.conditioning import TextCondition, drop_context, drop_labels
from dlib.config import TrainConfig, build_model, config_from_dict, config_to_dict
from dlib.train.loop import ema_decay_at, ema_update, lr_at, resolution_at, train

__all__ = [
    "TextCondition",
    "TrainConfig",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "drop_context",
    "drop_labels",
    "ema_update",
    "ema_decay_at",
    "lr_at",
    "resolution_at",
    "train",
]
