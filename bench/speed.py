"""Seconds and peak memory of one cloak, per quality and image size, file to file.

Uses ``openclip:ViT-B-32/random``: the compute of the real default model, without its weights.
Each measurement runs in a fresh subprocess that does what ``sfumato cloak`` does with a PNG
(read, cloak, the quick check, write), so peak memory (max RSS) is all a user's run needs.
``engine s`` is the cloak alone (``cloak_image``), ``file s`` the whole run after the models load.

    python bench/speed.py [--sizes 1,4,24] [--qualities fast,default,slow] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from _common import ROOT, print_table, vangogh_images

ENCODER = "openclip:ViT-B-32/random"
SHAPES = {1: (1000, 1000), 4: (2000, 2000), 24: (6000, 4000)}  # megapixels -> (width, height)


def measure(source: Path, quality: str, threads: int) -> dict:
    code = f"""
import json, resource, sys, time, warnings
sys.path.insert(0, {str(ROOT / "daemon")!r})
warnings.simplefilter("ignore")
from pathlib import Path
from sfumato.options import CloakRequest
from sfumato.pipeline import Cloaker
options = CloakRequest(style="pixelart", quality={quality!r}, encoders=({ENCODER!r},), threads={threads},
                       device="cpu")
cloaker = Cloaker(device="cpu", threads={threads})
cloaker.prepare(options)
source = Path({str(source)!r})
start = time.perf_counter()
outcome = cloaker.cloak_file(source, source.with_name("cloaked.png"), options, overwrite=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # GB of 10^9 bytes
print(json.dumps({{"file_s": seconds, "engine_s": outcome.report.seconds, "peak_gb": peak,
                  "psnr": outcome.psnr}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,24")
    parser.add_argument("--qualities", default="fast,default,slow")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    art = Image.open(vangogh_images(1)[0]).convert("RGB")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quality in args.qualities.split(","):
            for mp in (int(s) for s in args.sizes.split(",")):
                w, h = SHAPES[mp]
                source = Path(tmp) / f"{mp}mp.png"
                if not source.exists():
                    art.resize((w, h), Image.Resampling.BICUBIC).save(source)
                m = measure(source, quality, args.threads)
                rows.append(
                    [
                        quality,
                        f"{mp} MP ({w}×{h})",
                        f"{m['engine_s']:.1f}",
                        f"{m['file_s']:.1f}",
                        f"{m['peak_gb']:.2f}",
                        f"{m['psnr']:.2f}",
                    ]
                )
                print(" ".join(rows[-1]), flush=True)
    print()
    print_table(["quality", "image", "engine s", "file s", "peak memory (GB)", "PSNR (dB)"], rows)


if __name__ == "__main__":
    main()
