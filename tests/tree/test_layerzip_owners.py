"""Which distribution ships each file of a layer zip from elsewhere, from the dist-info it carries."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from layerforge.errors import InputError
from layerforge.tree.layerzip import extract_layer, owners

METADATA = "Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"


def test_record_top_level_and_the_libs_folder_name_the_distribution(tmp_path: Path) -> None:
    layer = tmp_path / "layer.zip"
    site = "python/lib/python3.12/site-packages"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr(
            "python/opencv_python-4.10.0.dist-info/METADATA", METADATA.format(name="opencv-python")
        )
        archive.writestr("python/opencv_python-4.10.0.dist-info/top_level.txt", "cv2\n")
        archive.writestr("python/cv2/cv2.abi3.so", b"\x7fELF")
        archive.writestr("python/opencv_python.libs/libQt5Gui-1a.so.5", b"\x7fELF")
        archive.writestr(f"{site}/six-1.0.dist-info/METADATA", METADATA.format(name="six"))
        archive.writestr(f"{site}/six-1.0.dist-info/RECORD", "six.py,sha256=x,1\n")
        archive.writestr(f"{site}/six.py", "")
        archive.writestr("python/stray/__init__.py", "")
    found = owners(extract_layer(layer, tmp_path / "out"))
    assert found["python/cv2/cv2.abi3.so"] == "opencv-python"
    assert found["python/opencv_python.libs/libQt5Gui-1a.so.5"] == "opencv-python"
    assert found[f"{site}/six.py"] == "six"
    assert "python/stray/__init__.py" not in found


def test_a_layer_of_native_libraries_alone_is_read_only_when_asked(tmp_path: Path) -> None:
    layer = tmp_path / "natives.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("lib/libGL.so.1", b"\x7fELF")
    with pytest.raises(InputError, match="no entry under python/"):
        extract_layer(layer, tmp_path / "a")
    assert set(extract_layer(layer, tmp_path / "b", python=False).files) == {"lib/libGL.so.1"}
