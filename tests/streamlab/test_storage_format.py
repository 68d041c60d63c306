"""When a stack's storage counts as formatted (an interrupted format must be redone)."""

from __future__ import annotations

from streamlab.stack.namenode import formatted as namenode_formatted


def test_a_namenode_format_interrupted_after_its_version_file_is_redone(tmp_path):
    current = tmp_path / "name" / "current"
    current.mkdir(parents=True)
    (current / "VERSION").write_text("namespaceID=1\n")
    (current / "fsimage.ckpt_0000000000000000000").write_bytes(b"half")
    assert not namenode_formatted(tmp_path / "name")  # a CI run failed here: NameNode did not start


def test_a_complete_format_counts_and_survives(tmp_path):
    current = tmp_path / "name" / "current"
    current.mkdir(parents=True)
    (current / "VERSION").write_text("namespaceID=1\n")
    (current / "fsimage_0000000000000000000").write_bytes(b"image")
    (current / "fsimage_0000000000000000000.md5").write_text("x")
    assert namenode_formatted(tmp_path / "name")
    assert not namenode_formatted(tmp_path / "other")
