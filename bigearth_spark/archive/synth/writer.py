"""Writes the files of one patch (GeoTIFFs, v1 JSON files, v2 reference maps) where each flavour
keeps them."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np

from bigearth_spark.archive.bands import PATCH_SIZE_M, REFERENCE_MAP, S1_BANDS, S2_BANDS, Band
from bigearth_spark.archive.labels import NAMES_43
from bigearth_spark.archive.layout import V2_REF_DIR, V2_S1_DIR, V2_S2_DIR
from bigearth_spark.archive.names import v2_s1_scene_folder, v2_s2_tile_folder

from .geotiff import geotiff_bytes, projection_wkt
from .layout import Patch
from .roots import V1_S1_ROOT, V1_S2_ROOT


class Writer:
    """Writes patches; paths are plain strings (``os.path``) for speed."""

    def __init__(self, out: Path, flavor: str, seed: int) -> None:
        self.out = out
        self.root = str(out)
        self.flavor = flavor
        self.seed = seed
        self.gdal3 = flavor == "v2"  # v2 files: GDAL 3 layout, nodata 0
        self.made_dirs: set[str] = set()

    def rel(self, path: str | Path) -> str:
        """Path relative to the archive root, POSIX."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def path(self, *parts: str) -> str:
        """Path of ``parts`` under the archive root."""
        return os.path.join(self.root, *parts)

    def mkdir(self, d: str) -> None:
        """Create folder ``d`` (and its parents) once."""
        if d not in self.made_dirs:
            os.makedirs(d, exist_ok=True)
            self.made_dirs.add(d)

    def put(self, path: str | Path, data: bytes) -> None:
        """Write ``data`` to ``path``, creating its folder."""
        self.mkdir(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(data)

    # -- common -------------------------------------------------------------------------------
    def rng(self, patch: Patch, stream: int = 0) -> np.random.Generator:
        """The random stream of one patch (independent of the writing order)."""
        return np.random.default_rng([self.seed, patch.index, stream])

    def tif(
        self,
        p: Patch,
        arr: np.ndarray,
        b: Band,
        *,
        nodata: int | None = None,
        deflate: bool = False,
    ) -> bytes:
        """GeoTIFF bytes of one band of patch ``p``."""
        pixel = PATCH_SIZE_M / b.size
        return geotiff_bytes(
            arr, p.ulx, p.uly, pixel, p.epsg, nodata=nodata, deflate=deflate, gdal3=self.gdal3
        )

    def s2_id(self, p: Patch) -> str:
        """The S2 patch id of the flavour (v1 name or v2 id)."""
        return p.v1_name if self.flavor == "v1" else p.v2_id

    def s2_dir(self, p: Patch) -> str:
        """Folder of the S2 patch."""
        if self.flavor == "v1":
            return self.path(V1_S2_ROOT, p.v1_name)
        return self.path(V2_S2_DIR, v2_s2_tile_folder(p.v2_id), p.v2_id)

    def s1_dir(self, p: Patch) -> str:
        """Folder of the S1 patch."""
        if self.flavor == "v1":
            return self.path(V1_S1_ROOT, p.s1_name)
        return self.path(V2_S1_DIR, v2_s1_scene_folder(p.s1_name), p.s1_name)

    def band_path(self, p: Patch, band: str) -> str:
        """Path of one band's GeoTIFF (``VV``/``VH``: S1)."""
        if band in ("VV", "VH"):
            return os.path.join(self.s1_dir(p), f"{p.s1_name}_{band}.tif")
        return os.path.join(self.s2_dir(p), f"{self.s2_id(p)}_{band}.tif")

    def json_path(self, p: Patch, s1: bool = False) -> str:
        """Path of the v1 ``labels_metadata.json`` of the S2 (or S1) patch."""
        if s1:
            return os.path.join(self.s1_dir(p), f"{p.s1_name}_labels_metadata.json")
        return os.path.join(self.s2_dir(p), f"{p.v1_name}_labels_metadata.json")

    def refmap_path(self, p: Patch) -> str:
        """Path of the v2 reference map."""
        folder = self.path(V2_REF_DIR, v2_s2_tile_folder(p.v2_id), p.v2_id)
        return os.path.join(folder, f"{p.v2_id}_reference_map.tif")

    def write_s2(self, p: Patch, s2: dict[str, np.ndarray]) -> None:
        """Write the S2 bands (and, v1, the S2 JSON)."""
        self.mkdir(self.s2_dir(p))
        nodata = 0 if self.gdal3 else None
        for b in S2_BANDS:
            with open(self.band_path(p, b.name), "wb") as f:
                f.write(self.tif(p, s2[b.name], b, nodata=nodata))
        if self.flavor == "v1":
            with open(self.json_path(p), "wb") as f:
                f.write(self.s2_json(p).encode("ascii"))

    def write_s1(self, p: Patch, s1: dict[str, np.ndarray], s2_partner: str | None = None) -> None:
        """Write the S1 bands (and, v1, the S1 JSON naming ``s2_partner``)."""
        self.mkdir(self.s1_dir(p))
        for b in S1_BANDS:
            with open(self.band_path(p, b.name), "wb") as f:
                f.write(self.tif(p, s1[b.name], b))
        if self.flavor == "v1":
            with open(self.json_path(p, s1=True), "wb") as f:
                f.write(self.s1_json(p, s2_partner or p.v1_name).encode("ascii"))

    def write_refmap(self, p: Patch, codes: np.ndarray) -> None:
        """Write the v2 reference map of CLC ``codes`` (DEFLATE)."""
        data = self.tif(p, codes.astype(np.uint16), REFERENCE_MAP, nodata=0, deflate=True)
        self.put(self.refmap_path(p), data)

    # -- v1 JSON ------------------------------------------------------------------------------
    def s2_json(self, p: Patch, labels: list[str] | None = None) -> str:
        """Text of the v1 S2 JSON (``labels``: instead of the patch's own)."""
        prod = p.product
        when = prod.when
        discriminator = when - timedelta(seconds=2)
        tile_source = (
            f"{prod.sat}_MSIL1C_{prod.sensed}_N0205_R{prod.orbit:03d}_T{prod.tile}_"
            f"{discriminator:%Y%m%dT%H%M%S}.SAFE"
        )
        doc = {
            "labels": labels if labels is not None else [NAMES_43[i] for i in p.labels43],
            "coordinates": {
                "ulx": p.ulx,
                "uly": p.uly,
                "lrx": p.ulx + PATCH_SIZE_M,
                "lry": p.uly - PATCH_SIZE_M,
            },
            "projection": projection_wkt(prod.zone),
            "tile_source": tile_source,
            "acquisition_date": f"{when:%Y-%m-%d %H:%M:%S}",
        }
        return json.dumps(doc)

    def s1_json(self, p: Patch, s2_partner: str) -> str:
        """Text of the v1 S1 JSON."""
        doc = {
            "labels": [NAMES_43[i] for i in p.labels43],
            "coordinates": {
                "ulx": p.ulx,
                "uly": p.uly,
                "lrx": p.ulx + PATCH_SIZE_M,
                "lly": p.uly - PATCH_SIZE_M,
            },
            "projection": projection_wkt(p.product.zone),
            "corresponding_s2_patch": s2_partner,
            "scene_source": p.scene.source,
            "acquisition_time": f"{p.scene.start:%Y-%m-%dT%H:%M:%S}",
        }
        return json.dumps(doc)
