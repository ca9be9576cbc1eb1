"""Which Dask scheduler a run goes to, and how: an address or a scheduler file, with TLS certificates.

A plain ``tcp://`` address sends images and adapters unencrypted: to any host but this one,
:meth:`ClusterTarget.warning` says to use TLS (Dask's ``Security``, from certificate files) or an SSH
tunnel. Nothing here connects (see :mod:`.connect`).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ClusterError

#: the hosts a plain tcp:// address may name without a warning
LOCAL_HOSTS = ("localhost", "")


@dataclass(frozen=True)
class ClusterTarget:
    """A Dask scheduler to train on.

    Attributes
    ----------
    address
        ``tcp://host:8786``, ``tls://host:8786`` or ``host:8786`` (tcp); or None with ``scheduler_file``.
    scheduler_file
        The JSON file ``dask scheduler --scheduler-file`` writes (its ``address`` is used).
    tls_ca_file, tls_cert, tls_key
        PEM files of the certificate authority, this client's certificate and its key, for ``tls://``.
    """

    address: str | None = None
    scheduler_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_job(cls, job: Any) -> ClusterTarget | None:
        """The target a :class:`~..training.job.TrainingJob` names; None for a run on this machine."""
        if not job.on_a_cluster:
            return None
        return cls(job.cluster or None, job.scheduler_file, job.tls_ca_file, job.tls_cert, job.tls_key)

    def resolved_address(self) -> str:
        """The scheduler's address, read from the scheduler file when there is one.

        Raises
        ------
        ClusterError
            Neither an address nor a readable scheduler file.
        """
        if self.address:
            address = self.address.strip()
            return address if "://" in address else f"tcp://{address}"
        if self.scheduler_file is None:
            raise ClusterError("Name the cluster: a scheduler address (tcp://host:8786) or a scheduler file.")
        try:
            return str(json.loads(Path(self.scheduler_file).read_text())["address"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClusterError(
                f"Cannot read the scheduler's address from {self.scheduler_file} ({err}): give the file that "
                "'dask scheduler --scheduler-file FILE' wrote, or the scheduler's address."
            ) from None

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is encrypted (a tls:// address)."""
        try:
            return self.resolved_address().startswith("tls://")
        except ClusterError:
            return False

    def security(self) -> Any:
        """Dask's ``Security`` for this target: from the certificate files for tls://, else None.

        Raises
        ------
        ClusterError
            A tls:// address without the three files, or a file that does not exist.
        """
        if not self.uses_tls:
            return None
        files = {"CA file": self.tls_ca_file, "certificate": self.tls_cert, "key": self.tls_key}
        missing = [name for name, path in files.items() if path is None]
        if missing:
            raise ClusterError(
                f"A tls:// address needs the {', '.join(missing)}: give --tls-ca-file, --tls-cert and --tls-key "
                "(in the Finetune widget: the cluster's TLS fields)."
            )
        absent = [str(path) for path in files.values() if path is not None and not Path(path).is_file()]
        if absent:
            raise ClusterError(f"TLS file not found: {', '.join(absent)}.")
        from distributed.security import Security

        return Security(
            tls_ca_file=str(self.tls_ca_file),
            tls_client_cert=str(self.tls_cert),
            tls_client_key=str(self.tls_key),
            require_encryption=True,
        )

    def warning(self) -> str | None:
        """A sentence when the address sends data unencrypted to another host; None when it does not."""
        try:
            address = self.resolved_address()
        except ClusterError:
            return None
        if not address.startswith("tcp://"):
            return None
        host = urlsplit(address).hostname or ""
        if host in LOCAL_HOSTS or _is_loopback(host):
            return None
        return (
            f"{address} is plain tcp: images and adapters cross the network unencrypted. Use a tls:// address "
            f"with certificates, or an SSH tunnel (ssh -L 8786:localhost:8786 {host}) and tcp://localhost:8786."
        )

    def describe(self) -> str:
        """The address, for messages and run records."""
        try:
            return self.resolved_address()
        except ClusterError:
            return str(self.scheduler_file or self.address or "")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
