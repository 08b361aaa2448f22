"""Which storage files make up a bag, from what the user passed: a rosbag2 folder with its
metadata.yaml, a folder without it (an unfinished recording), or a single storage file.

Why apart from reading: an unfinished recording has no metadata.yaml (rosbag2 writes it when
the recording ends), so the storage files are found by name and content instead; the errors
here name what is missing, so the user knows what to fix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ruamel.yaml import YAML  # rosbags' own YAML parser: no extra dependency

from vggt_ros.io.bag_messages import BagError

METADATA = "metadata.yaml"
SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
_MAGICS = {b"\x89MCAP0\r\n": "mcap", b"SQLite format 3\x00": "sqlite3"}


@dataclass(frozen=True)
class BagLayout:
    """The storage files of a bag, in recording order, and its metadata.yaml if there is one."""

    path: Path
    storage: str  # "mcap" or "sqlite3"
    files: tuple[Path, ...]
    metadata: Optional[dict[str, Any]] = None  # rosbag2_bagfile_information

    @property
    def compression_mode(self) -> str:
        return str((self.metadata or {}).get("compression_mode") or "")

    def topics(self) -> Optional[dict[str, str]]:
        """topic -> type from metadata.yaml; None without it (known only once read)."""
        if self.metadata is None:
            return None
        entries = self.metadata.get("topics_with_message_count") or []
        return {e["topic_metadata"]["name"]: e["topic_metadata"]["type"] for e in entries}


def _natural(path: Path) -> list:
    """bag_2.mcap before bag_10.mcap (rosbag2 numbers its split files)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _sniff(path: Path) -> Optional[str]:
    with path.open("rb") as handle:
        head = handle.read(16)
    return next((storage for magic, storage in _MAGICS.items() if head.startswith(magic)),
                None)


def resolve_bag(bag_path: str | Path) -> BagLayout:
    """The layout of ``bag_path``; BagError naming what is missing when it is no bag."""
    path = Path(bag_path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    if path.is_file():
        storage = SUFFIXES.get(path.suffix) or _sniff(path)
        if storage is None:
            raise BagError(f"{path} is neither an MCAP (.mcap) nor a SQLite3 (.db3) bag file")
        return BagLayout(path, storage, (path,))
    if (path / METADATA).is_file():
        return _from_metadata(path)
    for suffix, storage in SUFFIXES.items():
        files = sorted(path.glob(f"*{suffix}"), key=_natural)
        if files:
            return BagLayout(path, storage, tuple(files))
    raise BagError(f"{path} has no {METADATA} and no .mcap or .db3 file: pass a rosbag2 bag "
                   f"folder, or the storage file itself")


def _from_metadata(path: Path) -> BagLayout:
    try:
        info = YAML(typ="safe").load((path / METADATA).read_text())["rosbag2_bagfile_information"]
        storage = info["storage_identifier"]
        names = list(info["relative_file_paths"])
    except Exception as exc:  # YAML errors, missing keys, wrong types
        raise BagError(f"{path / METADATA} is not a readable rosbag2 metadata file ({exc}); "
                       f"fix it, or remove it to read the storage files directly") from exc
    if storage not in SUFFIXES.values():
        raise BagError(f"{path / METADATA} names storage {storage!r}; only mcap and sqlite3 "
                       f"bags can be read")
    files = tuple(path / name for name in names)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise BagError(f"{path / METADATA} lists {', '.join(missing)}, which "
                       f"{'is' if len(missing) == 1 else 'are'} missing: restore "
                       f"{'it' if len(missing) == 1 else 'them'}, or remove {METADATA} to read "
                       f"the storage files that are there")
    return BagLayout(path, storage, files, info)
