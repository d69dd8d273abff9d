"""`layerforge doctor`: find what will break a layer on this machine, in this repository, with these
credentials, before a build or a publish does, and say how to fix each thing in plain words.

Every check returns findings; none raises for what it finds. A finding has a severity (ok, info, warning,
error), a one-line summary and, unless it is ok, the fix. The command exits 1 when any finding is an error.

    host.py
    host        the machine against the target (OS, architecture, Python)
    interpreter a CPython of the target's version and machine, for the import check
    pip, uv     the resolver layerforge runs, and uv (which can install interpreters)
    docker      an engine, for targets this machine cannot run
    emulation   QEMU in binfmt_misc, so that the other architecture's images run in that engine
    aws.py
    aws         credentials and who they are (STS GetCallerIdentity)
    s3, lambda  with --bucket: a probe object put, read back and deleted; Lambda's layer calls
    repository.py
    line-endings, gitattributes, autocrlf   CRLF in scripts, lock files and recipes
    dist        Windows or macOS binaries, and Windows-made zips, among the built artifacts
"""

from __future__ import annotations

from collections.abc import Callable

from ..runners.docker import DockerClient, docker_from_env
from ..runners.interpreters import find_interpreter
from .aws import check_aws
from .findings import DoctorOptions, DoctorReport
from .host import Finder, check_docker, check_emulation, check_host, check_interpreter, check_tools
from .repository import check_dist, check_line_endings


def diagnose(
    options: DoctorOptions,
    *,
    docker_client_factory: Callable[[], DockerClient] = docker_from_env,
    find: Finder = find_interpreter,
) -> DoctorReport:
    """Run every check; never raises for what it finds."""
    target = options.target
    findings = list(check_host(target))
    interpreter_finding, have_local = check_interpreter(target, options.python, find)
    findings.append(interpreter_finding)
    findings += check_tools()
    findings.append(check_docker(target, docker_client_factory, have_local=have_local))
    findings.append(check_emulation(target))
    findings += check_aws(options)
    findings += check_line_endings(options.repo)
    findings += check_dist(options.dist if options.dist is not None else options.repo / "dist", target)
    return DoctorReport(tuple(findings))
