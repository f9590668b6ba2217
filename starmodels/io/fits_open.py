"""Opening FITS files safely: every reader checks a file is complete and really FITS before using it.

:func:`open_fits` opens a file (plain, gzip, bzip2 or tile-compressed), reads every header at once
and checks the file's size against what the headers announce; :func:`hdu_data` reads a data unit and
checks its shape. A file that is empty, not FITS (a text file, an HTML error page, random bytes),
truncated (in a header, in a data unit, or a gzip/bzip2 stream cut short) or corrupt raises
:class:`FileFormatError` naming the file and the problem before any long computation, instead of an
astropy traceback, a silently missing extension or zero-filled data.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import math
import os
import re
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

log = logging.getLogger(__name__)

BLOCK = 2880
"""FITS block size in bytes: every header and data unit is padded to a multiple of it."""

MAX_DECOMPRESS_IN_MEMORY = 256 * 2**20
"""gzip/bzip2 files up to this size (compressed, bytes) are decompressed into memory to be read."""

_REFETCH = "delete it and download or copy it again"
_COMPRESSION_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"PK\x03\x04", "zip"))


class ExtensionNotFoundError(LookupError):
    """A requested FITS extension does not exist; the message names the file and lists what is there."""


class FileFormatError(ValueError):
    """A file cannot be used: not FITS, empty, truncated, corrupt, or without the content expected.

    The message names the file, says what is wrong and, where useful, what to do.
    """


# -- opening files -----------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (wcslib and astropy write several)."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return lines[0] if lines else type(exc).__name__


def _wcslib_message(exc: BaseException) -> str:
    """The explanation in a wcslib error, without its ``ERROR n in f() at line ...`` locator lines."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    useful = [s for s in lines if not re.match(r"ERROR \d+ in ", s)]
    return f"{type(exc).__name__}: {(useful or lines or [''])[0]}"


def _compression(head: bytes) -> str | None:
    """``"gzip"``, ``"bzip2"`` or ``"zip"`` from a file's first bytes, or None (not compressed)."""
    for magic, kind in _COMPRESSION_MAGIC:
        if head.startswith(magic):
            return kind
    return None


def _looks_like(head: bytes) -> str:
    """What a file whose first bytes are ``head`` looks like, for messages."""
    low = head.lstrip()[:80].lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low:
        return "an HTML page (an error page saved by a failed download?)"
    if low.startswith(b"<?xml"):
        return "an XML document"
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file starting {text[:40]!r}"
    return f"binary data starting {head[:16]!r}"


def _stream_check(path: Path, kind: str, keep: bool = False) -> tuple[str | None, int, bytes | None]:
    """Decompress the whole gzip/bzip2 ``path``: (what is wrong or None, length in bytes, content).

    The decompressed content is returned only with ``keep`` (else None). Concatenated members or
    streams are followed, as the gzip and bzip2 tools do.
    """
    new = (lambda: zlib.decompressobj(wbits=31)) if kind == "gzip" else bz2.BZ2Decompressor
    dec, n, head, parts = new(), 0, b"", []
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                while chunk:
                    out = dec.decompress(chunk)
                    head, n = head or out[:80], n + len(out)
                    if keep:
                        parts.append(out)
                    chunk = dec.unused_data if dec.eof else b""
                    if chunk.strip(b"\0"):  # another member (trailing NUL padding is ignored, as by gzip)
                        dec = new()
                    else:
                        chunk = b""
    except (OSError, zlib.error) as e:
        return f"the {kind} data are corrupt ({_first_line(e)}) after {n} decompressed bytes", n, None
    if not dec.eof:
        return (f"the {kind} stream is truncated: it ends after {n} decompressed bytes, before its "
                "end-of-stream marker (an interrupted download or copy?)"), n, None
    if not head.startswith(b"SIMPLE"):
        return f"it decompresses to {_looks_like(head)}, not to a FITS file", n, None
    return None, n, b"".join(parts) if keep else None


def _readable(hdul: fits.HDUList) -> str:
    """``only HDU 0 (...)`` / ``only HDUs 0-2 (...)`` with :func:`describe_hdus`, for messages."""
    n = len(hdul)
    return f"only HDU{'s 0-' if n > 1 else ' '}{n - 1} can be read ({describe_hdus(hdul)})"


def _read_at(path: Path, kind: str | None, offset: int, n: int, content: bytes | None = None) -> bytes:
    """``n`` (decompressed) bytes of ``path`` (or of its decompressed ``content``) at ``offset``."""
    if content is not None:
        return content[offset:offset + n]
    opener = {None: open, "gzip": gzip.open, "bzip2": bz2.open}.get(kind)
    if opener is None:
        return b""
    try:
        with opener(path, "rb") as f:
            f.seek(offset)
            return f.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def _rewarn(caught) -> None:
    """Issue again warnings recorded with ``catch_warnings(record=True)`` (through the user's filters)."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _hdu_label(hdul: fits.HDUList, i: int) -> str:
    """``HDU 1 ('SCI')`` (0-based index and EXTNAME)."""
    return f"HDU {i} ({hdul[i].name!r})"


def _gzip_length(path: Path, hdul: fits.HDUList, what: str, ends: tuple[int, int]) -> int:
    """Decompressed length of a gzip FITS file, from its ISIZE trailer when that agrees with ``ends``.

    astropy stops silently at the first HDU a truncated gzip stream cuts (the HDUs after it just
    disappear), so when the trailer does not match the end of the last HDU read, the whole stream is
    decompressed to tell a truncated or corrupt file from one with extra members or trailing bytes.
    """
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")
    for end in ends:
        if isize == end % 2**32:
            return end
    problem, n, _ = _stream_check(path, "gzip")
    if problem:
        raise FileFormatError(f"{path}: unreadable {what}: {problem}; {_readable(hdul)}; {_REFETCH}")
    return n


def _stored_size(h) -> int:
    """Bytes of an HDU's data unit as stored in the file, padding excluded.

    A tile-compressed image (``CompImageHDU``) reports its uncompressed size; its stored size is that
    of the binary table holding the tiles.
    """
    table = getattr(h, "_bintable", None)
    return int(table.size if table is not None else h.size)


def _check_complete(hdul: fits.HDUList, path: Path, what: str, kind: str | None, size: int, caught,
                    content: bytes | None = None) -> None:
    """Raise :class:`FileFormatError` when an opened file is shorter than its headers say (see open_fits).

    ``size`` is the file size; ``content`` the decompressed content when it was read into memory.
    """
    for i, h in enumerate(hdul):
        if type(h).__name__ == "_CorruptedHDU":
            raise FileFormatError(f"{path}: {_hdu_label(hdul, i)} of the {what} is corrupt (astropy cannot "
                                  f"interpret its header); {_REFETCH}")
    last = len(hdul) - 1
    info = hdul.fileinfo(last)
    need, padded = info["datLoc"] + _stored_size(hdul[last]), info["datLoc"] + info["datSpan"]
    if kind is None or content is not None:
        actual = size if content is None else len(content)
    elif kind == "gzip":
        actual = _gzip_length(path, hdul, what, (padded, need))
    else:  # bzip2 / zip: astropy decompresses the whole stream when opening and fails on a truncated one
        actual = None
    if actual is not None and actual < need:
        i = max(j for j in range(len(hdul)) if hdul.fileinfo(j)["hdrLoc"] <= actual)
        start = hdul.fileinfo(i)["datLoc"]
        if actual >= start:
            where = (f"the data of {_hdu_label(hdul, i)} stop after {actual - start} of "
                     f"{_stored_size(hdul[i])} bytes")
        else:
            where = f"the header of {_hdu_label(hdul, i)} is cut"
        dec = " (decompressed)" if kind else ""
        raise FileFormatError(f"{path}: the {what} is truncated: it holds {actual} bytes{dec} but its "
                              f"headers announce {need}; {where}; {_REFETCH}")
    bad_header = [w for w in caught if str(w.message).startswith("Error validating header for HDU")]
    if bad_header:
        # astropy stopped at a header it could not parse: a cut or corrupt extension, or junk after the end
        if _read_at(path, kind, padded, 8, content) == b"XTENSION":
            detail = " ".join(str(bad_header[0].message).split("\n")[1:2]).strip()
            raise FileFormatError(f"{path}: the header of HDU {last + 1} of the {what} is truncated or "
                                  f"corrupt ({detail}); {_readable(hdul)}; {_REFETCH}")
    if actual is not None and actual < padded:
        warnings.warn(f"{path}: the last {BLOCK}-byte block of the {what} is short by {padded - actual} "
                      "bytes (padding only: the data are complete and are used)", UserWarning, stacklevel=6)


def _open_checked(path: str | Path, what: str) -> fits.HDUList:
    """``fits.open`` of ``path`` with every header read and the file checked complete (see open_fits)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    if not path.is_file():
        raise FileFormatError(f"{path}: not a regular file (a directory?), cannot be read as a {what}")
    size = path.stat().st_size
    if size == 0:
        raise FileFormatError(f"{path}: the {what} is empty (0 bytes); {_REFETCH}")
    with open(path, "rb") as f:
        head = f.read(80)
    kind = _compression(head)
    if kind is None and not head.startswith(b"SIMPLE"):
        raise FileFormatError(f"{path}: not a FITS file: it is {_looks_like(head)} (a FITS file starts with "
                              f"'SIMPLE  =')")
    content = None
    if kind in ("gzip", "bzip2") and size <= MAX_DECOMPRESS_IN_MEMORY:
        # decompressed once, checked complete, and parsed from memory: astropy would decompress a
        # bzip2 stream once to open it and again for every backward seek to a data unit
        problem, _, content = _stream_check(path, kind, keep=True)
        if problem:
            raise FileFormatError(f"{path}: unreadable {what}: {problem}; {_REFETCH}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(io.BytesIO(content) if content is not None else path, memmap=False,
                             lazy_load_hdus=False)
        except Exception as e:  # astropy raises OSError, ValueError, EOFError, VerifyError, ...
            problem = (_stream_check(path, kind)[0] if kind in ("gzip", "bzip2") and content is None
                       else None)
            if problem is None and content is not None and len(content) < BLOCK:
                problem = f"it decompresses to only {len(content)} bytes, less than one {BLOCK}-byte block"
            if problem is None and kind is None and size < BLOCK:
                problem = f"it holds only {size} bytes, less than one {BLOCK}-byte FITS header block"
            if problem is None:
                cut = (f" (its length, {size} bytes, is not a multiple of {BLOCK}: it was probably cut short)"
                       if kind is None and size % BLOCK else "")
                problem = f"astropy cannot read it{cut}: {type(e).__name__}: {_first_line(e)}"
            raise FileFormatError(f"{path}: unreadable {what}: {problem}; {_REFETCH}") from e
        try:
            _check_complete(hdul, path, what, kind, size, caught, content)
        except BaseException:
            hdul.close()
            raise
    _rewarn(w for w in caught if not str(w.message).startswith("File may have been truncated"))
    return hdul


@contextmanager
def open_fits(path: str | Path, *, what: str = "FITS file") -> Iterator[fits.HDUList]:
    """Open a FITS file for reading, checked complete: ``with open_fits(path) as hdul: ...``.

    Before anything is returned: the file exists and is not empty; it starts like FITS (``SIMPLE``)
    or is a gzip/bzip2 stream (recognised by content, whatever its suffix), which is decompressed
    into memory and must be complete (up to :data:`MAX_DECOMPRESS_IN_MEMORY` compressed bytes;
    larger ones are streamed by astropy and a gzip stream is checked by its length trailer); every
    header is read (not lazily); and the file is long enough for every data unit its headers
    announce. A file whose data are complete but whose final 2880-byte block is short is used with
    a warning.
    Read data units with :func:`hdu_data`, which checks their shapes against NAXISn.

    Args:
        path: the file.
        what: what the file should be, for messages (e.g. ``"SDSS psField file"``).

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not a FITS file, empty, truncated or corrupt; the message says which and where.
    """
    hdul = _open_checked(path, what)
    try:
        yield hdul
    finally:
        hdul.close()


def _expected_shape(h) -> tuple[int, ...] | None:
    """Shape of an HDU's data as its header announces it (numpy order), None when it has none."""
    hdr = h.header
    if getattr(h, "is_image", False):
        naxes = tuple(int(hdr.get(f"NAXIS{i}", 0)) for i in range(int(hdr.get("NAXIS", 0)), 0, -1))
        return naxes if naxes and math.prod(naxes) > 0 else None
    if isinstance(h, fits.BinTableHDU | fits.TableHDU):
        return (int(hdr.get("NAXIS2", 0)),)
    return None


def hdu_data(hdul: fits.HDUList, key: int | str | tuple[str, int], path: str | Path = "?", *,
             what: str = "FITS file"):
    """The data of HDU ``key`` of ``hdul`` (opened by :func:`open_fits`), checked against its header.

    Returns the image array (numpy ``[row, col]`` order), the table (``FITS_rec``) or None for an HDU
    without data. Read errors and data whose shape differs from what NAXISn announce (astropy may
    only warn "File may have been truncated" and return short data) raise :class:`FileFormatError`.

    Raises:
        ExtensionNotFoundError: no HDU ``key`` (the message lists those present).
        FileFormatError: the data unit cannot be read or is incomplete.
    """
    h = get_hdu(hdul, key, path)
    label = f"extension {key!r}" if not isinstance(key, int) else _hdu_label(hdul, key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = h.data
        except Exception as e:  # short reads surface as ValueError (reshape), TypeError, OSError, EOFError
            raise FileFormatError(f"{path}: cannot read the data of {label} of the {what} "
                                  f"({type(e).__name__}: {_first_line(e)}); the file is probably truncated "
                                  f"or corrupt; {_REFETCH}"
                                  ) from e
    truncated = [w for w in caught if str(w.message).startswith("File may have been truncated")]
    expected, got = _expected_shape(h), (None if data is None else tuple(np.shape(data)))
    if expected is not None and got != expected:
        state = "truncated" if truncated else "corrupt"
        raise FileFormatError(f"{path}: the data of {label} of the {what} have shape {got}, but its header "
                              f"announces {expected} (NAXISn): the file is {state}; {_REFETCH}")
    _rewarn(w for w in caught if w not in truncated)  # a short final padding block was reported at open
    return data


def describe_hdus(hdul: fits.HDUList) -> str:
    """One line per HDU: index, EXTNAME, type and shape, e.g. ``1 'SCI' ImageHDU (100, 100)``."""
    lines = []
    for i, h in enumerate(hdul):
        shape = h.shape if hasattr(h, "shape") else ()
        lines.append(f"{i} {h.name!r} {type(h).__name__} {tuple(shape) if shape else '(empty)'}")
    return "; ".join(lines)


def get_hdu(hdul: fits.HDUList, key: int | str | tuple[str, int], path: str | Path = "?"):
    """The HDU ``key`` (index, EXTNAME or (EXTNAME, EXTVER)) or :class:`ExtensionNotFoundError`."""
    try:
        return hdul[key]
    except (KeyError, IndexError):
        raise ExtensionNotFoundError(
            f"{path}: no extension {key!r}; extensions present: {describe_hdus(hdul)}") from None
