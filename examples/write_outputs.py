"""Write a model's outputs to disk the way a user's own pipeline would, plus the manifest that names them.

    python examples/write_outputs.py example-outputs

makes ``example-outputs/manifest.csv``: genfair's embedded synthetic faces (``--dataset faces``),
copied into ``example-outputs/images/``, one row per image with ``path``, ``subject``, ``gender``, ``skin_tone``, ``split`` and
``restored``: for the audit panel (the test split) the output of ``examples/my_model.py`` on the
face downsampled 4x, saved as an 8-bit PNG; blank for the training and validation rows, which
train genfair's attribute classifier. Audit it with
``audit run --manifest example-outputs/manifest.csv --outputs restored --task upsampling --scale 4``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from my_model import make_model  # noqa: E402

from genfair import datasets  # noqa: E402
from genfair.audit.run.config import resolve_cache_dir  # noqa: E402


def main(out: Path) -> None:
    spec = datasets.get("faces")(cache_dir=resolve_cache_dir(None), image_size=64, seed=0)
    source = pd.read_csv(spec.manifest_path, dtype=str, keep_default_na=False)
    root = spec.manifest_path.parent
    model = make_model().eval()
    (out / "restored").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    restored, paths = [], []
    for row in source.itertuples():
        paths.append(f"images/{Path(row.path).name}")
        shutil.copyfile(root / row.path, out / paths[-1])
        if row.split != "test":
            restored.append("")
            continue
        with Image.open(root / row.path) as image:
            face = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        with torch.no_grad():
            output = model(F.avg_pool2d(face.unsqueeze(0), 4))[0]
        name = f"restored/{Path(row.path).stem}.png"
        pixels = (output.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(out / name)
        restored.append(name)
    manifest = source.assign(path=paths, restored=restored)
    manifest = manifest[["path", "subject", *spec.attributes, "split", "restored"]]
    manifest.to_csv(out / "manifest.csv", index=False)
    print(f"wrote {out / 'manifest.csv'}: {sum(map(bool, restored))} outputs of {len(manifest)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "example-outputs"))
