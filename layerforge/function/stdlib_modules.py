"""The standard library's top-level module names for each Python version Lambda runs, as data.

Why a table rather than asking an interpreter: the import scan must answer for the *target* runtime on
any machine. ``sys.stdlib_module_names`` of the host is right only when the host runs the target's
version, an interpreter of the target's version may not be installed at all, and python3.9 (still a
Lambda runtime) has no ``sys.stdlib_module_names``. The table is small, offline and deterministic, and
the modules that versions drop are exactly what it must get right: ``distutils`` and ``imp`` are gone
from python3.12, ``cgi`` and ``telnetlib`` from python3.13.

How it was made: ``_PY313`` is ``sys.stdlib_module_names`` of CPython 3.13.0; the changes from 3.10
to 3.13 are the differences between the interpreters' own lists; 3.9's are the modules its ``Lib/``
and ``lib-dynload/`` hold that 3.10's list lacks; 3.14's come from CPython's generated
``Python/stdlib_module_names.h``. ``tests/function/test_function_importscan.py`` compares every version with
the interpreters found on the machine that runs it.

Like ``sys.stdlib_module_names``, the names cover every platform (``winreg`` is in), so an import
behind ``if sys.platform == "win32":`` is not reported as missing.
"""

from __future__ import annotations

from functools import cache

_BASE_VERSION = (3, 13)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# sys.stdlib_module_names of CPython 3.13.0.
_PY313 = _names(
    "__future__ _abc _aix_support _android_support _ast _asyncio _bisect _blake2 _bz2 _codecs "
    "_codecs_cn _codecs_hk _codecs_iso2022 _codecs_jp _codecs_kr _codecs_tw _collections "
    "_collections_abc _colorize _compat_pickle _compression _contextvars _csv _ctypes _curses "
    "_curses_panel _datetime _dbm _decimal _elementtree _frozen_importlib _frozen_importlib_external "
    "_functools _gdbm _hashlib _heapq _imp _interpchannels _interpqueues _interpreters _io "
    "_ios_support _json _locale _lsprof _lzma _markupbase _md5 _multibytecodec _multiprocessing "
    "_opcode _opcode_metadata _operator _osx_support _overlapped _pickle _posixshmem _posixsubprocess "
    "_py_abc _pydatetime _pydecimal _pyio _pylong _pyrepl _queue _random _scproxy _sha1 _sha2 _sha3 "
    "_signal _sitebuiltins _socket _sqlite3 _sre _ssl _stat _statistics _string _strptime _struct "
    "_suggestions _symtable _sysconfig _thread _threading_local _tkinter _tokenize _tracemalloc "
    "_typing _uuid _warnings _weakref _weakrefset _winapi _wmi _zoneinfo abc antigravity argparse "
    "array ast asyncio atexit base64 bdb binascii bisect builtins bz2 cProfile calendar cmath cmd "
    "code codecs codeop collections colorsys compileall concurrent configparser contextlib "
    "contextvars copy copyreg csv ctypes curses dataclasses datetime dbm decimal difflib dis doctest "
    "email encodings ensurepip enum errno faulthandler fcntl filecmp fileinput fnmatch fractions "
    "ftplib functools gc genericpath getopt getpass gettext glob graphlib grp gzip hashlib heapq hmac "
    "html http idlelib imaplib importlib inspect io ipaddress itertools json keyword linecache locale "
    "logging lzma mailbox marshal math mimetypes mmap modulefinder msvcrt multiprocessing netrc nt "
    "ntpath nturl2path numbers opcode operator optparse os pathlib pdb pickle pickletools pkgutil "
    "platform plistlib poplib posix posixpath pprint profile pstats pty pwd py_compile pyclbr pydoc "
    "pydoc_data pyexpat queue quopri random re readline reprlib resource rlcompleter runpy sched "
    "secrets select selectors shelve shlex shutil signal site smtplib socket socketserver sqlite3 "
    "sre_compile sre_constants sre_parse ssl stat statistics string stringprep struct subprocess "
    "symtable sys sysconfig syslog tabnanny tarfile tempfile termios textwrap this threading time "
    "timeit tkinter token tokenize tomllib trace traceback tracemalloc tty turtle turtledemo types "
    "typing unicodedata unittest urllib uuid venv warnings wave weakref webbrowser winreg winsound "
    "wsgiref xml xmlrpc zipapp zipfile zipimport zlib zoneinfo"
)

# Per version: (names added in it, names removed in it), each against the version before.
_CHANGES: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = {
    (3, 10): (
        frozenset(),
        _names("_bootlocale _peg_parser formatter parser symbol"),
    ),
    (3, 11): (
        _names("_tokenize _typing tomllib"),
        _names("binhex"),
    ),
    (3, 12): (
        _names("_pydatetime _pylong _sha2"),
        _names("_bootsubprocess _sha256 _sha512 asynchat asyncore distutils imp smtpd"),
    ),
    (3, 13): (
        _names(
            "_android_support _colorize _interpchannels _interpqueues _interpreters _ios_support "
            "_opcode_metadata _pyrepl _suggestions _sysconfig _wmi"
        ),
        # PEP 594's dead batteries go.
        _names(
            "_crypt _msi aifc audioop cgi cgitb chunk crypt imghdr lib2to3 mailcap msilib nis nntplib "
            "ossaudiodev pipes sndhdr spwd sunau telnetlib uu xdrlib"
        ),
    ),
    (3, 14): (
        _names("_apple_support _hmac _py_warnings _remote_debugging _types _zstd annotationlib compression"),
        _names("_compression"),  # now compression._common
    ),
}

OLDEST = (3, 9)
NEWEST = max(_CHANGES)


@cache
def stdlib_modules(version: tuple[int, int]) -> frozenset[str]:
    """The top-level standard library names of CPython `version` (3.9 to 3.14)."""
    if not OLDEST <= version <= NEWEST:
        raise ValueError(f"no standard library table for Python {version[0]}.{version[1]}")
    names = set(_PY313)
    for step, (added, removed) in sorted(_CHANGES.items()):
        if _BASE_VERSION < step <= version:
            names = (names | added) - removed
    for step, (added, removed) in sorted(_CHANGES.items(), reverse=True):
        if version < step <= _BASE_VERSION:
            names = (names - added) | removed
    return frozenset(names)
