"""The order the executors list the input in: every task a share of each root, and of each root
a run of adjacent names (a tarball's member table is read a row group of adjacent names at a
time)."""

from __future__ import annotations

from bigearth_spark.archive import layout
from bigearth_spark.etl import discover


def _rows(root: str, count: int) -> list[tuple]:
    return [("v1_s2", f"{root}/p{i:04d}", False, None) for i in range(count)]


def test_any_slice_holds_the_same_share_of_each_root_in_name_order():
    s1, s2 = _rows("/a/s1", 300), _rows("/a/s2", 900)
    merged = discover.interleaved([list(reversed(s1)), s2[::2] + s2[1::2]])
    assert sorted(merged) == sorted(s1 + s2)
    for k in range(4):  # four tasks: a quarter of each root each, adjacent names
        part = merged[k * 300 : (k + 1) * 300]
        assert [r for r in part if r[1].startswith("/a/s1")] == s1[k * 75 : (k + 1) * 75]
        assert [r for r in part if r[1].startswith("/a/s2")] == s2[k * 225 : (k + 1) * 225]


def test_each_listing_task_gets_a_run_of_each_roots_folders(spark, v1_archive):
    root_dir, _ = v1_archive
    roots = layout.find_roots(str(root_dir))
    found = discover.folders(spark, roots)
    tasks = found.rdd.glom().map(lambda rows: [(r.folder_type, r.path) for r in rows]).collect()
    busy = [t for t in tasks if t]
    assert len(busy) >= 2
    for root in roots:  # (the fixture has several roots of one type)
        names = sorted(e.path for e in layout.top_entries(root))
        at = 0
        for task in busy:
            mine = sorted(p for _, p in task if p.rsplit("/", 1)[0] == root.path)
            assert mine == names[at : at + len(mine)]  # a run of adjacent names
            assert abs(len(mine) - len(names) / len(busy)) <= 1  # its share
            at += len(mine)
        assert at == len(names)
