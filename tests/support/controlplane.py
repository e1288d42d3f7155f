"""A real, local Kubernetes control plane for tests: etcd + kube-apiserver on loopback, no Docker.

Usable without pytest::

    with ControlPlane() as cp:          # starts etcd and kube-apiserver, waits for /readyz
        print(cp.url, cp.token, cp.kubeconfig)
    # both stopped (SIGTERM, then SIGKILL), temp dir removed: also when the block raises

and as a pytest plugin (``pytest_plugins = ["tests.support.controlplane"]`` in tests/conftest.py), through the
session-scoped fixture ``kube_api``, which yields the started ``ControlPlane`` (``.kubeconfig`` path str, ``.url``,
``.token``). Without binaries it skips with the reason, or fails with it when CI is "true"/"1"/"yes".

The binaries are found by tests/support/peers.py (``TEST_ASSET_ETCD`` / ``TEST_ASSET_KUBE_APISERVER``, else
``$KUBEBUILDER_ASSETS``, else the peers cache that ``ci/peers/build.sh etcd kube-apiserver`` fills).

Everything listens on 127.0.0.1 only, on ports picked free at start (retried if another process takes one
first). The admin identity is a static bearer token in group ``system:masters``; authorization is RBAC, so other
users or tokens (``add_token``) get only what RBAC grants them. No controller-manager runs: a deleted namespace stays
Terminating, garbage collection does not happen, service accounts get no token controller; the
``ServiceAccount`` admission plugin is off (as in envtest) so pods can be created without a ``default`` SA.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support import peers
from tests.support.processes import free_port, spawn, stop_process

ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"
CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # virtual: only allocated in etcd, never routed


class ControlPlaneError(RuntimeError):
    pass


class _PortTaken(ControlPlaneError):
    """A server could not bind a port picked as free (another process took it meanwhile): retry."""


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _decode(raw: bytes) -> dict[str, Any]:
    """A JSON object reply, or ``{"text": ...}`` for plain-text ones (/readyz, /healthz, a pod's log). A text that
    happens to parse as another JSON value (a log of digits only) keeps its text beside the value."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value, "text": raw.decode(errors="replace")}


def _generate_rsa_key(path: Path) -> None:
    """An RSA key (PKCS#8 PEM) for signing service-account tokens: ``cryptography`` if installed, else openssl."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ControlPlaneError("need the cryptography package or openssl to make a service-account key") from None
        subprocess.run(
            [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
            check=True,
            capture_output=True,
        )
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class ControlPlane:
    """etcd + kube-apiserver on loopback. ``start()``/``stop()``, or use it as a context manager.

    Attributes once started: ``url`` (https://127.0.0.1:PORT), ``token`` (admin bearer token, system:masters),
    ``kubeconfig`` (path str of a kubeconfig using that token and the apiserver's self-signed CA), ``ca_file``
    (that CA bundle), ``etcd_url``, ``workdir`` (logs: etcd.log, kube-apiserver.log).
    """

    def __init__(
        self,
        binaries: peers.Binaries | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        start_timeout: float = 120.0,
        extra_apiserver_args: tuple[str, ...] = (),
        address: str = "127.0.0.1",
        kubelets: bool = False,
    ) -> None:
        """``address``: where kube-apiserver listens and what it advertises. ``kubelets``: configured for real
        kubelets and pods (tests/support/hil_node.py) instead of a loopback-only API: the ServiceAccount admission
        plugin on (pods get tokens), NodeRestriction and the Node authorizer (kubelets act as system:node:NAME),
        the ``kubernetes`` Service's endpoints maintained, and webhooks reached at their endpoints' pod IPs (no
        kube-proxy needed for them)."""
        found = binaries or peers.find_binaries()
        if isinstance(found, str):
            raise ControlPlaneError(found)
        self.binaries = found
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="topolvm-kube-"))
        self.start_timeout = start_timeout
        self.extra_apiserver_args = extra_apiserver_args
        self.address = address
        self.kubelets = kubelets
        self.port = 0
        self.token = secrets.token_hex(16)
        self.url = ""
        self.etcd_url = ""
        self.kubeconfig = ""
        self.ca_file = ""
        self._tokens: list[tuple[str, str, str, tuple[str, ...]]] = [
            (self.token, ADMIN_USER, ADMIN_USER, (ADMIN_GROUP,))
        ]
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None

    # --- lifecycle

    def add_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        """Another static identity for the token file; call before ``start()``."""
        if self._apiserver is not None:
            raise ControlPlaneError("add_token must be called before start()")
        self._tokens.append((token, user, user, groups))

    def start(self) -> ControlPlane:
        try:
            for attempt in range(3):
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    break
                except _PortTaken:
                    self._stop_processes()
                    if attempt == 2:
                        raise
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (SIGTERM, SIGKILL after a grace period) and remove the temp dir. Idempotent."""
        self._stop_processes()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- etcd

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        data = self.workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        self.etcd_url = f"http://127.0.0.1:{client}"
        log = self.workdir / "etcd.log"
        argv = [
            str(self.binaries.etcd),
            "--name=default",
            f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync=true",  # test data: durability does not matter, latency does
            "--log-level=warn",
        ]
        self._etcd = spawn(argv, log, self.workdir)
        self._wait(
            self._etcd,
            "etcd",
            log,
            lambda: self._http_ok(f"{self.etcd_url}/health", ctx=None, token=None),
        )

    # --- kube-apiserver

    def _start_apiserver(self) -> None:
        port = free_port()
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        sa_key = self.workdir / "sa.key"
        if not sa_key.exists():
            _generate_rsa_key(sa_key)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            "".join(f'{tok},{user},{uid},"{",".join(groups)}"\n' for tok, user, uid, groups in self._tokens)
        )
        self.port = port
        self.url = f"https://{self.address}:{port}"
        log = self.workdir / "kube-apiserver.log"
        if self.kubelets:
            mode = [
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--enable-aggregator-routing=true",
                # Logs and exec at the node's address: its hostname resolves to loopback in the VM.
                "--kubelet-preferred-address-types=InternalIP",
                # Pods' status.volumeHealth, which kubelet fills from CSI NodeGetVolumeHealth (alpha in 1.37).
                "--feature-gates=CSIVolumeHealth=true",
            ]
        else:
            mode = [
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",  # no "kubernetes" Endpoints pointing at a node: nothing routes
            ]
        argv = [
            str(self.binaries.kube_apiserver),
            f"--advertise-address={self.address}",
            f"--bind-address={self.address}",
            f"--secure-port={port}",
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={certs}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--token-auth-file={tokens}",
            *mode,
            "--allow-privileged=true",
            *self.extra_apiserver_args,
        ]
        self._apiserver = spawn(argv, log, self.workdir)
        self.ca_file = str(certs / "apiserver.crt")
        self._wait(self._apiserver, "kube-apiserver", log, self._apiserver_ready)

    def _apiserver_ready(self) -> bool:
        if not Path(self.ca_file).exists():
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return self._http_ok(f"{self.url}/readyz", ctx=ctx, token=self.token)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.url, "certificate-authority": self.ca_file}}],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": ADMIN_USER}}],
            "current-context": "local",
        }
        path = self.workdir / "kubeconfig"
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML: kubectl and the client read it
        path.chmod(0o600)
        self.kubeconfig = str(path)

    # --- objects

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """One API call (stdlib only) as the admin, or as ``token``: ``(status, decoded JSON body)``; HTTP errors
        are returned, not raised. ``body`` is sent as JSON, labelled ``content_type`` (a PATCH names its kind of
        patch there, e.g. ``application/apply-patch+yaml`` for server-side apply: JSON is YAML)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as response:
                return int(response.status), _decode(response.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())

    def install_crds(self, directory: str | os.PathLike[str] = CRD_DIR, timeout: float = 30.0) -> list[str]:
        """Create every CustomResourceDefinition in ``directory``/*.yaml (existing ones are left as they are) and
        wait until each is Established. Returns the CRD names. Needs PyYAML (a dependency of the kubernetes client).
        """
        import yaml

        names = []
        for path in sorted(Path(directory).glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                code, reply = self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
                if code not in (201, 409):
                    raise ControlPlaneError(f"creating CRD from {path}: HTTP {code}: {reply.get('message')}")
                names.append(str(doc["metadata"]["name"]))
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                _, crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                status = crd.get("status")
                conditions = (status.get("conditions") or []) if isinstance(status, dict) else []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {name} not Established after {timeout:.0f}s: {conditions}")
                time.sleep(0.1)
        return names

    # --- helpers

    @staticmethod
    def _http_ok(url: str, *, ctx: ssl.SSLContext | None, token: str | None) -> bool:
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=ctx) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait(self, proc: subprocess.Popen[bytes], what: str, log: Path, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = _tail(log)
                if "address already in use" in tail:
                    raise _PortTaken(f"{what}: port taken")
                raise ControlPlaneError(f"{what} exited with {proc.returncode}; last log lines:\n{tail}")
            if ready():
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"{what} not ready after {self.start_timeout:.0f}s; last log lines:\n{_tail(log)}")

    def _stop_processes(self) -> None:
        # apiserver first: it is etcd's client, and stopping etcd under it only makes log noise.
        for attr in ("_apiserver", "_etcd"):
            proc: subprocess.Popen[bytes] | None = getattr(self, attr)
            setattr(self, attr, None)
            if proc is not None:
                stop_process(proc)


# --- pytest plugin


try:
    import pytest
except ImportError:  # pragma: no cover - the helper works without pytest; only the fixture needs it
    pass
else:

    @pytest.fixture(scope="session")
    def kube_api() -> Iterator[ControlPlane]:
        """A started local control plane for the session: ``.kubeconfig`` (path str), ``.url``, ``.token``.

        The token is an admin's (group system:masters). Skips with the reason when the binaries are missing, or
        fails with it in CI (CI=true/1/yes). Under pytest-xdist each worker gets its own control plane.
        """
        with ControlPlane(peers.binaries_or_skip()) as cp:
            yield cp
