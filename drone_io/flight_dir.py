"""Find what a flight folder holds: images (directly or in images/), logs/, gcp_list.txt, geo.txt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drone_io.images import IMAGE_SUFFIXES
from models.errors import InputError

LOG_SUFFIXES = {".ulg", ".bin", ".log", ".tlog", ".srt", ".csv", ".gpx", ".mrk", ".txt"}


@dataclass(frozen=True)
class FlightFiles:
    """The files of one flight folder, each image with its unique name."""

    root: Path
    image_dir: Path
    images: tuple[tuple[str, Path], ...]  # (name relative to image_dir, path), sorted
    logs: tuple[Path, ...]
    gcp_file: Path | None
    geo_txt: Path | None
    # Files in the image folder that are not images by suffix (listed, not read).
    ignored: tuple[Path, ...] = ()


def scan_flight(flight_dir: Path) -> FlightFiles:
    """List a flight folder's files. Raises InputError when there are no images."""
    root = Path(flight_dir)
    if not root.exists():
        raise InputError(f"flight folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass the folder that holds the images")
    image_dir = root / "images" if (root / "images").is_dir() else root
    images: list[tuple[str, Path]] = []
    ignored: list[Path] = []
    known = {"gcp_list.txt", "geo.txt"}
    for p in sorted(image_dir.rglob("*")):
        rel = p.relative_to(image_dir)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parts and rel.parts[0] in ("logs", "work"):
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            if not (image_dir == root and len(rel.parts) == 1 and p.name in known):
                ignored.append(p)
            continue
        images.append((rel.as_posix(), p))
    if not images:
        raise InputError(
            f"no images (.jpg, .jpeg, .tif, .tiff, .dng) found in {image_dir}; "
            "put the images in the flight folder or in its images/ subfolder"
        )
    logs_dir = root / "logs"
    logs = tuple(sorted(p for p in logs_dir.rglob("*") if p.is_file() and not p.name.startswith("."))) if logs_dir.is_dir() else ()
    gcp = root / "gcp_list.txt"
    geo = root / "geo.txt"
    return FlightFiles(
        root=root.resolve(),
        image_dir=image_dir.resolve(),
        images=tuple(images),
        logs=logs,
        gcp_file=gcp if gcp.is_file() else None,
        geo_txt=geo if geo.is_file() else None,
        ignored=tuple(ignored),
    )
