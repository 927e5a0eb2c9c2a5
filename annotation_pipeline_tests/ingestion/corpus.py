"""Odd landing entries, one builder each: what an unlucky upload or an attacker puts in a landing folder.

Each case writes one entry into a landing folder and says how it must end: ``accepted``,
``duplicate``, or the quarantine reason. Every image is a distinct PNG, so that only the
duplicate case deduplicates.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

_colors = iter(range(1, 10_000))


def png(size=(32, 24)) -> bytes:
    """A distinct small PNG on every call."""
    value = next(_colors)
    buf = io.BytesIO()
    Image.new("RGB", size, (value % 256, value // 256 % 256, 77)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    name: str                      # the original name the entry gets (relative to the landing folder)
    outcome: str                   # accepted, duplicate, or a quarantine reason
    build: Callable[[Path, Path], None]  # (landing folder, a folder outside the data root)


def _file(name: str, content: bytes | Callable[[], bytes], sidecar: bytes | None = None):
    def build(landing: Path, outside: Path) -> None:
        target = landing / os.fsdecode(name.encode("utf-8", "surrogateescape"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content() if callable(content) else content)
        if sidecar is not None:
            Path(str(target) + ".json").write_bytes(sidecar)
    return build


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def _symlink(name: str, target: Callable[[Path, Path], Path]):
    def build(landing: Path, outside: Path) -> None:
        os.symlink(target(landing, outside), landing / name)
    return build


def _outside_image(landing: Path, outside: Path) -> Path:
    path = outside / "secret_elsewhere.png"
    path.write_bytes(png())
    return path


def _inside_image(landing: Path, outside: Path) -> Path:
    path = landing / "link_target_inside.png"
    if not path.exists():
        path.write_bytes(png())
    return path


def _fifo(landing: Path, outside: Path) -> None:
    os.mkfifo(landing / "pipe.png")


def _device(landing: Path, outside: Path) -> None:
    os.mknod(landing / "null_device.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))


def _sidecar_is_a_folder(landing: Path, outside: Path) -> None:
    (landing / "folder_sidecar.png").write_bytes(png())
    (landing / "folder_sidecar.png.json").mkdir()


def _sidecar_is_a_link(landing: Path, outside: Path) -> None:
    (landing / "linked_sidecar.png").write_bytes(png())
    secret = outside / "secret.json"
    secret.write_text('{"notes": "outside the landing folder"}')
    os.symlink(secret, landing / "linked_sidecar.png.json")


def _too_deep(landing: Path, outside: Path) -> None:
    folder = landing.joinpath(*["deep"] * 9)
    folder.mkdir(parents=True)
    (folder / "bottom.png").write_bytes(png())


def _duplicate(landing: Path, outside: Path) -> None:
    content = png()
    (landing / "original_upload.png").write_bytes(content)
    (landing / "same_bytes_again.png").write_bytes(content)


LONG_NAME = "n" * 251 + ".png"   # 255 bytes: the longest name a file system allows
NOT_UTF8 = b"caf\xe9_upload.png".decode("utf-8", "surrogateescape")

CASES: list[Case] = [
    Case("plain.png", "accepted", _file("plain.png", png)),
    Case("with_sidecar.png", "accepted", _file("with_sidecar.png", png, b'{"notes": "fine", "n": 3}')),
    Case("sub/folder/nested.png", "accepted", _file("sub/folder/nested.png", png, b'{"notes": "nested"}')),
    Case(NOT_UTF8, "accepted", _file(NOT_UTF8, png)),
    Case(LONG_NAME, "accepted", _file(LONG_NAME, png)),
    Case("same_bytes_again.png", "duplicate", _duplicate),
    Case("empty.jpg", "empty_file", _file("empty.jpg", b"")),
    Case("truncated.png", "corrupt_image", _file("truncated.png", lambda: png((300, 200))[:200])),
    Case("notes.txt", "not_an_image", _file("notes.txt", b"hello")),
    Case("anim.gif", "unsupported_format", _file("anim.gif", _gif)),
    Case("link_out.png", "symlink", _symlink("link_out.png", _outside_image)),
    Case("link_in.png", "symlink", _symlink("link_in.png", _inside_image)),
    Case("dangling.png", "symlink", _symlink("dangling.png", lambda landing, outside: outside / "gone.png")),
    Case("link_to_etc", "symlink", _symlink("link_to_etc", lambda landing, outside: Path("/etc"))),
    Case("pipe.png", "not_a_regular_file", _fifo),
    Case("null_device.png", "not_a_regular_file", _device),
    Case("folder_sidecar.png", "invalid_metadata", _sidecar_is_a_folder),
    Case("linked_sidecar.png", "invalid_metadata", _sidecar_is_a_link),
    Case("/".join(["deep"] * 9), "folder_too_deep", _too_deep),
    Case("lonely.json", "orphan_sidecar", _file("lonely.json", b'{"notes": "no image"}')),
    Case("deep_json.png", "invalid_metadata", _file("deep_json.png", png, b"[" * 10_000 + b"]" * 10_000)),
    Case("deep_object.png", "invalid_metadata",
         _file("deep_object.png", png, b'{"a":' * 10_000 + b"1" + b"}" * 10_000)),
    Case("big_number.png", "invalid_metadata", _file("big_number.png", png, b'{"n": ' + b"7" * 5000 + b"}")),
    Case("big_float.png", "invalid_metadata", _file("big_float.png", png, b'{"n": 1.' + b"5" * 5000 + b"}")),
    Case("surrogate.png", "invalid_metadata", _file("surrogate.png", png, b'{"notes": "\\ud800"}')),
    Case("surrogate_key.png", "invalid_metadata", _file("surrogate_key.png", png, b'{"\\udfff": 1}')),
    Case("huge_string.png", "invalid_metadata",
         _file("huge_string.png", png, json.dumps({"notes": "x" * 300_000}).encode())),
    Case("huge_sidecar.png", "invalid_metadata",
         _file("huge_sidecar.png", png, json.dumps({"k": ["y" * 1000] * 2000}).encode())),
    Case("nan.png", "invalid_metadata", _file("nan.png", png, b'{"gps": NaN}')),
    Case("latin1_sidecar.png", "undecodable_metadata", _file("latin1_sidecar.png", png, b'{"notes": "caf\xe9"}')),
    Case("list_sidecar.png", "invalid_metadata", _file("list_sidecar.png", png, b"[1, 2]")),
    Case("broken_sidecar.png", "invalid_metadata", _file("broken_sidecar.png", png, b'{"notes": ')),
]
