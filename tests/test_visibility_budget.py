"""The perceptual budget: the cloak stays below what a person sees on skies, edges and flat colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

from enginekit import artwork, as_array
from sfumato.engine.budget import texture_map
from sfumato.engine.cloak import apply_full_resolution, cloak_image, load_encoders, working_copy
from sfumato.engine.levels import INTENSITIES, budget_for
from sfumato.engine.optimiser import LOW_FREQUENCY_SHARE, _inside
from sfumato.engine.visibility import (
    ROUNDING_MARGIN,
    SEAM_RADIUS,
    SSIMULACRA2_MARGIN,
    WrittenPicture,
    _seamless,
    hold_visibility_floor,
    jod,
)
from sfumato.options import CloakRequest
from sfumato.verify.visibility import ssimulacra2 as ssimulacra2_score


def _uint8(image: torch.Tensor) -> np.ndarray:
    """1×3×H×W in [0, 1] as the 8-bit H×W×3 samples a file holds."""
    return np.round(image.detach()[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(pixels, 0, 255).round().astype(np.float32) / 255).permute(2, 0, 1)[None]


def sky_and_brushwork(size: int = 128) -> torch.Tensor:
    """A smooth sky gradient on the left half, dense brushwork on the right."""
    rng = np.random.default_rng(3)
    pixels = np.zeros((size, size, 3))
    ramp = np.linspace(150, 200, size)[:, None, None]
    pixels[:, : size // 2] = ramp + np.array([-60, -10, 30])
    pixels[:, size // 2 :] = 120 + rng.normal(0, 40, (size, size - size // 2, 3))
    return tensor(pixels)


def test_an_isolated_edge_and_a_sparse_lattice_mask_nothing_while_dense_texture_does():
    """A change beside a lone edge or a thin line on a smooth ground shows (ghost copies, fringes),
    so the texture map must not count them as texture; brushwork hides a change and keeps it."""
    edge = np.full((96, 96, 3), 60.0)
    edge[:, 48:] = 160
    lattice = np.full((96, 96, 3), 60.0)
    lattice[::10] = 160
    lattice[:, ::10] = 160
    noise = 120 + np.random.default_rng(0).normal(0, 30, (96, 96, 3))
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    texture = {
        name: float(texture_map(tensor(p))[inner].mean() * 255)
        for name, p in (("edge", edge), ("lattice", lattice), ("noise", noise))
    }
    assert texture["edge"] < 0.5
    assert texture["lattice"] < 2.0
    assert texture["noise"] > 10.0


def test_blotches_are_capped_while_fine_grain_keeps_the_budget():
    """The eye sees a patch tens of pixels across before a grain: the search's projection caps the
    change's local mean at a share of the budget, and leaves a pixel-scale pattern alone."""
    image = torch.full((1, 3, 64, 64), 0.5)
    eps = torch.full((1, 1, 64, 64), 8 / 255)
    blotch = torch.full_like(image, 8 / 255)
    capped = _inside(image, blotch, eps)
    assert float(capped.mean()) <= LOW_FREQUENCY_SHARE * 8 / 255 + 1e-4
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2 - 1.0
    grain = (8 / 255) * checker.expand_as(image).clone()
    kept = _inside(image, grain, eps)
    assert float(kept.abs().mean()) > 0.9 * 8 / 255


def test_the_jod_floor_takes_the_change_back_where_it_shows():
    """A change over a sky and over brushwork, visible as a whole: the hold brings the picture onto
    the floor, only ever scales the change toward zero, and takes it back further on the sky."""
    image = sky_and_brushwork()
    rng = torch.Generator().manual_seed(0)
    blotches = gaussian_blur2d(torch.randn(image.shape, generator=rng), (13, 13), (3.0, 3.0))
    delta = blotches / blotches.abs().max() * 12 / 255
    delta = (image + delta).clamp(0, 1) - image
    assert jod(image, image + delta) < 9.2  # plainly visible before
    held = hold_visibility_floor(image, delta, 9.5)
    assert jod(image, (image + held).clamp(0, 1)) >= 9.5 + ROUNDING_MARGIN - 1e-3
    ratio = torch.where(delta.abs() > 1e-6, held / delta, torch.ones_like(delta))
    assert float(ratio.min()) >= 0 and float(ratio.max()) <= 1 + 1e-6
    half = image.shape[-1] // 2
    kept_sky = float(held[..., :half].abs().mean() / delta[..., :half].abs().mean())
    kept_brush = float(held[..., half:].abs().mean() / delta[..., half:].abs().mean())
    assert kept_brush > 0.9 and kept_brush > 1.3 * kept_sky


def test_the_ssimulacra2_floor_takes_back_grain_that_cvvdp_forgives():
    """Fine grain over a smooth gradient: cvvdp may pass it while SSIMULACRA2 rates the picture
    low; with an SSIMULACRA2 floor the hold takes grain back until the picture keeps it too."""
    image = sky_and_brushwork()
    grain = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    delta = (image + (6 / 255) * grain).clamp(0, 1) - image
    assert jod(image, image + delta) >= 9.5 + ROUNDING_MARGIN  # cvvdp alone lets it through
    assert ssimulacra2_score(_uint8(image), _uint8(image + delta)) < 55
    held = hold_visibility_floor(image, delta, 9.5, 70.0)
    after = ssimulacra2_score(_uint8(image), _uint8((image + held).clamp(0, 1)))
    assert after >= 70.0 + SSIMULACRA2_MARGIN - 0.5
    assert float(held.abs().sum()) > 0.2 * float(delta.abs().sum())  # taken back, not wiped out
    assert float(held.abs().max()) <= float(delta.abs().max()) + 1e-7


def test_a_change_already_below_the_floor_is_left_alone():
    image = sky_and_brushwork()
    delta = torch.zeros_like(image)
    delta[..., 64:] = 0.5 / 255
    assert torch.equal(hold_visibility_floor(image, delta, 9.5, 60.0), delta)


def test_intensity_levels_are_ordered_by_visibility():
    floors = [budget_for(level).jod_floor for level in INTENSITIES]
    assert floors == sorted(floors, reverse=True)
    s2_floors = [budget_for(level).ssimulacra2_floor for level in INTENSITIES]
    assert s2_floors == sorted(s2_floors, reverse=True)
    assert budget_for("default").ssimulacra2_floor >= 60
    assert budget_for("low").jod_floor >= 9.8 and budget_for("default").jod_floor >= 9.5
    # a number between two levels keeps a floor between theirs
    assert budget_for("default").jod_floor > budget_for(10).jod_floor > budget_for("high").jod_floor


@pytest.mark.parametrize("level", ["default", "low"])
def test_a_cloak_keeps_its_levels_jod_floor_on_a_sky(level):
    """End to end: the written pixels of a cloak over a smooth sky score at least the level's floor."""
    (encoder,) = load_encoders(["effnet-lite:0"], torch.device("cpu"))
    sky = (sky_and_brushwork(96)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    painting = np.asarray(artwork(96))
    picture = Image.fromarray(np.concatenate([sky, painting], axis=1))
    options = CloakRequest(style="pixelart", encoders=("effnet-lite:0",), steps=6, threads=1, intensity=level)
    result = cloak_image(picture, options, encoders=[encoder])
    original = torch.from_numpy(as_array(picture)).permute(2, 0, 1)[None]
    cloaked = torch.from_numpy(result.pixels).permute(2, 0, 1)[None]
    assert jod(original, cloaked) >= budget_for(level).jod_floor
    assert ssimulacra2_score(_uint8(original), _uint8(cloaked)) >= budget_for(level).ssimulacra2_floor
    assert result.report.budget.jod_floor == budget_for(level).jod_floor
    assert float(np.abs(result.pixels - as_array(picture)).max()) > 0  # something was cloaked


def _enlarged_sky_and_brushwork(
    factor: int = 4,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, WrittenPicture]:
    """A 128² sky-and-brushwork picture enlarged ``factor`` times, its 128² working copy, grain on
    it, and the picture as written."""
    small = sky_and_brushwork(128)
    large = torch.nn.functional.interpolate(small, scale_factor=factor, mode="bicubic").clamp(0, 1)
    pixels = large[0].permute(1, 2, 0).numpy()
    work = working_copy(pixels, 128, torch.device("cpu"))
    grain = torch.randn(work.shape, generator=torch.Generator().manual_seed(0))
    delta = (work + (6 / 255) * grain).clamp(0, 1) - work
    written = WrittenPicture(pixels, lambda d, rows, cols: apply_full_resolution(pixels, d, 8, rows, cols))
    return pixels, work, delta, written


def _written_score(
    pixels: np.ndarray, written: WrittenPicture, delta: torch.Tensor, cols: slice = slice(None)
) -> float:
    """SSIMULACRA2 of the file as written, by the package (the judge)."""

    def as_8_bit(values: np.ndarray) -> np.ndarray:
        return np.round(np.clip(values[:, cols], 0, 1) * 255).astype(np.uint8)

    return ssimulacra2_score(as_8_bit(pixels), as_8_bit(written.render(delta, slice(None), slice(None))))


def test_a_picture_larger_than_its_working_copy_keeps_the_ssimulacra2_floor_as_written():
    """Upsampled onto a large picture, a change that keeps the floor on the working copy can miss
    it in the file; the hold scores the written pixels instead."""
    pixels, work, delta, written = _enlarged_sky_and_brushwork()
    on_work = hold_visibility_floor(work, delta, 9.0, 60.0, 0.25)
    assert _written_score(pixels, written, on_work) < 60.0  # the working copy's floor fails in the file
    held = hold_visibility_floor(work, delta, 9.0, 60.0, 0.25, written)
    assert 60.0 <= _written_score(pixels, written, held) <= 64.0  # on the floor, little taken in vain
    assert float(held.abs().sum()) > 0.1 * float(delta.abs().sum())  # taken back, not wiped out


def test_each_tile_of_a_large_picture_keeps_the_floor(monkeypatch):
    """Judged tile by tile (as ``sfumato check`` judges a large picture), every tile keeps the
    floor; held as one, the picture passes on average while its brushwork half fails alone."""
    import sfumato.engine.visibility as visibility

    pixels, work, delta, written = _enlarged_sky_and_brushwork()
    halves = (slice(0, pixels.shape[1] // 2), slice(pixels.shape[1] // 2, None))
    monkeypatch.setattr(visibility, "TILE_PIXELS", pixels.shape[0] * pixels.shape[1] // 2)
    held = hold_visibility_floor(work, delta, 9.0, 60.0, 0.25, written)
    assert min(_written_score(pixels, written, held, cols) for cols in halves) >= 60.0
    assert float(held.abs().sum()) > 0.3 * float(delta.abs().sum())  # taken back, not wiped out
    monkeypatch.setattr(visibility, "TILE_PIXELS", pixels.shape[0] * pixels.shape[1])
    as_one = hold_visibility_floor(work, delta, 9.0, 60.0, 0.25, written)
    assert _written_score(pixels, written, as_one) >= 60.0
    assert min(_written_score(pixels, written, as_one, cols) for cols in halves) < 60.0


def test_tile_caps_blend_across_a_border_without_rising_above_either():
    caps = torch.ones(1, 1, 40, 80)
    caps[..., 40:] = 0.25
    blended = _seamless(caps)
    assert bool((blended <= caps + 1e-6).all())  # no tile gets more change than its own cap allows
    far = 2 * SEAM_RADIUS + 1
    assert torch.allclose(blended[..., : 40 - far], caps[..., : 40 - far])
    assert torch.allclose(blended[..., 40 + far :], caps[..., 40 + far :])
    assert float(blended.diff(dim=-1).abs().max()) < 0.75 / 3  # a ramp, not a step


def test_rendering_part_of_a_picture_gives_that_part_of_the_whole_picture():
    """The full-size hold renders only the tile it scores; it must be what the file will hold."""
    pixels = np.random.default_rng(1).random((1300, 700, 3)).astype(np.float32)
    delta = torch.randn(1, 3, 130, 70, generator=torch.Generator().manual_seed(1)) * 0.02
    whole = apply_full_resolution(pixels, delta, 8)
    for rows in (slice(0, 100), slice(500, 1100), slice(1000, 1300), slice(511, 513)):
        assert np.array_equal(apply_full_resolution(pixels, delta, 8, rows), whole[rows])
        for cols in (slice(0, 350), slice(349, 700), slice(3, 4)):
            assert np.array_equal(apply_full_resolution(pixels, delta, 8, rows, cols), whole[rows, cols])
    # and the whole is δ upsampled as PyTorch's bilinear does it, rounded to 8 bits
    upsampled = torch.nn.functional.interpolate(delta, size=(1300, 700), mode="bilinear", align_corners=False)
    expected = np.clip(pixels + upsampled[0].permute(1, 2, 0).numpy(), 0, 1) * 255
    assert np.abs(whole * 255 - expected).max() <= 0.5 + 1e-3


def test_a_large_picture_keeps_the_jod_floor_on_its_written_pixels():
    """The whole-picture hold judges the working copy before rounding; what the file shows can be
    more (8-bit rounding draws contours in a clear sky). Here the written picture shows the change
    four times as strong as the working copy does: each tile is judged as written and keeps the
    floor there."""
    from sfumato.verify.visibility import jod as judge_jod

    sky = sky_and_brushwork(128)[..., :64].repeat(1, 1, 1, 2)  # the smooth half, twice
    large = torch.nn.functional.interpolate(sky, scale_factor=2, mode="bilinear").clamp(0, 1)
    pixels = (torch.round(large * 255) / 255)[0].permute(1, 2, 0).numpy()
    work = working_copy(pixels, 128, torch.device("cpu"))
    grain = torch.randn(work.shape, generator=torch.Generator().manual_seed(0))
    delta = (work + (1.5 / 255) * grain).clamp(0, 1) - work

    def render(d: torch.Tensor, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        return apply_full_resolution(pixels, 4 * d, 8, rows, cols)

    def as_written(d: torch.Tensor) -> float:
        return judge_jod(*(np.round(p * 255).astype(np.uint8) for p in (pixels, render(d))))

    assert as_written(hold_visibility_floor(work, delta, 9.5, 30.0, 0.5)) < 9.5  # working copy: fine
    held = hold_visibility_floor(work, delta, 9.5, 30.0, 0.5, WrittenPicture(pixels, render))
    assert as_written(held) >= 9.5
    assert float(held.abs().sum()) > 0.1 * float(delta.abs().sum())
