"""Names of the archive roots, list files and splits that the generator writes.

The v2 names come from :mod:`bigearth_spark.archive.layout` and :mod:`bigearth_spark.archive.lists`
(the reader's side); the v1 roots are only named here.
"""

from __future__ import annotations

from bigearth_spark.archive.lists import SPLITS

MANIFEST_NAME = "synth_manifest.json"
V1_S2_ROOT, V1_S1_ROOT, V1_S2_EXTRA_ROOT = (
    "BigEarthNet-v1.0",
    "BigEarthNet-S1-v1.0",
    "BigEarthNet-v1.0-extra",
)
V1_LISTS = "lists"
V1_SPLITS = ("train", "val", "test")


def split_names(flavor: str) -> tuple[str, ...]:
    """Split names of the flavour: v1 ``train|val|test``, v2 ``train|validation|test``."""
    return V1_SPLITS if flavor == "v1" else SPLITS
