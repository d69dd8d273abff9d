"""The shared libraries each Lambda Python runtime has outside a layer, as data, and the words of a miss.

A manylinux wheel may link against libGL, libX11 or libglib (auditwheel's policy allows them), so a
wheel can be correct and still fail on Lambda with "libGL.so.1: cannot open shared object file". The
host that builds and verifies has far more libraries than Lambda, so every ELF object's DT_NEEDED is
checked against this table (`binaries/needed.py`, statically) and so is every object the verifying
process loads from the host (`verify/loaded.py`, dynamically). Both say a miss in the words below.

Sources (names are SONAMEs, what DT_NEEDED records and the loader matches):

- Amazon Linux 2 (python3.9 to python3.11): lambci/docker-lambda, `base/base-2/packages.txt` (the RPM
  database dumped from a real Lambda environment) and `base/base-2/fs.txt` (its file list). Every
  SONAME below is a file under /lib64 or /usr/lib64 in fs.txt. Not there, although amazonlinux:2 has
  them (`base/base-2/diff.txt`): libcrypt (a package of its own on AL2), expat, sqlite, xz, bzip2,
  glib2, libxml2, libcurl. The dump is of x86_64; arm64 is taken as the same package set with its own
  loader (ld-linux-aarch64.so.1) and without libmvec, which glibc 2.26 builds for x86_64 only.
- Amazon Linux 2023 (python3.12 and later): AWS publishes no file list of its Lambda images. The thin
  public sources are `rpm -qa` run in public.ecr.aws/lambda/python:3.12 (amazonlinux/amazon-linux-2023
  issue #585, which shows glib2, gobject-introspection, gmp, gpgme, krb5-libs, json-c, file-libs,
  curl-minimal, bzip2-libs, audit-libs beside glibc), the AL2023 minimal image's package list
  (issue #594: libffi, libgcc, libacl, libattr, libblkid, libcap, libcom_err, libcurl, libdb) and AWS's
  AL2023 container image notes (libstdc++, libgcc, libxcrypt, openssl-libs, sqlite-libs, libxml2,
  expat, libuuid, libmount, libblkid, zlib). Where the sources are thin, only libraries of a package
  some source names are listed: a library missing here refuses a layer (the user can declare it under
  `[audit] system_libraries`), one listed wrongly would let a broken layer through.
- glibc's own libraries are in every runtime; which ones exist is glibc's build (2.26 and 2.34 alike).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from packaging.utils import canonicalize_name

from .target import Target

AL2 = "Amazon Linux 2"
AL2023 = "Amazon Linux 2023"

# Where a layer is unpacked on Lambda, and the one folder of it on Lambda's LD_LIBRARY_PATH
# (/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib).
LAYER_MOUNT = "/opt"
LAYER_LIBRARY_FOLDER = "lib"

_LOADERS: Mapping[str, str] = MappingProxyType(
    {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}
)

_GLIBC = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libnsl.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
        "libnss_files.so.2",
        "libnss_dns.so.2",
        "libnss_compat.so.2",
        "libSegFault.so",
        "libmemusage.so",
        "libpcprofile.so",
    }
)

_AL2 = frozenset(
    {
        "libcidn.so.1",  # glibc 2.26 still builds it
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
        "libffi.so.6",
        "libcrypto.so.10",
        "libssl.so.10",
        "libacl.so.1",
        "libattr.so.1",
        "libcap.so.2",
        "libcom_err.so.2",
        "libgmp.so.10",
        "libgmpxx.so.4",
        "libgssapi_krb5.so.2",
        "libgssrpc.so.4",
        "libk5crypto.so.3",
        "libkdb5.so.8",
        "libkrad.so.0",
        "libkrb5.so.3",
        "libkrb5support.so.0",
        "libkeyutils.so.1",
        "libverto.so.1",
        "libncurses.so.6",
        "libncursesw.so.6",
        "libtinfo.so.6",
        "libtic.so.6",
        "libform.so.6",
        "libformw.so.6",
        "libmenu.so.6",
        "libmenuw.so.6",
        "libpanel.so.6",
        "libpanelw.so.6",
        "libpcre.so.1",
        "libpcre16.so.0",
        "libpcre32.so.0",
        "libpcrecpp.so.0",
        "libpcreposix.so.0",
        "libnspr4.so",
        "libplc4.so",
        "libplds4.so",
        "libnssutil3.so",
        "libnssckbi.so",
        "libfreebl3.so",
        "libfreeblpriv3.so",
        "libp11-kit.so.0",
        "libpopt.so.0",
        "libselinux.so.1",
        "libsepol.so.1",
        "libtasn1.so.6",
    }
)

_AL2023 = frozenset(
    {
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
        "libffi.so.8",
        "libcrypto.so.3",
        "libssl.so.3",
        "libcrypt.so.2",  # libxcrypt
        "libbz2.so.1",
        "libexpat.so.1",
        "libsqlite3.so.0",
        "libxml2.so.2",
        "libglib-2.0.so.0",
        "libgobject-2.0.so.0",
        "libgio-2.0.so.0",
        "libgmodule-2.0.so.0",
        "libgthread-2.0.so.0",
        "libgirepository-1.0.so.1",
        "libpcre2-8.so.0",  # glib2's dependency
        "libgmp.so.10",
        "libgpgme.so.11",
        "libassuan.so.0",
        "libgpg-error.so.0",
        "libjson-c.so.5",
        "libmagic.so.1",
        "libcurl.so.4",
        "libaudit.so.1",
        "libacl.so.1",
        "libattr.so.1",
        "libcap.so.2",
        "libcom_err.so.2",
        "libblkid.so.1",
        "libmount.so.1",
        "libuuid.so.1",
        "libselinux.so.1",
        "libdb-5.3.so",
        "libgssapi_krb5.so.2",
        "libk5crypto.so.3",
        "libkrb5.so.3",
        "libkrb5support.so.0",
        "libkeyutils.so.1",
        "libtinfo.so.6",  # bash's
    }
)

_FAMILIES: Mapping[str, frozenset[str]] = MappingProxyType({AL2: _AL2, AL2023: _AL2023})
# glibc 2.26 builds libmvec for x86_64 only; 2.34 too (aarch64's came in 2.35).
_X86_64_ONLY = frozenset({"libmvec.so.1"})

# A distribution whose wheel needs what Lambda lacks, and the one to use instead, which does not.
KNOWN_REPLACEMENTS: Mapping[str, str] = MappingProxyType(
    {
        "opencv-python": "opencv-python-headless",
        "opencv-contrib-python": "opencv-contrib-python-headless",
    }
)


def runtime_libraries(target: Target) -> frozenset[str]:
    """The SONAMEs that `target`'s runtime provides outside any layer."""
    libraries = _GLIBC | _FAMILIES[target.facts.os] | {_LOADERS[target.machine]}
    return libraries | _X86_64_ONLY if target.machine == "x86_64" else libraries


def is_glibc_own(name: str) -> bool:
    """A library of the C library itself: every runtime has its own, whatever the host loaded."""
    return name in _GLIBC or name in _LOADERS.values() or name in _X86_64_ONLY


def missing_library(
    libraries: Sequence[str], needed_by: str, distribution: str | None, target: Target
) -> tuple[str, str]:
    """(message, fix) for the libraries that `needed_by` needs and that Lambda will not find.

    One wording for the static audit, the dynamic check and `verify ZIP`, so a user who meets it in one
    place recognises it in another."""
    first, many = libraries[0], len(libraries) > 1
    names = ", ".join(libraries[:-1]) + f" and {libraries[-1]}" if many else first
    from_distribution = f" (from {distribution})" if distribution else ""
    them = "them" if many else "it"
    message = (
        f"{names} {'are' if many else 'is'} needed by {needed_by}{from_distribution}, but neither the layer "
        f"nor the {target.runtime} runtime ({target.facts.os}, {target.arch}) has {them}: "
        f'on Lambda the import fails with "{first}: cannot open shared object file"'
    )
    replacement = KNOWN_REPLACEMENTS.get(canonicalize_name(distribution)) if distribution else None
    ship = (
        f"ship {'them' if many else first} (and what {'they need' if many else 'it needs'}) in a layer's "
        f"lib/ folder ({LAYER_MOUNT}/{LAYER_LIBRARY_FOLDER} is on Lambda's LD_LIBRARY_PATH) and declare "
        f"{them} in the recipe under [audit] system_libraries, or pass that layer to "
        f"`layerforge verify ZIP --layer OTHER.zip`"
    )
    if replacement:
        does_not = "does not need them" if many else f"does not need {first}"
        return message, f"use {replacement} instead of {distribution}: it {does_not}; or {ship}"
    return message, ship
