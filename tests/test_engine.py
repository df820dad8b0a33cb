"""The cloaking engine as a library: moves embeddings toward the target inside the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from enginekit import TINY_CLIP, artwork, as_array, half_flat
from sfumato.engine.cloak import apply_full_resolution, cloak_image, load_encoders, within_floor
from sfumato.engine.image_ops import pixelart
from sfumato.engine.levels import budget_for
from sfumato.engine.metrics import psnr, ssim_score
from sfumato.engine.objectives import projection_shift, unit
from sfumato.engine.stylizers import STYLIZERS
from sfumato.errors import Cancelled, EncoderError
from sfumato.options import BUILTIN_STYLES, CloakRequest

CPU = torch.device("cpu")


def options(**kw) -> CloakRequest:
    base = dict(style="pixelart", encoders=("effnet-lite:0",), steps=8, threads=2)
    base.update(kw)
    return CloakRequest(**base)


@pytest.fixture(scope="module")
def effnet():
    return load_encoders(["effnet-lite:0"], CPU)


def held_shift(encoder, original, cloaked, target) -> float:
    """Projection shift computed here, independently of the engine's own report."""

    def f(x):
        t = torch.from_numpy(x).permute(2, 0, 1)[None]
        with torch.no_grad():
            return unit(encoder.embed(t))

    return float(projection_shift(f(cloaked), f(original), f(target))[0])


def test_cloak_moves_the_embedding_toward_the_pixelart_target(effnet):
    image = artwork(128)
    result = cloak_image(image, options(steps=12), encoders=effnet)
    x = as_array(image)
    target = pixelart(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    shift = held_shift(effnet[0], x, result.pixels, np.ascontiguousarray(target))
    assert shift > 0.1
    assert result.report.encoders[0].shift > 0.1
    assert result.report.encoders[0].loss_after < result.report.encoders[0].loss_before
    assert result.report.target == "pixelart"


def test_per_pixel_budget_holds_and_flat_colour_gets_least(effnet):
    image = half_flat(128)
    result = cloak_image(image, options(), encoders=effnet)
    change = np.abs(result.pixels - as_array(image)) * 255
    budget = budget_for("default")
    assert change.max() <= budget.eps_max * 255 + 1e-3
    flat, textured = change[:, 8:56], change[:, 72:]
    assert flat.max() <= round(budget.eps_max * budget.flat_fraction * 255) + 1e-3
    assert textured.mean() > 2 * flat.mean()
    written = np.round(result.pixels * 255) / 255  # what the 8-bit file will hold
    assert psnr(as_array(image), written) >= budget.psnr_floor  # after rounding too
    assert result.report.psnr >= budget.psnr_floor


def test_the_search_spends_the_psnr_floor_where_it_helps(effnet):
    # A budget map with headroom, projected back onto the floor: the cloak ends near the floor,
    # not a decibel above it as plain sign steps inside the map would leave it. The painting is
    # given dense grain, so its texture can hide the floor's change everywhere.
    grain = np.random.default_rng(0).normal(0, 12, (128, 128, 3))
    busy = np.clip(np.asarray(artwork(128), dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    result = cloak_image(Image.fromarray(busy), options(steps=16), encoders=effnet)
    floor = budget_for("default").psnr_floor
    assert floor <= result.report.psnr < floor + 0.5


@pytest.mark.parametrize("level,floor", [("low", 40.0), ("high", 33.0)])
def test_intensity_levels_set_max_change_and_psnr_floor(effnet, level, floor):
    image = artwork(96)
    result = cloak_image(image, options(intensity=level, steps=4), encoders=effnet)
    assert result.report.budget.psnr_floor == floor
    assert result.report.psnr >= floor
    assert result.report.max_change <= budget_for(level).eps_max * 255 + 1e-3


def test_numeric_intensity_is_the_largest_change_in_255ths(effnet):
    result = cloak_image(artwork(96), options(intensity=3, steps=4), encoders=effnet)
    assert 0 < result.report.max_change <= 3


def test_intensity_zero_changes_nothing(effnet):
    image = artwork(64)
    result = cloak_image(image, options(intensity=0), encoders=effnet)
    assert np.array_equal(result.pixels, as_array(image))


def test_same_seed_same_result_other_seed_other_result(effnet):
    image = artwork(96)
    a = cloak_image(image, options(seed=3, steps=4), encoders=effnet).pixels
    b = cloak_image(image, options(seed=3, steps=4), encoders=effnet).pixels
    c = cloak_image(image, options(seed=4, steps=4), encoders=effnet).pixels
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_auto_style_is_a_builtin_chosen_reproducibly_and_reported(effnet):
    image = artwork(96)
    first = cloak_image(image, options(style="auto", steps=2), encoders=effnet)
    second = cloak_image(image, options(style="auto", steps=2), encoders=effnet)
    assert first.report.target in STYLIZERS
    assert first.report.target == second.report.target
    # passing the reported target back gives the same cloak (what the daemon does per folder)
    again = cloak_image(image, options(style=first.report.target, steps=2), encoders=effnet)
    assert np.array_equal(again.pixels, first.pixels)


def test_text_target_through_the_clip_text_tower():
    encoders = load_encoders([TINY_CLIP], CPU)
    result = cloak_image(artwork(64), options(style="a pixel art sprite", steps=6), encoders=encoders)
    assert result.report.target_kind == "text"
    assert result.report.encoders[0].loss_after < result.report.encoders[0].loss_before


def test_text_target_for_an_encoder_without_text_is_a_clear_error(effnet):
    with pytest.raises(EncoderError, match="cannot embed text"):
        cloak_image(artwork(64), options(style="a cubist painting"), encoders=effnet)


def test_the_built_in_style_names_the_config_knows_are_the_engines():
    assert tuple(STYLIZERS) == BUILTIN_STYLES


def test_folder_of_reference_images_is_a_target(tmp_path, effnet):
    refs = tmp_path / "refs"
    refs.mkdir()
    for i, stylize in enumerate(STYLIZERS.values()):
        x = torch.from_numpy(as_array(artwork(64))).permute(2, 0, 1)[None]
        styled = (stylize(x)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        from PIL import Image

        Image.fromarray(styled).save(refs / f"ref{i}.png")
    result = cloak_image(artwork(64), options(style=str(refs), steps=6), encoders=effnet)
    assert result.report.target_kind == "folder"
    assert result.report.encoders[0].shift > 0


def test_ensemble_reports_every_member(effnet):
    encoders = effnet + load_encoders([TINY_CLIP], CPU)
    result = cloak_image(artwork(64), options(steps=3), encoders=encoders)
    assert [e.encoder for e in result.report.encoders] == ["effnet-lite:0", TINY_CLIP]


def test_greyscale_sources_get_a_grey_cloak(effnet):
    grey = artwork(64).convert("L").convert("RGB")
    result = cloak_image(grey, options(steps=4), encoders=effnet, greyscale=True)
    assert np.array_equal(result.pixels[..., 0], result.pixels[..., 1])
    assert np.array_equal(result.pixels[..., 1], result.pixels[..., 2])


def test_full_resolution_in_and_out_above_the_working_size(effnet):
    image = artwork(96).resize((700, 600))
    result = cloak_image(image, options(quality="fast", steps=2), encoders=effnet)
    assert result.pixels.shape == (600, 700, 3)
    assert result.report.working_size == (439, 512)
    assert result.report.max_change <= 8 + 1e-3


def test_bands_join_seamlessly_when_the_perturbation_is_upsampled():
    pixels = np.full((1300, 90, 3), 0.5, dtype=np.float32)
    delta = torch.linspace(-0.02, 0.02, 200)[None, None, :, None].expand(1, 3, 200, 14).contiguous()
    out = apply_full_resolution(pixels, delta, bit_depth=16)
    direct = torch.nn.functional.interpolate(delta, size=(1300, 90), mode="bilinear", align_corners=False)
    expected = np.round((0.5 + direct[0].permute(1, 2, 0).numpy()) * 65535) / 65535
    assert np.abs(out - expected).max() < 2e-4


def test_written_pixels_keep_the_ssim_floor_and_report_the_ssim_they_have():
    """Rounding to 8 bits can push a cloak under the SSIM floor; the write takes δ back until the
    rounded pixels hold it, and hands back the SSIM of those very pixels for the report."""
    pixels = as_array(artwork(64))
    noise = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(3))
    delta = 6 / 255 * noise.clamp(-1, 1)
    full, _, _ = within_floor(pixels, delta, 8, floor=20.0, ssim_floor=0.0)
    floor = 1 - (1 - ssim_score(pixels, full)) / 2  # half the structural change δ makes
    out, achieved, similarity = within_floor(pixels, delta, 8, floor=20.0, ssim_floor=floor)
    assert similarity == pytest.approx(ssim_score(pixels, out), abs=1e-6)
    assert similarity >= floor
    assert achieved == pytest.approx(psnr(pixels, out), abs=1e-6)
    assert psnr(pixels, out) > psnr(pixels, full) + 1  # the change was taken back, not left as it was
    unchecked, _, its_ssim = within_floor(pixels, delta, 8, floor=20.0)
    assert np.array_equal(unchecked, full)  # no floor: nothing taken back
    assert its_ssim == pytest.approx(ssim_score(pixels, unchecked), abs=1e-6)  # still the written pixels'


def test_should_stop_cancels_without_a_result(effnet):
    with pytest.raises(Cancelled):
        cloak_image(artwork(64), options(), encoders=effnet, should_stop=lambda: True)


def test_a_stop_asked_while_reading_loads_no_model_and_writes_nothing(tmp_path, monkeypatch):
    from sfumato.pipeline import Cloaker

    src, dst = tmp_path / "art.png", tmp_path / "ready" / "art.png"
    artwork(64).save(src)
    cloaker = Cloaker(device="cpu")

    def load_models(_options):
        raise AssertionError("models were loaded after the stop")

    monkeypatch.setattr(cloaker, "encoders_for", load_models)
    with pytest.raises(Cancelled):
        cloaker.cloak_file(src, dst, options(), should_stop=lambda: True)
    assert not dst.parent.exists() and src.exists()


def test_progress_reaches_one(effnet):
    seen = []
    cloak_image(artwork(64), options(steps=3), encoders=effnet, progress=seen.append)
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_pixelart_stylizer_is_12x_blocks_of_3_bit_colour():
    x = torch.rand(1, 3, 48, 60)
    y = pixelart(x)
    assert y.shape == x.shape
    levels = torch.unique(torch.round(y * 7))
    assert torch.allclose(y * 7, torch.round(y * 7), atol=1e-5) and len(levels) <= 8
    blocks = y.unfold(2, 12, 12).unfold(3, 12, 12)  # 4×5 blocks of 12×12
    assert torch.all(blocks.amax(dim=(-1, -2)) == blocks.amin(dim=(-1, -2)))


class _LinearTerm:
    """A term whose gradient is a fixed pixel pattern: shift = mean(pattern · image)."""

    def __init__(self, pattern: torch.Tensor, spatial: bool) -> None:
        self.pattern = pattern
        self.encoder = type("FakeEncoder", (), {"spatial": spatial})()

    def shift(self, cloaked: torch.Tensor, views) -> torch.Tensor:
        return (cloaked * self.pattern).sum()[None]


@pytest.mark.parametrize("spatial", [False, True])
def test_gradient_smoothing_is_for_pooled_encoders_not_latent_ones(spatial):
    """Pooled encoders get translation-smoothed gradients (transfer); a latent encoder, attacked
    white-box, keeps the fine detail that moves it."""
    from sfumato.engine import optimiser

    checkerboard = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float() * 2 - 1
    pattern = checkerboard.expand(1, 3, 32, 32)
    image = torch.full((1, 3, 32, 32), 0.5)
    pooled, latent = optimiser._gradient(
        image, torch.zeros_like(image), [_LinearTerm(pattern, spatial)], [], None
    )
    # Each part comes back on its own (the search gives each its own momentum).
    assert torch.count_nonzero(pooled if spatial else latent) == 0
    inner = (-(pooled + latent))[..., 4:-4, 4:-4]  # away from the blur's border
    if spatial:
        assert torch.allclose(inner, pattern[..., 4:-4, 4:-4])
    else:
        assert inner.abs().max() < 0.05  # a 1-px checkerboard does not survive σ=1 smoothing


def test_mostly_flat_art_keeps_the_flat_budget_on_every_flat_colour():
    """Flat-colour illustration: a small textured patch must not lend its budget to the flat
    areas (float residue in a flat region's local std, scaled up, once gave them the full 8/255)."""
    from sfumato.engine.budget import budget_map

    art = np.zeros((256, 256, 3), dtype=np.uint8)
    art[:] = (60, 90, 60)  # a dark green whose local std computes to about 1e-4, not 0
    art[128:, :] = (230, 200, 80)
    art[:64, :64] = np.asarray(artwork(64))  # a little texture
    x = torch.from_numpy(as_array(Image.fromarray(art))).permute(2, 0, 1)[None]
    budget = budget_for("default")
    eps = budget_map(x, budget)[0, 0] * 255
    flat_cap = budget.eps_max * budget.flat_fraction * 255
    away_from_texture = torch.ones_like(eps, dtype=torch.bool)
    away_from_texture[:72, :72] = False
    for edge in (127, 128):  # the edge between the two flat colours is not flat: leave it out
        away_from_texture[edge - 4 : edge + 5] = False
    assert eps[away_from_texture].max() <= flat_cap + 1e-4
    assert eps[:56, :56].mean() > 2 * flat_cap  # the texture still gets more


def test_soft_rays_on_a_smooth_sky_get_only_the_flat_colour_budget():
    """A drawn sunrise: smooth gradients hide nothing. The texture map leaves a residue of a tenth
    of a level along soft rays, and a map scaled up without bound to reach the PSNR floor on so
    little texture gave that residue the largest change, drawn as jagged streaks."""
    from sfumato.engine.budget import budget_map

    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    sky = 40 + 160 * (yy / 255)[..., None] ** 1.6 * np.array([1.0, 0.7, 0.4])
    angle, radius = np.arctan2(yy - 160, xx - 128), np.hypot(yy - 160, xx - 128)
    rays = (0.5 + 0.5 * np.cos(angle * 14)) * np.exp(-radius / 90) * 40
    art = np.clip(sky + rays[..., None] * np.array([1.0, 0.8, 0.4]), 0, 255).round().astype(np.uint8)
    art[radius < 23] = (255, 236, 180)  # the sun, where the rays meet
    x = torch.from_numpy(as_array(Image.fromarray(art))).permute(2, 0, 1)[None]
    budget = budget_for("default")
    eps = budget_map(x, budget)[0, 0]
    # Close to the sun the rays are a fine grating of 30 levels, which does hide some change.
    soft = torch.from_numpy(radius >= 40)
    assert eps[soft].max() <= budget.eps_max * budget.flat_fraction + 1e-6


def test_ssim_term_equals_kornias_ssim_in_value_and_gradient(monkeypatch):
    """The search's SSIM term keeps the original's statistics between steps and computes its
    gradient in bands of rows; it must still be kornia's SSIM, or the term would pull the cloak
    toward something else."""
    from kornia.metrics import ssim

    from sfumato.engine import ssim_term

    monkeypatch.setattr(ssim_term, "BAND_ROWS", 16)  # 40 rows: three bands, two inner seams
    gen = torch.Generator().manual_seed(3)
    original = torch.rand(1, 3, 40, 56, generator=gen)
    changed = (original + 0.05 * torch.randn(original.shape, generator=gen)).clamp(0, 1)
    term = ssim_term.SsimToReference(original)
    theirs = changed.clone().requires_grad_(True)
    expected = 1 - ssim(theirs, original, window_size=11).mean()
    expected.backward()
    assert float(term.loss(changed)) == pytest.approx(float(expected), rel=1e-5)
    assert 0.01 < float(expected) < 1
    assert torch.allclose(term.gradient(changed, 0.5), 0.5 * theirs.grad, rtol=1e-4, atol=1e-9)
    assert float(term.loss(original)) == pytest.approx(0.0, abs=1e-6)


def test_with_a_latent_encoder_strong_brushwork_takes_more_and_smooth_and_flat_areas_do_not():
    """Texture masks a change of up to half its local std: a latent encoder may spend the largest
    change in strong brushwork, while smooth skies keep their texture-scaled budget (a white-box
    latent leaves visible block edges there) and flat colour its small share."""
    from sfumato.engine.budget import budget_map, texture_map
    from sfumato.engine.levels import LATENT_TEXTURE_MASKING

    rng = np.random.default_rng(0)
    art = np.zeros((128, 128, 3))
    art[:, :24] = (200, 180, 120)  # flat colour
    sky = np.linspace(90, 96, 24)[None, :, None] + np.array([0, 40, 80])  # a smooth gradient
    art[:, 24:48] = sky + rng.normal(0, 1.5, (128, 24, 3))
    art[:, 48:] = 120 + rng.normal(0, 45, (128, 80, 3))  # dense brushwork, std about 45/255
    art = np.clip(art, 0, 255)
    x = torch.from_numpy(as_array(Image.fromarray(art.astype(np.uint8)))).permute(2, 0, 1)[None]
    budget = budget_for("default")
    plain = budget_map(x, budget)[0, 0]
    latent = budget_map(x, budget, LATENT_TEXTURE_MASKING)[0, 0]
    texture = texture_map(x)[0, 0]
    flat, smooth, brushwork = (
        (slice(None), slice(4, 16)),
        (slice(None), slice(30, 42)),
        (slice(None), slice(56, None)),
    )
    assert latent[flat].max() <= budget.eps_max * budget.flat_fraction + 1e-6
    assert torch.equal(latent[smooth], plain[smooth])  # not enough texture to hide more
    strong = texture[brushwork] >= 2 * budget.eps_max
    assert strong.float().mean() > 0.5  # the test image has strong brushwork to spend it on
    assert torch.allclose(latent[brushwork][strong], torch.tensor(budget.eps_max))
    assert latent[brushwork].mean() > plain[brushwork].mean()
    assert (latent >= plain).all()


def test_the_ssim_floor_takes_the_change_back_where_it_shows_and_keeps_it_where_texture_hides_it():
    """A change whose structure shows (SSIM under the floor) is taken back on the smooth half,
    where it shows, and kept on the textured half, where it does not, until the floor holds: more
    of it survives than scaling it down as a whole would leave. One that keeps the floor is left
    as it is."""
    from sfumato.engine.optimiser import hold_ssim_floor
    from sfumato.engine.ssim_term import SsimToReference

    gen = torch.Generator().manual_seed(5)
    image = torch.linspace(0.3, 0.6, 64)[None, None, :, None].repeat(1, 3, 1, 64)
    image[..., 32:] += 0.1 * torch.randn(1, 3, 64, 32, generator=gen)  # brushwork on the right
    image = image.clamp(0.05, 0.95)
    delta = 0.03 * torch.randn(image.shape, generator=gen)
    similarity = SsimToReference(image)

    def ssim_of(change: torch.Tensor) -> float:
        return 1 - float(similarity.loss((image + change).clamp(0, 1)))

    floor = 0.9
    assert ssim_of(delta) < floor - 0.05  # the test change breaks the floor
    held = hold_ssim_floor(image, delta, similarity, floor)
    assert floor <= ssim_of(held) < floor + 0.001  # on the floor, not far above it
    assert (held.abs() <= delta.abs()).all() and (held * delta >= 0).all()  # only taken back

    kept = held.abs().sum((0, 1, 2)) / delta.abs().sum((0, 1, 2))  # per column
    assert kept[40:].mean() > 0.9 and kept[:24].mean() < 0.6
    share = next(s / 100 for s in range(100, 0, -1) if ssim_of(delta * s / 100) >= floor)
    assert held.pow(2).mean() > 1.5 * (share * delta).pow(2).mean()
    assert torch.equal(hold_ssim_floor(image, held, similarity, floor - 0.01), held)
