"""Input formats -> a stream of ``(text, label or None)`` documents, read without loading all.

Formats (``format=None`` infers it from the name):

- ``txt``: plain text, one document per line (``doc_per="line"``, blank lines skipped) or the
  whole file as one document (``doc_per="file"``). Names ``*.txt``, ``*.text``, ``*.tokens``.
- ``csv`` / ``tsv``: a header row naming the columns; ``text_field`` (default ``text``) holds the
  document and ``label_field`` the class (default: the ``label`` column if there is one). TSV
  has no quoting: a tab separates fields and a newline ends the record.
- ``jsonl``: one JSON object per line, keys ``text_field`` / ``label_field`` as for CSV.
- ``trec``: TREC question classification lines ``COARSE:fine question words ?``; the label is
  the coarse class, or ``COARSE:fine`` with ``fine_labels=True``. Names ``*.label``.
- ``folder``: a folder-per-class tree, ``FOLDER/<class>/<file>`` (aclImdb ``train/pos/1_9.txt``);
  each file is a document labelled by its folder. Files directly in FOLDER are ignored
  (aclImdb keeps its ``urls_*.txt`` there). The ``unsup`` folder is left out unless
  ``unsup=True``, which adds its files as unlabelled documents; ``classes`` selects folders.
- ``tar``: the same tree inside a ``.tar``/``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``
  archive (ustar, pax or GNU), streamed member by member without unpacking. Name the tree's folder inside the
  archive after a colon: ``aclImdb_v1.tar.xz:aclImdb/train``. Documents come in archive order.

Any single-file format may be compressed: ``.gz``, ``.bz2``, ``.xz`` (e.g. ``wiki.jsonl.xz``).
Documents that are empty or white space only are skipped and counted (``DocumentSource.empty``);
an input with no document at all is an error. Text that does not decode with ``encoding``
raises :class:`UlmfitError` naming the file and line.

One module of ~420 lines on purpose: every format is a method of one :class:`DocumentSource`
sharing its options, counters and error messages; the tar archive format itself is
:mod:`ulmfit.text.tar`.
"""
from __future__ import annotations

import bz2
import csv
import dataclasses
import gzip
import io
import json
import lzma
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from ..errors import UlmfitError
from .tar import tar_files

FORMATS = ("txt", "csv", "tsv", "jsonl", "trec", "folder", "tar")
UNSUP_FOLDER = "unsup"
COMPRESSORS = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
    ".lzma": lzma.LZMAFile,
}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_TAR_COMPRESSION = {".tgz": ".gz", ".tbz2": ".bz2", ".txz": ".xz"}
_FORMAT_OF_SUFFIX = {
    ".txt": "txt", ".text": "txt", ".tokens": "txt",
    ".csv": "csv", ".tsv": "tsv",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".label": "trec",
}
_DOC_PER = ("line", "file")
_MAX_EMPTY_REPORTED = 3

Document = tuple[str, "str | None"]


@dataclass
class ReadOptions:
    """How to read an input; shared by every split of a run (and by predict-time input)."""

    format: str | None = None
    encoding: str = "utf-8"
    text_field: str = "text"
    label_field: str | None = None
    doc_per: str = "line"
    classes: Sequence[str] | str | None = None
    unsup: bool = False
    fine_labels: bool = False

    def class_list(self) -> list[str] | None:
        """``classes`` as a list; the CLI may pass ``"pos,neg"`` or a tuple."""
        if self.classes is None:
            return None
        if isinstance(self.classes, str):
            return [c.strip() for c in self.classes.split(",") if c.strip()]
        return [str(c) for c in self.classes]


class DocumentSource:
    """Iterate ``(text, label)`` documents of one input; knows how far through the input it is.

    ``bytes_total`` / ``bytes_read()`` are on-disk (compressed) bytes, for a progress bar's ETA.
    """

    def __init__(self, spec: str | os.PathLike, options: ReadOptions | None = None):
        self.spec = str(spec)
        self.options = options = options or ReadOptions()
        self.path, self.member_dir = split_archive_spec(self.spec)
        if not self.path.exists():
            raise UlmfitError(f"{self.path}: file not found")
        self.format = options.format or infer_format(self.spec)
        if self.format not in FORMATS:
            raise UlmfitError(f"{self.spec}: unknown format '{self.format}' (choose from {', '.join(FORMATS)})")
        if options.doc_per not in _DOC_PER:
            raise UlmfitError(f"doc_per must be one of {_DOC_PER}, not '{options.doc_per}'")
        self._check_kind()
        self.bytes_total = self._size()
        self._raw: BinaryIO | None = None
        self._bytes_done = 0
        self.empty = 0
        self.empty_where: list[str] = []

    # -- checks ------------------------------------------------------------------------------
    def _check_kind(self) -> None:
        if self.format == "folder":
            if not self.path.is_dir():
                raise UlmfitError(f"{self.path}: format 'folder' needs a folder of class folders")
            return
        if self.path.is_dir():
            raise UlmfitError(f"{self.path}: is a folder; use format 'folder' for a folder-per-class tree")
        if self.path.stat().st_size == 0:
            raise UlmfitError(f"{self.path}: file is empty")

    def _size(self) -> int:
        if self.path.is_dir():
            return sum(f.stat().st_size for f in self._class_files_on_disk())
        return self.path.stat().st_size

    def bytes_read(self) -> int:
        """On-disk bytes consumed so far (approximate: decompressors read ahead)."""
        if self._raw is not None and not self._raw.closed:
            try:
                return self._raw.tell()
            except (OSError, ValueError):
                return self._bytes_done
        return self._bytes_done

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Document]:
        n = self.empty = 0
        self.empty_where = []
        reader = getattr(self, f"_read_{self.format}")
        for text, label in reader():
            if not text or text.isspace():
                self.empty += 1
                continue
            n += 1
            yield text, label
        self._bytes_done = self.bytes_total
        if n == 0:
            empty = f" ({self.empty} empty documents)" if self.empty else ""
            raise UlmfitError(f"{self.spec}: no documents found{empty}")

    def _note_empty(self, where: str) -> None:
        if len(self.empty_where) < _MAX_EMPTY_REPORTED:
            self.empty_where.append(where)

    def _lines(self, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
        """Decoded lines with their 1-based numbers, line ends stripped unless ``keep_ends``."""
        encoding = self.options.encoding
        with self._open_binary() as stream:
            for number, raw in enumerate(stream, 1):
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise _decode_error(self.path, number, encoding, e) from None
                except LookupError:
                    raise UlmfitError(f"unknown encoding '{encoding}'") from None
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield number, line if keep_ends else line.rstrip("\r\n")

    def _read_txt(self) -> Iterator[Document]:
        if self.options.doc_per == "file":
            with self._open_binary() as stream:
                yield _decode(stream.read(), self.path, self.options.encoding), None
            return
        for number, line in self._lines():
            if not line.strip():
                continue  # blank lines separate documents, they are not empty documents
            yield line, None

    def _read_trec(self) -> Iterator[Document]:
        for number, line in self._lines():
            if not line.strip():
                continue
            head, _, text = line.partition(" ")
            coarse, colon, fine = head.partition(":")
            if not colon or not coarse or not fine:
                raise UlmfitError(f"{self.path}, line {number}: expected 'LABEL:fine question', got {line[:60]!r}")
            if not text.strip():
                self._note_empty(f"line {number}")
            yield text, head if self.options.fine_labels else coarse

    def _read_jsonl(self) -> Iterator[Document]:
        text_key, label_key = self.options.text_field, self.options.label_field
        for number, line in self._lines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UlmfitError(f"{self.path}, line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise UlmfitError(f"{self.path}, line {number}: expected a JSON object per line")
            if text_key not in record:
                raise UlmfitError(
                    f"{self.path}, line {number}: no '{text_key}' key (keys: {', '.join(record)}); "
                    "choose one with --text_field")
            label = _record_label(record, label_key, self.path, number)
            text = record[text_key]
            if not isinstance(text, str):
                raise UlmfitError(f"{self.path}, line {number}: '{text_key}' is not a string")
            if not text.strip():
                self._note_empty(f"line {number}")
            yield text, label

    def _read_csv(self) -> Iterator[Document]:
        yield from self._read_delimited(",", csv.QUOTE_MINIMAL)

    def _read_tsv(self) -> Iterator[Document]:
        yield from self._read_delimited("\t", csv.QUOTE_NONE)

    def _read_delimited(self, delimiter: str, quoting: int) -> Iterator[Document]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        numbered = self._lines(keep_ends=True)
        position = {"line": 0}

        def lines() -> Iterator[str]:
            for number, line in numbered:
                position["line"] = number
                yield line

        rows = csv.reader(lines(), delimiter=delimiter, quoting=quoting)
        try:
            header = next(rows)
        except StopIteration:
            raise UlmfitError(f"{self.path}: no header row") from None
        text_col = _column(header, self.options.text_field, self.path, "--text_field")
        label_key = self.options.label_field
        if label_key is None:
            label_col = header.index("label") if "label" in header else None
        else:
            label_col = _column(header, label_key, self.path, "--label_field")
        try:
            for row in rows:
                if not row:
                    continue
                if len(row) != len(header):
                    raise UlmfitError(
                        f"{self.path}, line {position['line']}: {len(row)} fields, the header has {len(header)}")
                text = row[text_col]
                if not text.strip():
                    self._note_empty(f"line {position['line']}")
                yield text, (row[label_col] or None) if label_col is not None else None
        except csv.Error as e:
            raise UlmfitError(f"{self.path}, line {position['line']}: {e}") from None

    def _class_files_on_disk(self) -> list[Path]:
        return [f for _, files in self._class_folders() for f in files]

    def _class_folders(self) -> list[tuple[str | None, list[Path]]]:
        """``(label, files)`` per selected class folder: selected classes in order, then unsup."""
        found = sorted(p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))
        self._check_classes_found(found)
        order = self.options.class_list() or found
        folders = [name for name in order if self._folder_label(name)[0]]
        if UNSUP_FOLDER in found and self._folder_label(UNSUP_FOLDER)[0] and UNSUP_FOLDER not in folders:
            folders.append(UNSUP_FOLDER)
        return [(self._folder_label(name)[1],
                 sorted(f for f in (self.path / name).iterdir() if f.is_file() and not f.name.startswith(".")))
                for name in folders]

    def _folder_label(self, folder: str) -> tuple[bool, str | None]:
        """Whether a class folder is read, and the label its documents get."""
        if folder == UNSUP_FOLDER and self.options.unsup:
            return True, None
        selected = self.options.class_list()
        if selected is None:
            return folder != UNSUP_FOLDER, folder
        return folder in selected, folder

    def _check_classes_found(self, found) -> None:
        missing = [c for c in self.options.class_list() or [] if c not in found]
        if missing:
            raise UlmfitError(f"{self.spec}: no class folder {', '.join(missing)} "
                              f"(found: {', '.join(sorted(found)) or 'none'})")

    def _read_folder(self) -> Iterator[Document]:
        folders = self._class_folders()
        if not any(files for _, files in folders):
            raise UlmfitError(f"{self.path}: no documents; expected {self.path}/<class>/<file>")
        for label, files in folders:
            for f in files:
                self._bytes_done += f.stat().st_size
                text = _decode(f.read_bytes(), f, self.options.encoding)
                if not text.strip():
                    self._note_empty(str(f))
                yield text, label

    def _read_tar(self) -> Iterator[Document]:
        prefix = self.member_dir.strip("/")
        prefix_parts = prefix.split("/") if prefix else []
        seen: set[str] = set()

        def wanted(name: str) -> bool:  # FOLDER/<class>/<file> under the prefix, class selected
            parts = name.strip("/").split("/")
            rest = parts[len(prefix_parts):]
            if parts[: len(prefix_parts)] != prefix_parts or len(rest) != 2 or rest[1].startswith("."):
                return False
            seen.add(rest[0])
            return self._folder_label(rest[0])[0]

        with self._open_binary(tar_suffix=True) as stream:
            for name, data in tar_files(stream, wanted, self.path):
                label = self._folder_label(name.strip("/").split("/")[-2])[1]
                where = f"{self.path}:{name}"
                text = _decode(data, where, self.options.encoding)
                if not text.strip():
                    self._note_empty(where)
                yield text, label
        if not seen:
            raise UlmfitError(f"{self.spec}: no documents; expected ARCHIVE:FOLDER/<class>/<file>, "
                              f"e.g. aclImdb_v1.tar.xz:aclImdb/train")
        self._check_classes_found(seen)

    def _open_binary(self, tar_suffix: bool = False) -> BinaryIO:
        raw = open(self.path, "rb")
        self._raw = raw
        suffix = self.path.suffix.lower()
        opener = COMPRESSORS.get(_TAR_COMPRESSION.get(suffix, suffix) if tar_suffix else suffix)
        stream = raw if opener is None else opener(raw)
        return _Guarded(stream, raw, self.path)


class _Guarded(io.BufferedIOBase):
    """A compressed or plain binary stream whose corruption errors name the file."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO, path: Path):
        self._stream, self._raw, self._path = stream, raw, path

    def _guard(self, call, *args):
        try:
            return call(*args)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as e:
            raise UlmfitError(f"{self._path}: cannot read the file ({e})") from None

    def read(self, size: int = -1) -> bytes:
        return self._guard(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._guard(self._stream.readline, size)

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self) -> None:
        self._stream.close()
        self._raw.close()
        super().close()


def split_archive_spec(spec: str) -> tuple[Path, str]:
    """``"a.tar.xz:aclImdb/train"`` -> ``(Path("a.tar.xz"), "aclImdb/train")``; other names pass."""
    head, colon, inner = spec.partition(":")
    if colon and head.lower().endswith(_TAR_SUFFIXES):
        return Path(head), inner
    return Path(spec), ""


def infer_format(spec: str) -> str:
    """The format a file name implies (``train.jsonl.xz`` -> ``jsonl``)."""
    path, _ = split_archive_spec(spec)
    name = path.name.lower()
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if path.is_dir():
        return "folder"
    stem = Path(name[: -len(path.suffix)]) if path.suffix.lower() in COMPRESSORS else Path(name)
    fmt = _FORMAT_OF_SUFFIX.get(stem.suffix)
    if fmt is None:
        raise UlmfitError(f"{spec}: cannot tell the format from the name; pass --format ({', '.join(FORMATS)})")
    return fmt


def read_documents(spec: str | os.PathLike, **options) -> Iterator[Document]:
    """Convenience: iterate the documents of one input with :class:`ReadOptions` fields as kwargs."""
    return iter(DocumentSource(spec, ReadOptions(**options)))


def read_options_from(config) -> ReadOptions:
    """The :class:`ReadOptions` part of any config dataclass with the same field names."""
    return ReadOptions(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ReadOptions)})


def _decode(data: bytes, where, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(where, data.count(b"\n", 0, e.start) + 1, encoding, e) from None
    except LookupError:
        raise UlmfitError(f"unknown encoding '{encoding}'") from None
    return text[1:] if text.startswith("\ufeff") else text


def _decode_error(where, line: int, encoding: str, e: UnicodeDecodeError) -> UlmfitError:
    bad = e.object[e.start : e.start + 4]
    return UlmfitError(
        f"{where}, line {line}: bytes {bad!r} are not valid {encoding} ({e.reason}); "
        "pass the file's encoding with --encoding (e.g. --encoding latin-1)")


def _column(header: list[str], name: str, path: Path, option: str) -> int:
    if name not in header:
        raise UlmfitError(f"{path}: no '{name}' column (columns: {', '.join(header)}); choose one with {option}")
    return header.index(name)


def _record_label(record: dict, key: str | None, path: Path, number: int) -> str | None:
    if key is None:
        value = record.get("label")
    elif key not in record:
        raise UlmfitError(f"{path}, line {number}: no '{key}' key (keys: {', '.join(record)}); choose one with --label_field")
    else:
        value = record[key]
    return None if value is None else str(value)
