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
GROUP BY archive, split
;
-- Quarantined inputs per reason.
CREATE OR REPLACE VIEW {db}.quarantine_counts AS
SELECT reason, kind, COUNT(*) AS items FROM {db}.quarantine GROUP BY reason, kind
;
