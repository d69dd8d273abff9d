"""Emulation as the kernel registers it: binfmt_misc entries written the way the kernel shows them.

The real /proc/sys/fs/binfmt_misc is read by the `docker`-marked tests, which run arm64 images here.
"""

from __future__ import annotations

from pathlib import Path

from layerforge.doctor.host import check_emulation
from layerforge.runners.emulation import Emulation, emulation_for
from layerforge.target import Target, host_machine

ENTRY = (
    "{state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n"
    "magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
)


def binfmt(tmp_path: Path, *, state: str = "enabled", flags: str = "PF", mounted: bool = True) -> Path:
    folder = tmp_path / "binfmt_misc"
    folder.mkdir(parents=True)
    if mounted:
        (folder / "status").write_text("enabled\n")
        if state:
            (folder / "qemu-aarch64").write_text(ENTRY.format(state=state, flags=flags))
    return folder


def probe(folder: Path) -> Emulation:
    return emulation_for("aarch64", binfmt_misc=folder, host="x86_64", local_engine=True)


def test_a_registered_emulator_with_the_fix_binary_flag_runs_containers(tmp_path: Path) -> None:
    found = probe(binfmt(tmp_path))
    assert found.available is True and "aarch64-binfmt-P" in found.detail


def test_without_the_f_flag_a_container_cannot_find_the_emulator(tmp_path: Path) -> None:
    found = probe(binfmt(tmp_path, flags="P"))
    assert found.available is False and "F flag" in found.detail and "qemu-user-static" in found.fix


def test_disabled_missing_and_unmounted_each_say_how_to_enable(tmp_path: Path) -> None:
    disabled = probe(binfmt(tmp_path / "a", state="disabled"))
    missing = probe(binfmt(tmp_path / "b", state=""))
    unmounted = probe(binfmt(tmp_path / "c", mounted=False))
    assert disabled.available is False and "disabled" in disabled.detail
    assert missing.available is False and "no emulator" in missing.detail
    assert unmounted.available is False and "mount -t binfmt_misc" in unmounted.fix
    for found in (disabled, missing, unmounted):
        assert "update-binfmts --enable qemu-aarch64" in found.fix and "tonistiigi/binfmt" in found.fix


def test_the_hosts_own_architecture_and_a_remote_engine(tmp_path: Path) -> None:
    assert emulation_for("x86_64", binfmt_misc=tmp_path, host="x86_64").available is True
    remote = emulation_for("aarch64", binfmt_misc=tmp_path, host="x86_64", local_engine=False)
    assert remote.available is None and "not on this machine" in remote.detail


def test_doctor_warns_only_when_the_target_needs_emulation(tmp_path: Path) -> None:
    absent = Emulation("aarch64", False, "no emulator for aarch64 is registered", "enable it")
    present = Emulation("aarch64", True, "aarch64 binaries run here")
    native = "arm64" if host_machine() == "aarch64" else "x86_64"
    foreign = "x86_64" if native == "arm64" else "arm64"

    def answer(found: Emulation):  # type: ignore[no-untyped-def]
        return lambda machine: Emulation(machine, found.available, found.detail, found.fix)

    assert check_emulation(Target("python3.11", foreign), probe=answer(absent)).severity == "warning"
    assert check_emulation(Target("python3.11", native), probe=answer(absent)).severity == "info"
    ok = check_emulation(Target("python3.11", foreign), probe=answer(present))
    assert ok.severity == "ok" and "can be verified in Docker" in ok.summary
