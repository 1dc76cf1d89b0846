"""The Kubernetes manifests: YAML that parses, custom resources valid against the JSON schemas of
deploy/kubernetes/schemas/, and arguments, images, paths and sizes consistent with the repository
(the images of deploy/docker/, the CLI parsers, horovodrun's parser)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import jsonschema
import pyspark
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
DOCKER = ROOT / "deploy" / "docker"
APP_DIR = "/opt/bigearth"  # WORKDIR of the images: the repository's root inside them
SCHEMAS = {
    "SparkApplication": "sparkapplication-v1beta2.schema.json",
    "MPIJob": "mpijob-v2beta1.schema.json",
}


def load_schema(name: str) -> dict:
    return json.loads((K8S / "schemas" / name).read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    resources = [
        (s["$id"].rsplit("/", 1)[1], Resource.from_contents(s))
        for s in map(
            load_schema, ["k8s-defs.schema.json", "k8s-object.schema.json", *SCHEMAS.values()]
        )
    ]
    registry = Registry().with_resources(resources)
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def documents() -> list[tuple[str, dict]]:
    """(file name, document) of every manifest listed by the kustomization."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [(name, d) for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    return docs


def one(kind: str) -> dict:
    (doc,) = [d for _, d in documents() if d["kind"] == kind]
    return doc


def mounts(volume_mounts: list[dict]) -> list[str]:
    return [m["mountPath"] for m in volume_mounts]


def under(path: str, mount_paths: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mount_paths)


def local_file(uri_or_path: str) -> Path:
    """The repository file behind an image path (local:///opt/bigearth/x or a relative x)."""
    path = uri_or_path.removeprefix("local://")
    return ROOT / (path.removeprefix(APP_DIR + "/") if path.startswith("/") else path)


def test_kustomization_lists_every_manifest_and_each_parses():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    docs = documents()
    assert [(name, d["kind"], d["metadata"]["name"]) for name, d in docs] == [
        ("spark-rbac.yaml", "ServiceAccount", "bigearth-spark"),
        ("spark-rbac.yaml", "Role", "bigearth-spark-driver"),
        ("spark-rbac.yaml", "RoleBinding", "bigearth-spark-driver"),
        ("ingest-sparkapplication.yaml", "SparkApplication", "bigearth-ingest"),
        ("train-horovod-job.yaml", "MPIJob", "bigearth-train"),
    ]
    generic = validator("k8s-object.schema.json")
    for name, doc in docs:
        generic.validate(doc)
        assert doc["metadata"]["namespace"] == "bigearth", name


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_custom_resources_are_valid(kind):
    validator(SCHEMAS[kind]).validate(one(kind))


BROKEN = {
    "SparkApplication": [
        lambda d: d["spec"]["executor"].pop("instances"),
        lambda d: d["spec"]["driver"].update(cores="4"),  # int32 in the CRD
        lambda d: d["spec"]["executor"].update(memroy="8g"),  # a typo the API server would prune
        lambda d: d["spec"].update(mode="local"),
        lambda d: d["spec"].pop("mainApplicationFile"),
        lambda d: d["spec"].update(image="bigearth-spark:latest"),
    ],
    "MPIJob": [
        lambda d: d["spec"]["mpiReplicaSpecs"]["Launcher"].update(replicas=2),
        lambda d: d["spec"]["mpiReplicaSpecs"].pop("Worker"),
        lambda d: d["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].pop(
            "image"
        ),
        lambda d: d["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"].update({"nvidia.com/gpu": "one"}),
        lambda d: d["spec"]["runPolicy"].update(cleanPodPolicy="Sometimes"),
        lambda d: d.pop("metadata"),
    ],
}


@pytest.mark.parametrize(
    ("kind", "case"), [(k, i) for k, v in BROKEN.items() for i in range(len(v))]
)
def test_schemas_reject_broken_resources(kind, case):
    doc = copy.deepcopy(one(kind))
    BROKEN[kind][case](doc)
    assert not validator(SCHEMAS[kind]).is_valid(doc)


def images() -> list[str]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == "image" and isinstance(v, str))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for _, doc in documents():
        walk(doc)
    return found


def test_images_are_one_release_built_by_the_dockerfiles():
    version = importlib.metadata.version("bigearth-spark")
    refs = images()
    # the SparkApplication, the launcher, the workers
    assert [r.rsplit("-", 1)[1] for r in refs] == ["cpu", "cuda", "cuda"]
    repos, tags = zip(*(r.rsplit(":", 1) for r in refs), strict=True)
    assert len(set(repos)) == 1, refs
    for ref, tag in zip(refs, tags, strict=True):
        release, flavor = tag.rsplit("-", 1)
        assert release == version, ref
        dockerfile = DOCKER / f"Dockerfile.{flavor}"
        assert dockerfile.is_file(), ref
        assert f"-t {ref} " in dockerfile.read_text(), f"{dockerfile.name} does not build {ref}"
    assert one("SparkApplication")["spec"]["image"].endswith("-cpu")
    workers = one("MPIJob")["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert all(c["image"].endswith("-cuda") for c in workers["containers"])


def test_spark_application_matches_the_repository():
    spec = one("SparkApplication")["spec"]
    assert spec["type"] == "Python" and spec["sparkVersion"] == pyspark.__version__
    assert local_file(spec["mainApplicationFile"]) == ROOT / "jobs" / "ingest.py"
    assert (ROOT / "jobs" / "ingest.py").is_file()

    from bigearth_spark.cli import build_parser
    from bigearth_spark.config import load_config
    from bigearth_spark.spark import DEFAULT_CONF
    from bigearth_spark.tables.log_store import check_concurrent_writes

    args = build_parser().parse_args(["ingest", *spec["arguments"]])
    assert args.lake.startswith("s3a://")
    # The profile's spark_conf is applied by the session builder, over the operator's settings:
    # it must not touch what the SparkApplication sets (resources, sparkConf).
    profile = load_config(str(local_file(args.profile)))
    assert profile.spark_conf and not set(profile.spark_conf) & set(spec["sparkConf"])
    assert not [k for k in profile.spark_conf if k.startswith(("spark.driver.", "spark.executor."))]
    # This archive is read with POSIX calls: every input is mounted in driver and executors.
    for role in ("driver", "executor"):
        paths = mounts(spec[role]["volumeMounts"])
        assert all(under(p, paths) for p in [*args.input, *args.lists]), role
    conf = spec["sparkConf"]
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog"):
        assert conf[key] == DEFAULT_CONF[key]
    assert conf["spark.hadoop.fs.s3a.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    # the ingest accepts this lake with this LogStore (it refuses S3 without a promise or DynamoDB)
    check_concurrent_writes(args.lake, conf.get, args.single_writer)


def dockerfile_args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def test_s3a_jars_match_pyspark_hadoop_and_the_images():
    jars = one("SparkApplication")["spec"]["deps"]["jars"]
    names = {Path(j.removeprefix("local://")).name for j in jars}
    hadoop = {p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*")}
    (hadoop_version,) = [n.removeprefix("hadoop-client-api-").removesuffix(".jar") for n in hadoop]
    dockerfiles = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.cuda"]
    for dockerfile in dockerfiles:
        args = dockerfile_args(dockerfile.read_text())
        assert args["HADOOP_AWS_VERSION"] == hadoop_version, dockerfile.name
        expected = {f"hadoop-aws-{hadoop_version}.jar", f"bundle-{args['AWS_SDK_VERSION']}.jar"}
        assert names == expected, dockerfile.name
    assert all(j.startswith(f"local://{APP_DIR}/jars/") for j in jars)


def test_horovod_job_is_consistent(monkeypatch):
    job = one("MPIJob")
    name, spec = job["metadata"]["name"], job["spec"]
    replicas = spec["mpiReplicaSpecs"]
    (launcher,) = replicas["Launcher"]["template"]["spec"]["containers"]
    (worker,) = replicas["Worker"]["template"]["spec"]["containers"]
    slots, n_workers = spec["slotsPerWorker"], replicas["Worker"]["replicas"]

    from horovod.runner import launch

    monkeypatch.setattr(sys, "argv", [*launcher["command"], *launcher["args"]])
    hvd = launch.parse_args()
    assert launcher["command"] == ["horovodrun"] and hvd.use_gloo  # horovod is built with gloo
    assert hvd.num_proc == n_workers * slots
    expected_hosts = [f"{name}-worker-{i}.{name}:{slots}" for i in range(n_workers)]
    assert hvd.hosts.split(",") == expected_hosts
    # One GPU per rank, requested and limited.
    for kind in ("requests", "limits"):
        assert worker["resources"][kind]["nvidia.com/gpu"] == slots
    # ssh as the image's non-root user: its uid, its home's .ssh for the operator's keys, and
    # the port and key location of the image's sshd_config.
    user = re.search(
        r"useradd --create-home --uid (\d+) --gid \d+ (\w+)",
        (DOCKER / "Dockerfile.cuda").read_text(),
    )
    assert user and spec["sshAuthMountPath"] == f"/home/{user[2]}/.ssh"
    for container in (launcher, worker):
        assert container["securityContext"]["runAsUser"] == int(user[1])
    sshd = (DOCKER / "sshd_config").read_text()
    assert f"Port {hvd.ssh_port}\n" in sshd
    assert f"HostKey {spec['sshAuthMountPath']}/" in sshd
    assert worker["command"] == ["/usr/sbin/sshd"] and worker["args"][-1].endswith(".sshd_config")

    python, script, *train_args = hvd.command
    assert python == f"{APP_DIR}/.venv/bin/python" and launcher["workingDir"] == APP_DIR
    assert local_file(script) == ROOT / "jobs" / "train.py" and local_file(script).is_file()

    from bigearth_spark.cli import build_parser as build_ingest_parser
    from bigearth_spark.train.launch import build_parser
    from bigearth_spark.train.models import MODEL_NAMES

    args = build_parser().parse_args(train_args)
    assert local_file(args.config).is_file() and args.model in MODEL_NAMES
    # Training reads the ingest's lake over S3 (no Spark) with the S3 secret's credentials.
    ingest = build_ingest_parser().parse_args(
        ["ingest", *one("SparkApplication")["spec"]["arguments"]]
    )
    assert args.lake == ingest.lake
    for pod in (launcher, worker):
        assert {"secretRef": {"name": "bigearth-s3"}} in pod["envFrom"]
    paths = mounts(worker["volumeMounts"])
    assert under(args.out, paths) and under(args.mlflow_uri, paths)
