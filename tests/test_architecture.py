"""The import graph of dlib flows one way, in the order docs/ARCHITECTURE.md documents."""

import ast
from pathlib import Path

import pytest

DLIB = Path(__file__).resolve().parent.parent / "dlib"

# Lowest first. A module may import from its own layer's package or from any layer below, never above.
LAYERS = [
    [
        "dlib.utils",
        "dlib.budget",
        "dlib.exercises",
        "dlib.plotting",
        "dlib.captions",
        "dlib.text",
        "dlib.data",
        "dlib.controls",
        "dlib.audio",
        "dlib.interview",
        "dlib.quiz",
    ],
    ["dlib.schedules"],
    ["dlib.forward", "dlib.denoiser"],
    ["dlib.gaussian", "dlib.nets", "dlib.samplers.grid"],
    ["dlib.losses", "dlib.conditioning", "dlib.score", "dlib.distill", "dlib.wavegrad"],
    ["dlib.config", "dlib.batches"],
    ["dlib.checkpoint", "dlib.recipes"],
    ["dlib.train"],
    ["dlib.samplers"],
    ["dlib.guidance"],
    ["dlib.metrics", "dlib.pipelines", "dlib.editing", "dlib.rectified"],
    ["dlib.exercises.catalogues", "dlib.generate"],
    ["dlib.evaluate_latent", "dlib.evaluate_audio", "dlib.evaluate_guidance"],
    ["dlib.evaluate", "dlib.train.__main__", "dlib"],
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(DLIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    """The layer of a module: its own entry, else its package's (dlib.samplers.sigma -> dlib.samplers)."""
    while name not in LAYER_OF:
        name = name.rsplit(".", 1)[0]
    return LAYER_OF[name]


def dlib_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dlib":
            if node.module == "dlib":  # from dlib import data, ...: each name is a module
                out |= {
                    f"dlib.{a.name}" for a in node.names if (DLIB / a.name).exists() or (DLIB / f"{a.name}.py").exists()
                }
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "dlib"}
    return out


MODULES = sorted(DLIB.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [
        module_name(p)
        for p in MODULES
        if not any(module_name(p) == n or module_name(p).startswith(n + ".") for n in LAYER_OF)
    ]
    assert not missing, f"add these modules to LAYERS (and to docs/ARCHITECTURE.md): {missing}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_flow_one_way(path):
    me = module_name(path)
    upward = [m for m in dlib_imports(path) if layer(m) > layer(me)]
    assert not upward, f"{me} (layer {layer(me)}) imports {upward} from a later layer"


def test_modules_stay_small():
    big = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 300}
    assert not big, f"modules over 300 lines (split them by topic): {big}"
