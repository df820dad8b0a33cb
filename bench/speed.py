"""Seconds and peak memory of one cloak, per quality and image size.

Uses ``openclip:ViT-B-32/random``: the compute of the real default model, without its weights.
Each measurement runs in a fresh subprocess so peak memory (max RSS) belongs to it alone.

    python bench/speed.py [--sizes 1,4,24] [--qualities fast,default,slow] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, VANGOGH, print_table

ENCODER = "openclip:ViT-B-32/random"
SHAPES = {1: (1000, 1000), 4: (2000, 2000), 24: (6000, 4000)}  # megapixels -> (width, height)


def measure(megapixels: int, quality: str, threads: int) -> dict:
    code = f"""
import json, resource, sys, time, warnings
sys.path.insert(0, {str(ROOT / "daemon")!r})
warnings.simplefilter("ignore")
from PIL import Image
import torch
from sfumato.engine.cloak import cloak_image, load_encoders
from sfumato.options import CloakOptions
torch.set_num_threads({threads})
art = Image.open({str(sorted(VANGOGH.glob("*.png"))[0])!r}).convert("RGB")
image = art.resize({SHAPES[megapixels]!r}, Image.Resampling.BICUBIC)
encoders = load_encoders([{ENCODER!r}], torch.device("cpu"))
start = time.perf_counter()
result = cloak_image(image, CloakOptions(style="pixelart", quality={quality!r}, encoders=({ENCODER!r},),
                     threads={threads}), encoders=encoders)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({{"seconds": seconds, "peak_gb": peak, "psnr": result.report["psnr"]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,24")
    parser.add_argument("--qualities", default="fast,default,slow")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for quality in args.qualities.split(","):
        for mp in (int(s) for s in args.sizes.split(",")):
            m = measure(mp, quality, args.threads)
            w, h = SHAPES[mp]
            rows.append([quality, f"{mp} MP ({w}×{h})", f"{m['seconds']:.1f}", f"{m['peak_gb']:.2f}"])
            print(" ".join(rows[-1]), flush=True)
    print()
    print_table(["quality", "image", "seconds", "peak memory (GB)"], rows)


if __name__ == "__main__":
    main()
