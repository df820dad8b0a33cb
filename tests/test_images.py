"""Image files in and out: what an artist would notice if it went wrong (wrong way up, lost
transparency, changed colours, leaked location, a damaged original, a cryptic error)."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, PngImagePlugin

from imagefactory import exif_bytes, noise, png16_file, save, smooth, srgb_profile
from sfumato.errors import BadImageError, TransientError, TruncatedImageError, UsageError
from sfumato.images import (
    MIN_CLOAK_SIDE,
    encode_artwork,
    has_gps,
    read_artwork,
    reading,
    sniff_format,
    write_artwork,
)


def reread(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def round_trip(path: Path, **kwargs) -> Image.Image:
    art = read_artwork(path)
    return reread(encode_artwork(art, art.rgb, **kwargs))


# --- recognising files by content ---------------------------------------------------------------


def test_png_named_jpg_is_read_and_written_as_png(tmp_path: Path) -> None:
    path = save(tmp_path / "painting.jpg", noise(), "PNG")
    assert sniff_format(path) == "PNG"
    art = read_artwork(path)
    assert art.format == "PNG"
    assert reread(encode_artwork(art, art.rgb)).format == "PNG"


def test_jpeg_named_png_is_read_as_jpeg(tmp_path: Path) -> None:
    path = save(tmp_path / "photo.png", smooth(), "JPEG")
    assert sniff_format(path) == "JPEG"
    assert read_artwork(path).format == "JPEG"


@pytest.mark.parametrize("name", ["scan.jfif", "scan.JPE", "scan.jpeg"])
def test_a_rare_jpeg_name_is_a_picture_to_the_daemon_the_cli_reference_folders_and_the_reader(
    tmp_path: Path, name: str
) -> None:
    from sfumato.commands.cloak import expand_inputs
    from sfumato.engine.targets import reference_images
    from sfumato.paths import is_image_name

    path = save(tmp_path / name, smooth(), fmt="JPEG")
    (tmp_path / "notes.txt").write_text("not a picture")
    assert is_image_name(str(path))  # the daemon's outbox filter
    assert expand_inputs([tmp_path]) == [path]  # sfumato cloak FOLDER
    assert reference_images(tmp_path) == [path]  # a style folder
    assert read_artwork(path).format == "JPEG"


def test_gif_named_png_is_refused_naming_file_and_format(tmp_path: Path) -> None:
    path = save(tmp_path / "sketch.png", noise(), "GIF")
    assert sniff_format(path) is None
    with pytest.raises(BadImageError, match=r"^sketch\.png: not a JPG or PNG image .*GIF"):
        read_artwork(path)


def test_text_named_png_is_refused_as_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n")
    assert sniff_format(path) is None
    with pytest.raises(BadImageError, match=r"^notes\.png: not a JPG or PNG image .*text"):
        read_artwork(path)


def test_missing_file_sniffs_as_not_an_image(tmp_path: Path) -> None:
    assert sniff_format(tmp_path / "gone.png") is None
    with pytest.raises(BadImageError, match=r"^gone\.png: "):
        read_artwork(tmp_path / "gone.png")


# --- damaged and oversized files ----------------------------------------------------------------


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(BadImageError, match=r"^empty\.png: the file is empty$"):
        read_artwork(path)


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg"])
@pytest.mark.parametrize("kept", [0.5, 0.05])
def test_truncated_file_is_refused_at_read_time_as_cut_short(tmp_path: Path, name: str, kept: float) -> None:
    """Told apart from other damage: a file cut short is most often still being written."""
    whole = save(tmp_path / ("whole" + Path(name).suffix), noise(64, 64)).read_bytes()
    path = tmp_path / name
    path.write_bytes(whole[: int(len(whole) * kept)])
    with pytest.raises(TruncatedImageError, match=rf"^{name}: the image is truncated \(the file ends"):
        read_artwork(path)


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg"])
def test_corrupt_file_with_its_end_is_not_taken_for_an_unfinished_one(tmp_path: Path, name: str) -> None:
    whole = bytearray(save(tmp_path / ("whole" + Path(name).suffix), noise(64, 64)).read_bytes())
    whole[40 : len(whole) - 40] = bytes(len(whole) - 80)  # zeros over the middle, the end intact
    path = tmp_path / name
    path.write_bytes(bytes(whole))
    with pytest.raises(BadImageError, match=rf"^{name}: the image is truncated or corrupt$") as caught:
        read_artwork(path)
    assert not isinstance(caught.value, TruncatedImageError)


@pytest.mark.parametrize("size", [(1, 1), (31, 200), (200, 31)])
def test_pictures_too_small_to_cloak_are_refused_in_one_sentence(tmp_path: Path, size) -> None:
    path = save(tmp_path / "icon.png", noise(size[1], size[0]))
    assert read_artwork(path).size == size  # readable (sfumato check compares any size)...
    with pytest.raises(BadImageError, match=rf"^icon\.png: {size[0]}×{size[1]} pixels is too small to cloak"):
        read_artwork(path, min_side=MIN_CLOAK_SIDE)  # ...but not cloaked
    assert read_artwork(save(tmp_path / "ok.png", noise(32, 32)), min_side=MIN_CLOAK_SIDE).size == (32, 32)


def test_image_over_pixel_limit_is_refused_with_its_size(tmp_path: Path) -> None:
    path = save(tmp_path / "huge.png", noise(24, 32))
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImageError, match=r"^huge\.png: 32×24 pixels is larger than the 500"):
        read_artwork(path, max_pixels=500)
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert read_artwork(path, max_pixels=768).size == (32, 24)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = save(tmp_path / "bomb.png", noise(24, 32))
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImageError, match=r"^bomb\.png: .*larger than the 100-pixel limit"):
        read_artwork(path, max_pixels=100)  # more than twice the limit: Pillow's own refusal
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_animated_png_is_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(noise(seed=i)) for i in range(2)]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(BadImageError, match=r"^anim\.png: animated PNGs are not supported"):
        read_artwork(path)


# --- pixels and their layout --------------------------------------------------------------------


def test_png_round_trip_of_unchanged_pixels_is_lossless(tmp_path: Path) -> None:
    pixels = noise()
    art = read_artwork(save(tmp_path / "a.png", pixels))
    assert art.rgb.dtype == np.float32 and art.rgb.shape == (24, 32, 3)
    assert np.array_equal(np.rint(art.rgb * 255).astype(np.uint8), pixels)
    assert np.array_equal(np.asarray(reread(encode_artwork(art, art.rgb))), pixels)


def test_jpeg_round_trip_is_close_and_at_high_quality(tmp_path: Path) -> None:
    art = read_artwork(save(tmp_path / "a.jpg", smooth(), quality=90))
    out = reread(encode_artwork(art, art.rgb))
    assert out.format == "JPEG"
    difference = np.abs(np.asarray(out, dtype=np.float32) / 255 - art.rgb)
    assert difference.mean() < 1.5 / 255 and difference.max() < 8 / 255
    assert read_artwork(tmp_path / "a.jpg").jpeg_quality == 90
    written = tmp_path / "out.jpg"
    written.write_bytes(encode_artwork(art, art.rgb))
    assert read_artwork(written).jpeg_quality == 95


def test_cloaked_pixels_are_what_gets_written(tmp_path: Path) -> None:
    art = read_artwork(save(tmp_path / "a.png", noise()))
    changed = np.clip(art.rgb + np.float32(3 / 255), 0, 1)
    out = np.asarray(reread(encode_artwork(art, changed)))
    assert np.array_equal(out, np.rint(changed * 255).astype(np.uint8))


def test_exif_orientation_is_applied_and_output_is_upright(tmp_path: Path) -> None:
    stored = noise(24, 32)
    path = save(tmp_path / "phone.png", stored, exif=exif_bytes(orientation=6), dpi=(300, 150))
    art = read_artwork(path)
    upright = np.rot90(stored, k=-1)  # orientation 6: the camera was turned a quarter clockwise
    assert art.size == (24, 32)
    assert art.dpi == pytest.approx((150, 300), abs=0.05)  # PNG stores dots per metre
    assert np.array_equal(np.rint(art.rgb * 255).astype(np.uint8), upright)
    for policy in ("keep", "strip"):
        out = reread(encode_artwork(art, art.rgb, metadata=policy))
        assert out.size == (24, 32)
        assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1
        assert np.array_equal(np.asarray(out), upright)


def test_exif_orientation_of_jpeg_gives_rotated_size(tmp_path: Path) -> None:
    path = save(tmp_path / "phone.jpg", smooth(24, 32), exif=exif_bytes(orientation=8))
    art = read_artwork(path)
    assert art.size == (24, 32)
    assert reread(encode_artwork(art, art.rgb, metadata="keep")).size == (24, 32)


def test_rgba_alpha_is_kept_byte_exact_with_colour_under_transparency(tmp_path: Path) -> None:
    pixels = noise(channels=4)
    pixels[:4, :, 3] = 0  # fully transparent rows that still hold colour
    art = read_artwork(save(tmp_path / "a.png", pixels))
    assert art.alpha is not None and art.alpha.dtype == np.uint8
    assert np.array_equal(art.alpha, pixels[..., 3])
    out = reread(encode_artwork(art, art.rgb))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), pixels)


def test_grey_alpha_is_kept_and_stays_greyscale(tmp_path: Path) -> None:
    pixels = noise(channels=2)
    art = read_artwork(save(tmp_path / "a.png", Image.fromarray(pixels, "LA")))
    assert art.greyscale and np.array_equal(art.alpha, pixels[..., 1])
    out = reread(encode_artwork(art, art.rgb))
    assert out.mode == "LA"
    assert np.array_equal(np.asarray(out), pixels)


def test_palette_with_transparency_becomes_rgba_with_same_alpha(tmp_path: Path) -> None:
    palette_image = Image.fromarray(noise(channels=1) % 8, "L").convert("P")
    palette_image.putpalette([v for i in range(8) for v in (i * 30, 255 - i * 30, i * 10)])
    alphas = bytes([0, 64, 128, 255, 255, 200, 10, 255])
    path = save(tmp_path / "icon.png", palette_image, transparency=alphas)
    expected = np.asarray(Image.open(path).convert("RGBA"))
    art = read_artwork(path)
    assert art.source_mode == "P"
    assert np.array_equal(art.alpha, expected[..., 3])
    out = reread(encode_artwork(art, art.rgb))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), expected)


def test_colour_key_transparency_becomes_alpha(tmp_path: Path) -> None:
    pixels = noise()
    pixels[0, 0] = (1, 2, 3)
    path = save(tmp_path / "key.png", pixels, transparency=(1, 2, 3))
    art = read_artwork(path)
    assert art.alpha is not None and art.alpha[0, 0] == 0
    assert np.count_nonzero(art.alpha == 0) == np.count_nonzero(np.all(pixels == (1, 2, 3), 2))
    out = np.asarray(reread(encode_artwork(art, art.rgb)))
    assert out.shape == (24, 32, 4) and out[0, 0, 3] == 0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_greyscale_stays_greyscale(tmp_path: Path, fmt: str) -> None:
    art = read_artwork(save(tmp_path / "grey.img", noise(channels=1), fmt))
    assert art.greyscale
    assert np.array_equal(art.rgb[..., 0], art.rgb[..., 1])
    assert np.array_equal(art.rgb[..., 0], art.rgb[..., 2])
    assert reread(encode_artwork(art, art.rgb)).mode == "L"


def test_cmyk_jpeg_is_read_as_rgb(tmp_path: Path) -> None:
    cyan = np.zeros((24, 32, 4), np.uint8)
    cyan[..., 0] = 255  # full cyan ink, nothing else
    path = save(tmp_path / "print.jpg", Image.fromarray(cyan, "CMYK"))
    art = read_artwork(path)
    assert art.source_mode == "CMYK" and art.rgb.shape == (24, 32, 3)
    red, green, blue = art.rgb.reshape(-1, 3).mean(axis=0)
    assert red < 0.2 and green > 0.8 and blue > 0.8
    assert reread(encode_artwork(art, art.rgb)).mode == "RGB"


def test_cmyk_jpeg_with_unusable_profile_falls_back_and_drops_it(tmp_path: Path) -> None:
    cyan = np.zeros((24, 32, 4), np.uint8)
    cyan[..., 0] = 255
    path = save(tmp_path / "print.jpg", Image.fromarray(cyan, "CMYK"), icc_profile=srgb_profile())
    art = read_artwork(path)  # an RGB profile cannot describe CMYK ink
    assert art.icc_profile is None
    red, green, blue = art.rgb.reshape(-1, 3).mean(axis=0)
    assert red < 0.2 and green > 0.8 and blue > 0.8
    assert "icc_profile" not in reread(encode_artwork(art, art.rgb)).info


# --- 16-bit PNG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_keeps_full_precision(tmp_path: Path, channels: int, interlace: bool) -> None:
    samples = noise(channels=channels, bits=16)
    art = read_artwork(png16_file(tmp_path / "deep.png", samples, interlace=interlace))
    assert art.bit_depth == 16
    samples = samples.reshape(24, 32, -1)
    colour = samples[..., :3] if channels >= 3 else samples[..., :1]
    assert np.array_equal(np.rint(art.rgb[..., : colour.shape[2]] * 65535), colour)
    if channels in (2, 4):
        assert art.alpha.dtype == np.uint16 and np.array_equal(art.alpha, samples[..., -1])
    data = encode_artwork(art, art.rgb)
    out = tmp_path / "out.png"
    out.write_bytes(data)
    again = read_artwork(out)
    assert again.bit_depth == 16 and again.greyscale == (channels <= 2)
    assert np.array_equal(again.rgb, art.rgb)
    if channels in (2, 4):
        assert np.array_equal(again.alpha, art.alpha)


def test_16_bit_output_decodes_in_pillow_itself(tmp_path: Path) -> None:
    """Pillow's own decoder, not ours, must agree with what we wrote (grey at full depth, colour
    at the 8 bits it keeps)."""
    grey = noise(channels=1, bits=16)
    art = read_artwork(png16_file(tmp_path / "grey.png", grey))
    assert np.array_equal(np.asarray(reread(encode_artwork(art, art.rgb))), grey)
    colour = noise(channels=3, bits=16, seed=1)
    art = read_artwork(png16_file(tmp_path / "colour.png", colour))
    out = reread(encode_artwork(art, art.rgb))
    assert np.array_equal(np.asarray(out), (colour >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [2, 3])
def test_16_bit_png_keeps_profile_dpi_and_text_under_keep(tmp_path: Path, channels: int) -> None:
    """The 16-bit writer carries the same chunks as Pillow's own: ICC, pHYs, text, before IDAT."""
    art = read_artwork(png16_file(tmp_path / "deep.png", noise(channels=channels, bits=16)))
    profile = srgb_profile()
    art.icc_profile, art.dpi, art.png_text = profile, (300.0, 300.0), {"Title": "olive grove"}
    data = encode_artwork(art, art.rgb, metadata="keep")
    info = reread(data).info
    assert info["icc_profile"] == profile and info["Title"] == "olive grove"
    assert tuple(round(v) for v in info["dpi"]) == (300, 300)
    assert data.index(b"iCCP") < data.index(b"IDAT") and data.index(b"pHYs") < data.index(b"IDAT")
    (tmp_path / "out.png").write_bytes(data)
    again = read_artwork(tmp_path / "out.png")
    assert again.bit_depth == 16 and np.array_equal(again.rgb, art.rgb)


# --- colour profile and metadata ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.png", "a.jpg"])
def test_icc_profile_is_kept_under_both_policies(tmp_path: Path, name: str) -> None:
    profile = srgb_profile()
    art = read_artwork(save(tmp_path / name, smooth(), icc_profile=profile))
    assert art.icc_profile == profile
    for policy in ("keep", "strip"):
        assert reread(encode_artwork(art, art.rgb, metadata=policy)).info["icc_profile"] == profile


@pytest.mark.parametrize("name", ["a.png", "a.jpg"])
def test_gps_is_removed_by_strip_and_kept_by_keep(tmp_path: Path, name: str) -> None:
    path = save(tmp_path / name, smooth(), exif=exif_bytes(gps=True), dpi=(300, 300))
    assert has_gps(path)
    art = read_artwork(path)
    for policy, expect_gps in (("strip", False), ("keep", True)):
        out = tmp_path / f"{policy}{path.suffix}"
        write_artwork(art, art.rgb, out, metadata=policy)
        assert has_gps(out) == expect_gps
        img = reread(out.read_bytes())
        assert (img.getexif().get(ExifTags.Base.Make) == "TestCam") == expect_gps
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_png_text_is_kept_only_under_keep(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Ada")
    info.add_itxt("Description", "Ölbild, 2026")
    art = read_artwork(save(tmp_path / "a.png", noise(), pnginfo=info))
    assert art.png_text == {"Author": "Ada", "Description": "Ölbild, 2026"}
    kept = reread(encode_artwork(art, art.rgb, metadata="keep"))
    assert kept.text == {"Author": "Ada", "Description": "Ölbild, 2026"}
    assert reread(encode_artwork(art, art.rgb, metadata="strip")).text == {}


# --- safety of the original and of the output ---------------------------------------------------


@pytest.mark.parametrize("name", ["original.png", "original.jpg"])
def test_original_is_untouched_by_read_and_write(tmp_path: Path, name: str) -> None:
    path = save(tmp_path / name, smooth(), exif=exif_bytes(orientation=6, gps=True))
    before, stat = path.read_bytes(), path.stat()
    art = read_artwork(path)
    write_artwork(art, art.rgb, tmp_path / "ready" / name)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert os.listdir(tmp_path / "ready") == [name]  # no temp file left behind


def test_writer_refuses_wrong_size_and_unknown_policy(tmp_path: Path) -> None:
    art = read_artwork(save(tmp_path / "a.png", noise()))
    with pytest.raises(UsageError, match="expected"):
        encode_artwork(art, art.rgb[:10])
    with pytest.raises(UsageError, match="metadata"):
        encode_artwork(art, art.rgb, metadata="some")


def test_transient_read_error_is_worth_retrying(tmp_path: Path, monkeypatch) -> None:
    path = save(tmp_path / "a.png", noise())

    def out_of_memory(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(reading, "open", out_of_memory, raising=False)
    with pytest.raises(TransientError, match=r"^a\.png: "):
        read_artwork(path)


def test_multi_picture_jpeg_is_cloaked_as_its_first_picture(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    first, second = Image.fromarray(smooth()), Image.fromarray(noise())
    first.save(path, "MPO", save_all=True, append_images=[second])
    art = read_artwork(path)
    assert art.format == "JPEG"
    out = reread(encode_artwork(art, art.rgb))
    assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1
    assert np.abs(np.asarray(out, dtype=np.float32) / 255 - art.rgb).mean() < 1.5 / 255


XMP_WITH_LOCATION = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,31.2N" '
    'exif:GPSLongitude="13,24.6E"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize("name", ["a.png", "a.jpg"])
def test_xmp_location_is_removed_by_strip_and_kept_by_keep(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".png"):
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_WITH_LOCATION)
        save(path, smooth(), pnginfo=info)
    else:
        save(path, smooth(), xmp=XMP_WITH_LOCATION.encode())
    assert has_gps(path)
    art = read_artwork(path)
    for policy, expect_gps in (("strip", False), ("keep", True)):
        out = tmp_path / f"{policy}-{name}"
        write_artwork(art, art.rgb, out, metadata=policy)
        assert has_gps(out) == expect_gps


def test_16_bit_png_keeps_profile_and_metadata(tmp_path: Path) -> None:
    art = read_artwork(png16_file(tmp_path / "deep.png", noise(channels=3, bits=16)))
    art.icc_profile, art.dpi, art.png_text = srgb_profile(), (600.0, 600.0), {"Author": "Ada"}
    art.exif = exif_bytes(gps=True)
    kept = reread(encode_artwork(art, art.rgb, metadata="keep"))
    assert kept.info["icc_profile"] == art.icc_profile
    assert kept.info["dpi"] == pytest.approx((600, 600), abs=0.01)
    assert kept.text == {"Author": "Ada"}
    assert kept.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    stripped = reread(encode_artwork(art, art.rgb, metadata="strip"))
    assert stripped.info["icc_profile"] == art.icc_profile
    assert stripped.text == {} and not stripped.getexif()


def test_jpeg_comment_is_kept_only_under_keep(tmp_path: Path) -> None:
    art = read_artwork(save(tmp_path / "a.jpg", smooth(), comment=b"(c) Ada 2026"))
    assert reread(encode_artwork(art, art.rgb, metadata="keep")).info["comment"] == b"(c) Ada 2026"
    assert "comment" not in reread(encode_artwork(art, art.rgb, metadata="strip")).info
