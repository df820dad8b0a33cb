"""What each intensity level does to the picture: PSNR, SSIM and largest change, measured.

Cloaks the first shared Van Gogh images at every level (``fast`` quality, effnet-lite:0; the
budget, not the search length, sets these figures).

    python bench/levels.py [--limit 5] [--quality fast]
"""

from __future__ import annotations

import argparse
import statistics

from PIL import Image

from _common import print_table, vangogh_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--quality", default="fast")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from sfumato.engine.cloak import cloak_image, load_encoders
    from sfumato.engine.levels import INTENSITIES
    from sfumato.options import CloakRequest

    encoders = load_encoders(["effnet-lite:0"], torch.device("cpu"))
    images = [Image.open(p).convert("RGB") for p in vangogh_images(args.limit)]
    rows = []
    for level, (eps, floor, _jod) in INTENSITIES.items():
        options = CloakRequest(
            style="pixelart",
            intensity=level,
            quality=args.quality,
            threads=args.threads,
            encoders=("effnet-lite:0",),
        )
        reports = [cloak_image(im, options, encoders=encoders).report.to_json() for im in images]
        rows.append(
            [
                level,
                f"{eps:g}",
                f"{floor:g}",
                f"{statistics.mean(r['psnr'] for r in reports):.1f}",
                f"{statistics.mean(r['ssim'] for r in reports):.3f}",
                f"{max(r['max_change'] for r in reports):g}",
            ]
        )
        print(" ".join(rows[-1]), flush=True)
    print()
    print_table(
        [
            "level",
            "largest change allowed (1/255)",
            "PSNR floor (dB)",
            "typical PSNR (dB)",
            "typical SSIM",
            "largest change seen",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
