"""Deterministic generator of synthetic BigEarthNet archives (v1.0 and v2.0) in the exact formats.

Used by tests, the demo and the benchmarks. :func:`write_archive` writes one archive flavour:

* ``"v1"``: ``BigEarthNet-v1.0/<s2>/<s2>_<BAND>.tif`` + ``<s2>_labels_metadata.json``,
  ``BigEarthNet-S1-v1.0/<s1>/<s1>_{VV,VH}.tif`` + JSON, and the official lists in ``lists/``
  (``train/val/test.csv.bz2``, cloud, snow and no-19-class lists);
* ``"v2"``: ``BigEarthNet-S2/<tile product>/<patch_id>/...``, ``BigEarthNet-S1/<scene>/<s1>/...``,
  ``Reference_Maps/<tile product>/<patch_id>/<patch_id>_reference_map.tif``, ``metadata.parquet``
  and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``;

plus ``synth_manifest.json`` (see :func:`write_archive`). The GeoTIFFs are written byte by byte
here (no GDAL): v1 files reproduce the layout of the real archive's files exactly (same header,
tags and strips as the real sample patch), v2 files the layout GDAL 3 writes for the same profile
(uncompressed strips with ``nodata 0``; DEFLATE for the reference maps). The same ``seed`` gives
the same bytes, whatever the output folder.

Pixels depend on the labels so that a small CNN can learn them: each of the 43 classes has a fixed
spectral signature (:data:`SIGNATURES_S2`, :data:`SIGNATURES_S1`, independent of the seed); a
patch is split into one region per label and each region is filled with its class's signature
plus smooth illumination and pixel noise, at each band's native resolution.

Modules: :mod:`.sampling` (labels), :mod:`.spectra` (class signatures), :mod:`.render` (pixels),
:mod:`.geotiff` (TIFF bytes), :mod:`.layout` (tile products, scenes, patches), :mod:`.writer`
(files of a patch), :mod:`.outputs` (lists, parquets, manifest), :mod:`.defects` (bad inputs),
:mod:`.roots` (folder and file names) and :mod:`.archive` (:func:`write_archive`).
"""

from .archive import write_archive
from .defects import DEFECTS_V1, DEFECTS_V2
from .geotiff import geotiff_bytes, projection_wkt
from .roots import MANIFEST_NAME
from .sampling import LABEL_FREQUENCIES, sample_labels43
from .spectra import SIGNATURES_S1, SIGNATURES_S2

__all__ = [
    "DEFECTS_V1",
    "DEFECTS_V2",
    "LABEL_FREQUENCIES",
    "MANIFEST_NAME",
    "SIGNATURES_S1",
    "SIGNATURES_S2",
    "geotiff_bytes",
    "projection_wkt",
    "sample_labels43",
    "write_archive",
]
