"""Seed the worker's model directory with the models bundled in the package.

Run by the ``models-seed`` one-shot service of docker-compose.yml before the workers start
(``python seed_models.py [MODEL_DIR]``; default ``$FOREXD_MODEL_DIR``). The image carries
the bundled diffusion models as package data (``forex_diffusion.bundled.MODELS``,
``<SYMBOL>-<tf>-h<H>/<version>.pt`` + ``.json``); the workers read models from
``FOREXD_MODEL_DIR`` on the ``forexd-data`` volume, where the retrain jobs also write theirs.
A key with no registry champion is served by the newest checkpoint in that directory
(``retraining.serving.ModelBook``), so after this step the worker serves the bundled model
from its first forecast instead of the random walk.

Only missing files are copied, each manifest before its weights and each file through a
temporary name renamed into place, so a running worker never sees half a model; a file
already there (a model the registry since rejected or rolled back included) is left alone.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def seed(source: Path, target: Path) -> list[Path]:
    """Copy the ``*/*.json`` and ``*/*.pt`` files of ``source`` missing under ``target``; return them."""
    copied: list[Path] = []
    # per version: the manifest (.json) before the weights (.pt) the model book looks for
    for src in sorted(source.glob("*/*"), key=lambda p: (p.parent.name, p.stem, p.suffix != ".json")):
        if src.suffix not in (".json", ".pt") or not src.is_file():
            continue
        out = target / src.parent.name / src.name
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, out)
        copied.append(out)
    return copied


def main(argv: list[str]) -> int:
    from forex_diffusion.bundled import MODELS

    target = Path(argv[1] if len(argv) > 1 else os.environ.get("FOREXD_MODEL_DIR", ""))
    if not str(target) or str(target) == ".":
        print("models-seed: give the model directory (argument or FOREXD_MODEL_DIR)", file=sys.stderr)
        return 2
    copied = seed(MODELS, target)
    present = sorted(p.relative_to(target).as_posix() for p in target.glob("*/*.pt"))
    print(f"models-seed copied={len(copied)} model_dir={target} models={','.join(present) or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
