import dataclasses
from pathlib import Path

import pytest

from dlib import checkpoint
from dlib.checkpoint import load_pretrained
from dlib.config import config_from_dict, config_to_dict
from dlib.recipes import RECIPES
from dlib.train import train

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "data" / "models").glob("*.json"))


def test_every_recipe_is_named_after_itself_and_round_trips():
    for name, cfg in RECIPES.items():
        assert cfg.name == name
        assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_is_its_recipe(name):
    """Retraining at the gpu budget uses RECIPES[name]; it must be the recipe the shipped weights came from."""
    card = checkpoint.read_card(name)
    ignore = {"out_dir"}  # where checkpoints went on the training machine
    recipe = {k: v for k, v in config_to_dict(RECIPES[card["recipe"]]).items() if k not in ignore}
    # read like resume reads it: a field added after the card was written takes its default
    shipped = config_to_dict(config_from_dict(card["config"]))
    assert {k: v for k, v in shipped.items() if k not in ignore} == recipe


@pytest.mark.parametrize("name", ["mnist-cond-unet", "fashion-cond-unet", "mnist-text-unet"])
def test_conditional_recipes_train_from_scratch_into_the_shipped_shape(name, tmp_path):
    """Notebook 06's gpu path: one step of the full recipe, then the shipped weights load into the result."""
    cfg = dataclasses.replace(RECIPES[name], steps=1, batch_size=8, limit=64, out_dir=str(tmp_path))
    ema = train(cfg, progress=False)["ema"]
    shipped, _, _ = load_pretrained(name)
    assert {k: v.shape for k, v in ema.state_dict().items()} == {k: v.shape for k, v in shipped.state_dict().items()}


@pytest.mark.parametrize("name", ["mnist-v-small", "mnist-x0-small"])
def test_demonstration_recipes_start(name, tmp_path):
    """The v / x_0 comparison recipes: two steps of the real network and schedule, finite losses."""
    cfg = dataclasses.replace(RECIPES[name], steps=2, limit=256, log_every=1, out_dir=str(tmp_path))
    card = train(cfg, progress=False)["card"]
    assert card["step"] == 2 and card["config"]["prediction"] == RECIPES[name].prediction
    assert all(0 < loss < 10 for _, loss in card["loss_log"])
