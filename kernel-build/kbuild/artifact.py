"""What building a flavor returns: the image and what is known about it.

A cached build is a directory builds/<key>/ holding bzImage, config, build.log and
meta.json; a build of the user's own tree (--tree) has an image and a config, no key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Build:
    image: Path
    key: str | None
    flavor: str | None
    mshare: bool | None  # CONFIG_MSHARE=y in this build (None: not known)
    config: Path | None
    meta: dict[str, Any]

    @classmethod
    def from_dir(cls, out: Path) -> Build:
        """The cached build in ``out`` (builds/<key>/)."""
        meta: dict[str, Any] = json.loads((out / "meta.json").read_text())
        config = out / "config"
        return cls(out / "bzImage", meta.get("key"), meta.get("flavor"),
                   meta.get("mshare_applied"), config if config.is_file() else None, meta)

    @classmethod
    def from_image(cls, image: Path) -> Build | None:
        """The build whose image this is, when kernel-build/build made it (meta.json
        beside it); None for any other image."""
        try:
            build = cls.from_dir(image.parent)
        except (OSError, ValueError):
            return None
        return build if build.image.resolve() == image.resolve() else None

    def record(self) -> dict[str, Any]:
        """The JSON form `kernel-build/build --json` prints."""
        return {"image": str(self.image), "key": self.key, "flavor": self.flavor,
                "mshare": self.mshare, "config": str(self.config) if self.config else None,
                "meta": self.meta}
