"""Our PSD files read by a from-the-spec reader (Adobe Photoshop File Formats Specification), not by psd-tools.

Photoshop, Krita, GIMP and Photopea each parse PSD by the specification; a reader written from it, with its own
PackBits decoder, checks the bytes psd-tools writes for us: section lengths, layer records, flags, names, channel
data and the merged image.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from fixtures.rgba_images import rgba_picture
from layerstack.layer_stack import compositing, psd_png
from layerstack.layer_stack.stack import LayerStack, make_layer
from layerstack.layer_stack.text2layer import text2layer_stack


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        assert len(chunk) == n, "file ends early"
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        values = struct.unpack(">" + fmt, self.take(struct.calcsize(">" + fmt)))
        return values if len(values) > 1 else values[0]


def unpack_bits(data: bytes, width: int) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        n = data[i]
        i += 1
        if n < 128:
            out += data[i : i + n + 1]
            i += n + 1
        elif n > 128:
            out += bytes([data[i]]) * (257 - n)
            i += 1
    assert len(out) == width, f"row decodes to {len(out)} bytes, not {width}"
    return bytes(out)


def read_plane(r: Reader, compression: int, height: int, width: int, counts=None) -> np.ndarray:
    if compression == 0:
        return np.frombuffer(r.take(height * width), np.uint8).reshape(height, width)
    assert compression == 1, f"compression {compression}"
    if counts is None:
        counts = r.unpack(f"{height}H") if height > 1 else (r.unpack("H"),)
    return np.stack([np.frombuffer(unpack_bits(r.take(c), width), np.uint8) for c in counts])


def read_psd(data: bytes) -> dict:
    r = Reader(data)
    assert r.take(4) == b"8BPS" and r.unpack("H") == 1
    r.take(6)
    channels, height, width, depth, mode = r.unpack("HIIHH")
    assert (depth, mode) == (8, 3), "8-bit RGB"
    r.take(r.unpack("I"))  # colour mode data
    r.take(r.unpack("I"))  # image resources
    section_end = r.unpack("I") + r.pos
    info_end = r.unpack("I") + r.pos
    count = abs(r.unpack("h"))
    records = []
    for _ in range(count):
        top, left, bottom, right, n = r.unpack("iiiiH")
        channel_info = [r.unpack("hI") for _ in range(n)]
        assert r.take(4) == b"8BIM"
        blend = r.take(4)
        opacity, _clipping, flags, _filler = r.unpack("BBBB")
        extra_end = r.unpack("I") + r.pos
        r.take(r.unpack("I"))  # layer mask data
        r.take(r.unpack("I"))  # blending ranges
        name_length = r.unpack("B")
        name = r.take(name_length).decode("mac_roman")
        r.take((4 - (1 + name_length) % 4) % 4)
        while r.pos < extra_end:
            assert r.take(4) in (b"8BIM", b"8B64")
            key, length = r.take(4), r.unpack("I")
            block = r.take(length)
            if key == b"luni":
                chars = struct.unpack(">I", block[:4])[0]
                name = block[4 : 4 + 2 * chars].decode("utf-16-be")
        assert r.pos == extra_end, "additional layer info overruns its length"
        records.append({"bbox": (top, left, bottom, right), "channels": channel_info, "blend": blend,
                        "opacity": opacity, "hidden": bool(flags & 2), "name": name})
    for record in records:
        top, left, bottom, right = record["bbox"]
        planes = {}
        for channel_id, length in record["channels"]:
            start = r.pos
            planes[channel_id] = read_plane(r, r.unpack("H"), bottom - top, right - left)
            assert r.pos - start == length, "channel length differs from its record"
        record["planes"] = planes
    assert r.pos <= info_end and info_end <= section_end
    r.pos = section_end
    compression = r.unpack("H")
    counts = r.unpack(f"{channels * height}H") if compression == 1 else None
    merged = [read_plane(r, compression, height, width, counts[c * height : (c + 1) * height] if counts else None)
              for c in range(channels)]
    assert r.pos == len(data), "bytes after the merged image"
    return {"size": (height, width), "layers": records, "merged": np.stack(merged, axis=-1)}


def test_spec_reader_sees_our_layers_pixels_and_merged_image():
    fg, alpha, _ = rgba_picture(40, 56, soft=True, junk="noise")
    stack = text2layer_stack(fg, alpha, background=torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(3)),
                             blended=torch.rand(1, 40, 56, 3), include_mask_layer=True)
    stack = stack.with_layer_on_top(make_layer("Schatten – ü 影", torch.zeros(1, 40, 56, 3), alpha * 0.4,
                                               opacity=0.7))
    assert psd_png.content_box(alpha[0]) != (0, 0, 40, 56)  # the foreground and its shadow are stored cropped
    psd = read_psd(psd_png.psd_bytes(stack, 0))
    assert psd["size"] == (40, 56)
    assert [layer["name"] for layer in psd["layers"]] == stack.names
    assert [not layer["hidden"] for layer in psd["layers"]] == [layer.visible for layer in stack.layers]
    for record, layer in zip(psd["layers"], stack.layers):
        top, left, bottom, right = record["bbox"]
        assert record["bbox"] == psd_png.content_box(layer.alpha[0])
        assert record["blend"] == b"norm" and record["opacity"] == round(255 * layer.opacity)
        assert sorted(record["planes"]) == [-1, 0, 1, 2]  # transparency + R, G, B
        expected = psd_png.to_uint8(layer.rgba()[0, top:bottom, left:right])
        assert not psd_png.to_uint8(layer.alpha[0]).sum() - expected[..., 3].astype(int).sum()  # nothing visible cut
        got = np.stack([record["planes"][c] for c in (0, 1, 2, -1)], axis=-1)
        assert np.array_equal(got, expected), layer.name
    rgb, a = compositing.composite(stack)
    merged = psd["merged"].astype(np.float64) / 255
    assert np.abs(merged[..., 3] - a[0].numpy()).max() <= 1 / 255
    on_white = compositing.flatten(rgb, a, "white")[0].numpy()  # the merged colour is stored matted on white
    assert np.abs(merged[..., :3] - on_white).max() <= 1.5 / 255


def test_spec_reader_on_a_single_transparent_layer():
    fg, alpha, _ = rgba_picture(17, 23, soft=False)  # odd sizes: odd row lengths and channel lengths
    psd = read_psd(psd_png.psd_bytes(LayerStack((make_layer("fg", fg, alpha),)), 0))
    top, left, bottom, right = psd["layers"][0]["bbox"]
    plane = psd["layers"][0]["planes"][-1]
    assert np.array_equal(plane, psd_png.to_uint8(alpha[0, top:bottom, left:right]))
