"""A blob's manifest: where its bytes are and how they are cut, so a Range read touches only the frames it needs.

At rest a blob is one or more segments (one for a single PUT, one per part for a multipart upload), each a
backend object made of independent zstd frames laid end to end. The manifest lists, per segment, each frame's
(uncompressed, compressed) length; offsets are sums of those, so nothing else needs storing. Concatenated zstd
frames are themselves a valid zstd stream: `zstd -d` on a segment file gives its plain bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import orjson

FORMAT_VERSION = 1


class SegmentDocument(TypedDict):
    backend: str
    object: str
    frames: list[list[int]]  # [uncompressed length, compressed length] per frame


class ManifestDocument(TypedDict):
    v: int
    digest: str
    size: int
    segments: list[SegmentDocument]


@dataclass(frozen=True)
class Segment:
    backend: str
    object: str
    frames: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return sum(u for u, _ in self.frames)

    @property
    def stored(self) -> int:
        return sum(c for _, c in self.frames)


@dataclass(frozen=True)
class FrameSpan:
    """One frame a read needs: where it sits in its object and which of its plain bytes to send."""

    segment: Segment
    stored_start: int  # offset of the frame in the segment's object
    stored_length: int
    skip: int  # plain bytes to drop from the frame's start
    take: int  # plain bytes to send after that


@dataclass(frozen=True)
class Manifest:
    digest: str
    size: int
    segments: tuple[Segment, ...]

    @property
    def stored(self) -> int:
        return sum(s.stored for s in self.segments)

    def spans(self, start: int, end: int) -> list[FrameSpan]:
        """The frames covering plain bytes [start, end), in order."""
        spans: list[FrameSpan] = []
        offset = 0
        for segment in self.segments:
            stored_offset = 0
            for plain, packed in segment.frames:
                frame_end = offset + plain
                if frame_end > start and offset < end:
                    skip = max(start - offset, 0)
                    take = min(end, frame_end) - offset - skip
                    spans.append(FrameSpan(segment, stored_offset, packed, skip, take))
                offset, stored_offset = frame_end, stored_offset + packed
                if offset >= end:
                    return spans
        return spans

    def to_json(self) -> bytes:
        doc: ManifestDocument = {
            "v": FORMAT_VERSION,
            "digest": self.digest,
            "size": self.size,
            "segments": [
                {"backend": s.backend, "object": s.object, "frames": [[u, c] for u, c in s.frames]}
                for s in self.segments
            ],
        }
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        doc: ManifestDocument = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"manifest format {doc.get('v')!r} is not {FORMAT_VERSION}")
        segments = tuple(
            Segment(s["backend"], s["object"], tuple((int(u), int(c)) for u, c in s["frames"])) for s in doc["segments"]
        )
        return cls(doc["digest"], int(doc["size"]), segments)
