"""Label Studio's brush masks: the run-length code its frontend writes (``value.rle``).

A brush result holds one mask as the RGBA canvas of the whole image, flattened to
``H * W * 4`` bytes and packed with thi.ng's ``rle-pack`` (the format of
``label_studio_sdk.converter.brush.encode_rle`` / ``decode_rle``): a 32-bit value count, the
word size minus one (5 bits), four run-length field sizes minus one (4 bits each), then
chunks. A chunk is a repeat flag (1 bit), a field-size index (2 bits), the chunk length
minus one in that many bits, then one word (repeat) or that many words (literal). Bits are
most significant first; the stream is zero-padded to whole bytes, sent as a list of ints.
A pixel is painted when its alpha byte is at least 128.
"""

from __future__ import annotations

import numpy as np

from ripu.errors import RipuError

WORD_BITS = 8
RUN_BITS = (3, 4, 8, 16)  # the frontend's and the converter's field sizes


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def encode_values(values: np.ndarray) -> list[int]:
    """rle-pack code of a flat uint8 array, as repeat chunks of at most 2**16 words.

    Shape: ``values`` (N,) uint8 -> list of byte values.
    """
    values = np.asarray(values, dtype=np.uint8).ravel()
    parts = [_bits(values.size, 32), _bits(WORD_BITS - 1, 5),
             *(_bits(b - 1, 4) for b in RUN_BITS)]
    if values.size:
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        lengths = np.diff(np.r_[starts, values.size])
        longest = 1 << RUN_BITS[-1]
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            word = _bits(int(values[start]), WORD_BITS)
            while length:
                n = min(length, longest)
                size = next(k for k, b in enumerate(RUN_BITS) if n - 1 < 1 << b)
                parts.append("1" + _bits(size, 2) + _bits(n - 1, RUN_BITS[size]) + word)
                length -= n
    stream = "".join(parts)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big")) if stream else []


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(format(b, "08b") for b in data)
        self.pos = 0

    def read(self, width: int) -> int:
        end = self.pos + width
        if end > len(self.bits):
            raise RipuError("brush mask: the run-length code ends early")
        value = int(self.bits[self.pos:end], 2) if width else 0
        self.pos = end
        return value


def decode_values(rle: list[int]) -> np.ndarray:
    """The flat uint8 array of an rle-pack code. Shape: returns (N,) uint8."""
    try:
        reader = _Reader(bytes(rle))
    except (TypeError, ValueError) as err:
        raise RipuError(f"brush mask: expected a list of bytes, got {err}") from None
    num, word = reader.read(32), reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = reader.read(1)
        j = min(num, i + 1 + reader.read(sizes[reader.read(2)]))
        if repeat:
            out[i:j] = reader.read(word)
        else:
            for k in range(i, j):
                out[k] = reader.read(word)
        i = j
    return out


def encode_mask(mask: np.ndarray) -> list[int]:
    """A bool (H, W) mask as the frontend's brush code (every RGBA byte 255 where painted)."""
    mask = np.asarray(mask, dtype=bool)
    return encode_values(np.repeat(mask[..., None], 4, axis=2).astype(np.uint8) * 255)


def decode_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """The bool (H, W) mask of a brush code for an image of ``height`` x ``width``;
    RipuError when the code holds another number of pixels."""
    values = decode_values(rle)
    if values.size != height * width * 4:
        raise RipuError(f"brush mask: {values.size // 4} pixels, expected {height}x{width} "
                        f"= {height * width} (the image's size)")
    return values.reshape(height, width, 4)[..., 3] >= 128
