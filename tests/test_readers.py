"""Input formats -> (text, label) documents, on small real excerpts and synthetic files."""
import bz2
import gzip
import itertools
import json
import lzma
import tarfile

import pytest

from ulmfit.errors import UlmfitError
from locations import data_root
from ulmfit.text.readers import DocumentSource, ReadOptions, infer_format, read_documents

DATA = data_root()
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data root not available")


def first(spec, n=3, **options):
    return list(itertools.islice(read_documents(str(spec), **options), n))


@pytest.mark.parametrize("name, fmt", [
    ("a.txt", "txt"), ("ptb.train.txt", "txt"), ("wiki.jsonl.xz", "jsonl"), ("d.CSV", "csv"),
    ("d.tsv.gz", "tsv"), ("train_5500.label", "trec"), ("x.json.bz2", "jsonl"),
    ("aclImdb_v1.tar.xz:aclImdb/train", "tar"), ("a.tgz", "tar"),
])
def test_infer_format_from_name(name, fmt):
    assert infer_format(name) == fmt


def test_unknown_extension_asks_for_format():
    with pytest.raises(UlmfitError, match="--format"):
        infer_format("corpus.dat")


# --- real excerpts ---------------------------------------------------------------------------
@needs_data
def test_trec_coarse_and_fine_labels():
    path = DATA / "trec" / "train_5500.label"
    assert first(path, 1, encoding="latin-1") == [("How did serfdom develop in and then leave Russia ?", "DESC")]
    assert first(path, 1, encoding="latin-1", fine_labels=True)[0][1] == "DESC:manner"


@needs_data
def test_trec_as_utf8_names_file_line_and_encoding_option():
    with pytest.raises(UlmfitError) as err:
        list(read_documents(str(DATA / "trec" / "train_5500.label")))
    message = str(err.value)
    assert "train_5500.label" in message and "line 66" in message and "--encoding" in message


@needs_data
def test_wikipedia_jsonl_xz():
    docs = first(DATA / "wikipedia" / "valid.jsonl.xz", 2)
    assert len(docs) == 2 and docs[0][1] is None
    assert docs[0][0].startswith("Autism") and "\n" in docs[0][0]


@needs_data
def test_ptb_one_document_per_line():
    docs = first(DATA / "ptb" / "ptb.valid.txt", 2)
    assert docs[0][0].strip().startswith("consumers may want") and docs[0][1] is None


@needs_data
def test_imdb_tar_streams_a_tree_inside_the_archive():
    source = DocumentSource(f"{DATA / 'imdb' / 'aclImdb_v1.tar.xz'}:aclImdb/test")
    documents = iter(source)
    docs = [next(documents) for _ in range(3)]  # aclImdb/test/neg comes first in the archive
    assert [label for _, label in docs] == ["neg"] * 3
    assert docs[0][0].startswith("Once again Mr. Costner")
    assert 0 < source.bytes_read() < source.bytes_total  # progress while streaming
    documents.close()


# --- synthetic files -------------------------------------------------------------------------
def test_txt_lines_skip_blank_lines_and_whole_file_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first doc\n\nsecond doc\r\n")
    assert [t for t, _ in read_documents(path)] == ["first doc", "second doc"]
    assert [t for t, _ in read_documents(path, doc_per="file")] == ["first doc\n\nsecond doc\r\n"]


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compressed_files(tmp_path, suffix, opener):
    path = tmp_path / f"d.jsonl{suffix}"
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "héllo", "label": 1}) + "\n")
    assert list(read_documents(path)) == [("héllo", "1")]


def test_corrupt_compressed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "d.txt.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(UlmfitError, match="d.txt.xz: cannot read"):
        list(read_documents(path))


def test_csv_with_quoted_newlines_and_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('label,text\npos,"a good, long\nreview"\nneg,bad\n')
    assert list(read_documents(path)) == [("a good, long\nreview", "pos"), ("bad", "neg")]


def test_csv_named_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,review,stars\n1,fine,5\n")
    assert list(read_documents(path, text_field="review", label_field="stars")) == [("fine", "5")]
    assert list(read_documents(path, text_field="review")) == [("fine", None)]  # no "label" column


def test_csv_missing_text_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,label\nfine,pos\n")
    with pytest.raises(UlmfitError, match=r"d.csv: no 'text' column \(columns: review, label\).*--text_field"):
        list(read_documents(path))


def test_csv_missing_label_column_when_asked_for(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text\nfine\n")
    with pytest.raises(UlmfitError, match="no 'sentiment' column"):
        list(read_documents(path, label_field="sentiment"))


def test_csv_row_with_wrong_field_count_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,pos\noops\n")
    with pytest.raises(UlmfitError, match="line 3: 1 fields"):
        list(read_documents(path))


def test_tsv_has_no_quoting(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('text\tlabel\nsaid "hi\tpos\n')
    assert list(read_documents(path)) == [('said "hi', "pos")]


def test_jsonl_custom_keys_and_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"body": "x", "y": "a"}\n\n{"body": "z"}\n')
    assert list(read_documents(path, text_field="body")) == [("x", None), ("z", None)]
    with pytest.raises(UlmfitError, match="line 1: no 'text' key"):
        list(read_documents(path))
    with pytest.raises(UlmfitError, match="line 3: no 'y' key"):
        list(read_documents(path, text_field="body", label_field="y"))
    path.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(UlmfitError, match="line 2: not valid JSON"):
        list(read_documents(path))


def test_trec_malformed_line(tmp_path):
    path = tmp_path / "q.label"
    path.write_text("DESC:manner How ?\nno label here\n")
    with pytest.raises(UlmfitError, match="line 2: expected 'LABEL:fine question'"):
        list(read_documents(path))


def make_tree(root):
    for folder, names in {"pos": ["1_9.txt", "2_8.txt"], "neg": ["3_1.txt"], "unsup": ["4_0.txt"]}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_text(f"{folder} review {name}")
    (root / "urls_pos.txt").write_text("http://ignored")


def test_folder_tree_labels_from_folders_and_unsup(tmp_path):
    make_tree(tmp_path / "train")
    docs = list(read_documents(tmp_path / "train"))
    assert docs == [("neg review 3_1.txt", "neg"), ("pos review 1_9.txt", "pos"), ("pos review 2_8.txt", "pos")]
    docs = list(read_documents(tmp_path / "train", classes="pos", unsup=True))
    assert [label for _, label in docs] == ["pos", "pos", None]


def test_folder_tree_unknown_class(tmp_path):
    make_tree(tmp_path / "train")
    with pytest.raises(UlmfitError, match="no class folder neutral"):
        DocumentSource(tmp_path / "train", ReadOptions(classes=["neutral"]))


def test_folder_file_that_does_not_decode_names_the_file(tmp_path):
    make_tree(tmp_path / "train")
    (tmp_path / "train" / "neg" / "bad.txt").write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(UlmfitError, match=r"bad.txt, line 2: .*--encoding"):
        list(read_documents(tmp_path / "train"))


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_formats_and_long_names(tmp_path, tar_format):
    deep = "d" * 60 + "/" + "e" * 60  # longer than the 100 bytes of a plain tar name field
    make_tree(tmp_path / deep / "train")
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w", format=tar_format) as tar:
        tar.add(tmp_path / deep.split("/")[0], arcname=deep.split("/")[0])
    docs = list(read_documents(f"{archive}:{deep}/train"))
    assert sorted(label for _, label in docs) == ["neg", "pos", "pos"]


def test_damaged_tar_is_a_clear_error(tmp_path):
    archive = tmp_path / "d.tar"
    archive.write_bytes(b"x" * 2048)
    with pytest.raises(UlmfitError, match="d.tar: not a tar archive"):
        list(read_documents(f"{archive}:data"))


def test_tar_gz_tree(tmp_path):
    make_tree(tmp_path / "data" / "train")
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data", arcname="data")
    docs = list(read_documents(f"{archive}:data/train", unsup=True))
    assert sorted((t, label) for t, label in docs) == sorted(
        [("neg review 3_1.txt", "neg"), ("pos review 1_9.txt", "pos"), ("pos review 2_8.txt", "pos"),
         ("unsup review 4_0.txt", None)])
    with pytest.raises(UlmfitError, match="no documents; expected ARCHIVE:FOLDER"):
        list(read_documents(f"{archive}:data/nope"))
    with pytest.raises(UlmfitError, match="no class folder neutral in|no class folder neutral"):
        list(read_documents(f"{archive}:data/train", classes="neutral,pos"))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UlmfitError, match="nope.txt: file not found"):
        DocumentSource(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UlmfitError, match="empty.txt: file is empty"):
        DocumentSource(tmp_path / "empty.txt")


def test_empty_documents_are_skipped_and_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{"text": "  "}\n{"text": ""}\n{"text": "b"}\n')
    source = DocumentSource(path)
    assert [t for t, _ in source] == ["a", "b"]
    assert source.empty == 2 and source.empty_where == ["line 2", "line 3"]


def test_input_with_only_empty_documents_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text\n""\n" "\n')
    with pytest.raises(UlmfitError, match=r"d.csv: no documents found \(2 empty documents\)"):
        list(read_documents(path))
