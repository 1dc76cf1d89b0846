-- Views over the BigEarthNet tables. `{db}` is replaced by the configured database name.
-- Statements are separated by lines holding only a semicolon.

-- Label counts per nomenclature, label and split (split NULL = not in an official split).
CREATE OR REPLACE VIEW {db}.label_counts_per_split AS
SELECT l.archive, l.nomenclature, l.label_index, l.label, l.split, COUNT(*) AS patches
FROM {db}.labels l
GROUP BY l.archive, l.nomenclature, l.label_index, l.label, l.split
;
-- Pairs of labels that occur on the same patch (each unordered pair once), per nomenclature.
CREATE OR REPLACE VIEW {db}.label_cooccurrence AS
SELECT a.archive, a.nomenclature, a.label AS label_a, b.label AS label_b, COUNT(*) AS patches
FROM {db}.labels a
JOIN {db}.labels b
  ON a.patch_id = b.patch_id AND a.nomenclature = b.nomenclature
 AND a.label_index < b.label_index
GROUP BY a.archive, a.nomenclature, a.label, b.label
;
-- The official recommended subset: patches of an official split (no snow, cloud, no-label).
CREATE OR REPLACE VIEW {db}.recommended_pairs AS
SELECT * FROM {db}.pairs WHERE split IS NOT NULL
;
-- Patches per archive, split and flags.
CREATE OR REPLACE VIEW {db}.split_counts AS
SELECT archive, split, COUNT(*) AS pairs, COUNT(s1_patch_id) AS with_s1,
       SUM(CAST(is_snow AS INT)) AS snow, SUM(CAST(is_cloud_or_shadow AS INT)) AS cloud_or_shadow,
       SUM(CAST(has_no_19_label AS INT)) AS no_19_label
FROM {db}.pairs
WHERE s2_path IS NOT NULL
GROUP BY archive, split
;
-- Quarantined inputs per reason.
CREATE OR REPLACE VIEW {db}.quarantine_counts AS
SELECT reason, kind, COUNT(*) AS items FROM {db}.quarantine GROUP BY reason, kind
;
-- The stored S2 patches (a column-pruned read of pairs: band bytes only when selected).
CREATE OR REPLACE VIEW {db}.s2_patches AS
SELECT patch_id, archive, tile, acquired, epsg, ulx, uly, lrx, lry, source_product, labels43,
       s2_path AS source_path, B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B11, B12
FROM {db}.pairs WHERE s2_path IS NOT NULL
;
-- The stored S1 patches, with the S2 patch they pair with.
CREATE OR REPLACE VIEW {db}.s1_patches AS
SELECT s1_patch_id AS patch_id, patch_id AS s2_patch_id, archive, s1_acquired AS acquired,
       s1_source_product AS source_product, s1_path AS source_path, VV, VH
FROM {db}.pairs WHERE s1_path IS NOT NULL
;
-- The stored v2 reference maps.
CREATE OR REPLACE VIEW {db}.reference_maps AS
SELECT patch_id, archive, reference_map_path AS source_path, reference_map
FROM {db}.pairs WHERE reference_map_path IS NOT NULL
;
